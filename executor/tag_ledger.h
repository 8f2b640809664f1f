// TagLedger: the bytes in use under each cost-model component, their total,
// the total's peak and the composition at that peak: what a run sets beside
// the cost model's rows. The host tracking allocator and the caching
// allocator behind device memory keep one each.
#pragma once

#include <array>
#include <cstdint>

#include "costmodel/memory_rows.h"

namespace zp {

class TagLedger {
 public:
  void add(uint64_t bytes, Component tag) {
    by_component_[static_cast<int>(tag)] += bytes;
    current_ += bytes;
    if (current_ > peak_) {
      peak_ = current_;
      at_peak_ = by_component_;
    }
  }
  void remove(uint64_t bytes, Component tag) {
    by_component_[static_cast<int>(tag)] -= bytes;
    current_ -= bytes;
  }
  void move(uint64_t bytes, Component from, Component to) {
    by_component_[static_cast<int>(from)] -= bytes;
    by_component_[static_cast<int>(to)] += bytes;
  }

  // The peak starts again from what is held now (the training steps' peak,
  // after a set-up that briefly held more).
  void reset_peak() {
    peak_ = current_;
    at_peak_ = by_component_;
  }

  uint64_t current_bytes() const { return current_; }
  uint64_t peak_bytes() const { return peak_; }
  uint64_t current_bytes(Component c) const { return by_component_[static_cast<int>(c)]; }
  const std::array<uint64_t, kNumComponents>& at_peak() const { return at_peak_; }

 private:
  std::array<uint64_t, kNumComponents> by_component_{};
  std::array<uint64_t, kNumComponents> at_peak_{};
  uint64_t current_ = 0, peak_ = 0;
};

}  // namespace zp
