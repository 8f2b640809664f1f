#include "executor/tracking_allocator.h"

#include <new>

namespace zp {

TrackingAllocator::~TrackingAllocator() {
  for (auto& [p, block] : live_) device_->release(p);
}

void* TrackingAllocator::allocate(uint64_t bytes, Component tag) {
  if (bytes == 0) return nullptr;
  void* p = device_->allocate(bytes);
  if (!p) throw std::bad_alloc();
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
