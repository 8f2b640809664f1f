// The time of a training phase as the device sees it: the device's queued
// work is waited for before the clock is read (a no-op on the host), so on
// a GPU a phase's seconds are those of its kernels and copies, not of their
// launches. CUDA events (kernels/streams_cuda.h) would time the same without
// stalling the host between phases; a step has a handful of phase
// boundaries, each costing one synchronisation of microseconds.
#pragma once

#include <chrono>

#include "executor/device.h"

namespace zp {

class DeviceClock {
 public:
  using Clock = std::chrono::steady_clock;
  explicit DeviceClock(Device& device) : device_(device) {}
  Clock::time_point now() const {
    device_.synchronize();
    return Clock::now();
  }
  double since(Clock::time_point start) const { return std::chrono::duration<double>(now() - start).count(); }

 private:
  Device& device_;
};

}  // namespace zp
