// TrackingAllocator: every buffer the executor holds comes from here, tagged
// with the cost model's component (weights, gradients, activations, ...), so
// a run records the peak of its total and the composition at that peak and
// can set them beside the prediction. The bytes come from a Device
// (executor/device.h): the host's aligned blocks by default, the CUDA
// device's caching allocator on a GPU. Owns what it hands out until
// release(); not thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>

#include "costmodel/memory_rows.h"
#include "executor/device.h"
#include "executor/tag_ledger.h"

namespace zp {

// The device could not give a tagged buffer: a std::bad_alloc that says how
// much, for what and beside how much already held, so a layout that does
// not fit reads as a finding (of the form "out of memory on cuda:0 (...):
// 2.000 GiB for activations with 137.500 GiB held"), not as "std::bad_alloc".
class OutOfDeviceMemory : public std::bad_alloc {
 public:
  explicit OutOfDeviceMemory(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

class TrackingAllocator {
 public:
  explicit TrackingAllocator(Device& device = host_device()) : device_(&device) {}
  TrackingAllocator(const TrackingAllocator&) = delete;
  TrackingAllocator& operator=(const TrackingAllocator&) = delete;
  ~TrackingAllocator();

  // Uninitialised (the pages become resident when first written); bytes == 0
  // gives nullptr. Throws OutOfDeviceMemory when the device is out of memory.
  void* allocate(uint64_t bytes, Component tag);
  void release(void* p);

  uint64_t current_bytes() const { return ledger_.current_bytes(); }
  uint64_t peak_bytes() const { return ledger_.peak_bytes(); }
  // From now on the peak is that of what follows (TagLedger::reset_peak).
  void reset_peak() { ledger_.reset_peak(); }
  uint64_t current_bytes(Component c) const { return ledger_.current_bytes(c); }
  // The bytes of each component at the moment the total peaked.
  const std::array<uint64_t, kNumComponents>& at_peak() const { return ledger_.at_peak(); }
  size_t live_allocations() const { return live_.size(); }
  Device& device() const { return *device_; }

 private:
  struct Block {
    uint64_t bytes;
    Component tag;
  };
  Device* device_;
  std::unordered_map<void*, Block> live_;
  TagLedger ledger_;
};

}  // namespace zp
