#include <cstdlib>
#include <cstring>

#include "executor/device.h"

namespace zp {
namespace {

class HostDevice final : public Device {
 public:
  std::string name() const override { return "host"; }
  void* allocate(uint64_t bytes) override {
    const uint64_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of the alignment
    return std::aligned_alloc(64, rounded);
  }
  void release(void* p) override { std::free(p); }
  void zero(void* p, uint64_t bytes) override {
    if (bytes) std::memset(p, 0, bytes);
  }
  void copy(void* dst, const void* src, uint64_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
};

}  // namespace

Device& host_device() {
  static HostDevice host;
  return host;
}

}  // namespace zp
