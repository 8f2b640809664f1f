// Timeline: points on a device's timeline and the seconds between them, for
// a step's phases (executor/phase_timer.h). On the host a point is the
// steady clock's reading; on a GPU it is a CUDA event recorded on the
// compute stream after the work queued so far (executor/cuda_device.h), and
// the seconds between two are the GPU's (cudaEventElapsedTime): marking a
// phase does not stall the host, and the times are read once, after the
// step's work, with one wait. Host-side work between two marks (a CPU
// optimizer step) counts too: the later event is recorded once the host has
// queued it, so the GPU reaches it no earlier than that.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

namespace zp {

class Timeline {
 public:
  virtual ~Timeline() = default;
  // A point after the work queued so far; marks are numbered from 0.
  virtual size_t mark() = 0;
  // Seconds from mark `from` to mark `to` (waits for the device to reach `to`).
  virtual double seconds(size_t from, size_t to) = 0;
  // Forgets every mark: the next is 0 again.
  virtual void clear() = 0;
};

// The host's: nothing is queued, so a mark is the clock's reading now.
class HostTimeline final : public Timeline {
 public:
  size_t mark() override {
    points_.push_back(std::chrono::steady_clock::now());
    return points_.size() - 1;
  }
  double seconds(size_t from, size_t to) override {
    return std::chrono::duration<double>(points_.at(to) - points_.at(from)).count();
  }
  void clear() override { points_.clear(); }

 private:
  std::vector<std::chrono::steady_clock::time_point> points_;
};

}  // namespace zp
