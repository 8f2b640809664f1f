#include "planner/search_space.h"

namespace zp {

std::vector<uint64_t> divisors(uint64_t n, uint64_t limit) {
  std::vector<uint64_t> out;
  for (uint64_t d = 1; d <= n && d <= limit; ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

}  // namespace zp
