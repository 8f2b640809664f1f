// A whole model's forward and backward as the one-stage pipeline: what
// GptModel and LlamaModel::forward_backward share, and the data-parallel
// trainer's timed form of it.
#pragma once

#include "executor/phase_timer.h"

namespace zp {

template <class Model>
auto forward_backward(Model& model, const int* tokens, const int* targets, int B, int Tn) {
  const auto loss = model.stage_forward(0, tokens, targets, nullptr, B, Tn);
  model.stage_backward(0, nullptr, B, Tn);
  return loss;
}

// The same, its two halves added to `forward_s` and `backward_s` when the
// timer is next resolved (executor/phase_timer.h).
template <class Model>
auto timed_forward_backward(Model& model, const int* tokens, const int* targets, int B, int Tn, PhaseTimer& timer,
                            double& forward_s, double& backward_s) {
  const size_t start = timer.mark();
  const auto loss = model.stage_forward(0, tokens, targets, nullptr, B, Tn);
  const size_t middle = timer.add(forward_s, start);
  model.stage_backward(0, nullptr, B, Tn);
  timer.add(backward_s, middle);
  return loss;
}

}  // namespace zp
