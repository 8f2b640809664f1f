#include <cstdlib>
#include <cstring>

#include "executor/cpu_backend.h"
#include "executor/device.h"
#include "executor/timeline.h"

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
  void zero(void* p, uint64_t bytes) override { fill_bytes(p, 0, bytes); }
  void fill_bytes(void* p, unsigned char byte, uint64_t bytes) override {
    if (bytes) std::memset(p, byte, bytes);
  }
  void copy(void* dst, const void* src, uint64_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
};

}  // namespace

std::unique_ptr<Backend<float>> Device::make_backend(TrackingAllocator* tracker, float*) {
  return std::make_unique<CpuBackend<float>>(tracker);
}
std::unique_ptr<Backend<bf16>> Device::make_backend(TrackingAllocator* tracker, bf16*) {
  return std::make_unique<CpuBackend<bf16>>(tracker);
}

std::unique_ptr<Timeline> Device::make_timeline() { return std::make_unique<HostTimeline>(); }

template <class T>
std::unique_ptr<Backend<T>> make_backend(TrackingAllocator* tracker) {
  if constexpr (std::is_same_v<T, double>) {
    return std::make_unique<CpuBackend<double>>(tracker);
  } else {
    Device& device = tracker ? tracker->device() : host_device();
    return device.make_backend(tracker, static_cast<T*>(nullptr));
  }
}
template std::unique_ptr<Backend<float>> make_backend<float>(TrackingAllocator*);
template std::unique_ptr<Backend<double>> make_backend<double>(TrackingAllocator*);
template std::unique_ptr<Backend<bf16>> make_backend<bf16>(TrackingAllocator*);

Device& host_device() {
  static HostDevice host;
  return host;
}

}  // namespace zp
