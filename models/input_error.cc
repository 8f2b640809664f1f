#include "models/input_error.h"

namespace zp {

uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) {
    throw InputError(what + ": the count overflows 64 bits; check the sizes");
  }
  return out;
}

uint64_t checked_add(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) {
    throw InputError(what + ": the count overflows 64 bits; check the sizes");
  }
  return out;
}

}  // namespace zp
