// PhaseTimer: a step's phase times on its device's timeline
// (executor/timeline.h). Each span from one mark to a later one is added to
// (or taken from) its phase when resolve() reads the timeline, once a step,
// after the step's work: on a GPU the phases are the times of their kernels
// and copies, measured by events, and the host runs ahead between marks.
#pragma once

#include <memory>
#include <vector>

#include "executor/device.h"
#include "executor/timeline.h"

namespace zp {

class PhaseTimer {
 public:
  explicit PhaseTimer(Device& device) : timeline_(device.make_timeline()) {}
  size_t mark() { return timeline_->mark(); }
  // The span from `from` to a mark made now counts in `phase` (sign -1: is
  // taken from it, for a part that belongs to another phase); returns the new mark.
  size_t add(double& phase, size_t from, double sign = 1) {
    const size_t to = mark();
    spans_.push_back({&phase, from, to, sign});
    return to;
  }
  void add(double& phase, size_t from, size_t to, double sign = 1) { spans_.push_back({&phase, from, to, sign}); }
  // Adds every span's seconds to its phase and forgets the spans and marks.
  void resolve() {
    for (const Span& s : spans_) *s.phase += s.sign * timeline_->seconds(s.from, s.to);
    spans_.clear();
    timeline_->clear();
  }

 private:
  struct Span {
    double* phase;
    size_t from, to;
    double sign;
  };
  std::unique_ptr<Timeline> timeline_;
  std::vector<Span> spans_;
};

}  // namespace zp
