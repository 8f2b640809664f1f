// A whole model's forward and backward as the one-stage pipeline, timed in
// its two halves: what GptModel and LlamaModel::forward_backward share.
#pragma once

#include <chrono>

namespace zp {

template <class Model>
auto timed_forward_backward(Model& model, const int* tokens, const int* targets, int B, int Tn) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  // Each half waits for the device's queued work (a no-op on the host), so
  // the two wall times are the GPU's.
  const auto loss = model.stage_forward(0, tokens, targets, nullptr, B, Tn);
  model.backend().device().synchronize();
  const auto middle = Clock::now();
  model.last_forward_s = std::chrono::duration<double>(middle - start).count();
  model.stage_backward(0, nullptr, B, Tn);
  model.backend().device().synchronize();
  model.last_backward_s = std::chrono::duration<double>(Clock::now() - middle).count();
  return loss;
}

}  // namespace zp
