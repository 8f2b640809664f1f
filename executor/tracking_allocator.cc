#include "executor/tracking_allocator.h"

#include <cstdio>
#include <new>

namespace zp {

TrackingAllocator::~TrackingAllocator() {
  for (auto& [p, block] : live_) device_->release(p);
}

void* TrackingAllocator::allocate(uint64_t bytes, Component tag) {
  if (bytes == 0) return nullptr;
  void* p = device_->allocate(bytes);
  if (!p) {
    constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
    char what[256];
    std::snprintf(what, sizeof what, "out of memory on %s: %.3f GiB for %s with %.3f GiB held", device_->name().c_str(),
                  static_cast<double>(bytes) / kGiB, to_string(tag), static_cast<double>(current_bytes()) / kGiB);
    throw OutOfDeviceMemory(what);
  }
  live_.emplace(p, Block{bytes, tag});
  ledger_.add(bytes, tag);
  return p;
}

void TrackingAllocator::release(void* p) {
  if (!p) return;
  auto it = live_.find(p);
  if (it == live_.end()) return;
  ledger_.remove(it->second.bytes, it->second.tag);
  live_.erase(it);
  device_->release(p);
}


}  // namespace zp
