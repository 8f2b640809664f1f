#include "executor/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace zp {

template <class Model>
DataParallelTrainer<Model>::DataParallelTrainer(Model& model, Communicator& comm, int zero_stage, AdamConfig adam)
    : model_(model), comm_(comm), stage_(zero_stage), adam_(adam) {
  if (zero_stage < 0 || zero_stage > 2) throw std::runtime_error("data parallel: ZeRO stage 0-2 (stage 3 is not built yet)");
  const size_t n = model.params.size(), world = static_cast<size_t>(comm.size());
  if (stage_ == 0) {
    m_.assign(n, 0.0f);
    v_.assign(n, 0.0f);
  } else {
    shard_ = (n + world - 1) / world;
    m_.assign(shard_, 0.0f);
    v_.assign(shard_, 0.0f);
    padded_.assign(shard_ * world, 0.0f);
    grad_shard_.assign(shard_, 0.0f);
  }
}

template <class Model>
float DataParallelTrainer<Model>::step(const int* tokens, const int* targets, int B_local, int Tn) {
  const size_t n = model_.params.size();
  const float world = static_cast<float>(comm_.size());
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  phases_ = Phases{};
  float loss = model_.forward_backward(tokens, targets, B_local, Tn);
  phases_.forward_s = model_.last_forward_s;
  phases_.backward_s = model_.last_backward_s;
  comm_.all_reduce_sum(&loss, 1);
  loss /= world;
  ++steps_;
  if (stage_ == 0) {
    auto t = Clock::now();
    comm_.all_reduce_sum(model_.grads.data(), n);
    for (float& g : model_.grads) g /= world;
    phases_.gradient_sync_s = since(t);
    t = Clock::now();
    adamw_step(model_.params.data(), model_.grads.data(), m_.data(), v_.data(), n, steps_, adam_.lr, adam_.beta1,
               adam_.beta2, adam_.eps, adam_.weight_decay);
    phases_.optimizer_s = since(t);
    return loss;
  }
  auto t = Clock::now();
  // Reduce-scatter the gradients into this rank's partition.
  std::copy(model_.grads.begin(), model_.grads.end(), padded_.begin());
  std::fill(padded_.begin() + static_cast<std::ptrdiff_t>(n), padded_.end(), 0.0f);
  comm_.reduce_scatter_sum(padded_.data(), grad_shard_.data(), shard_);
  for (float& g : grad_shard_) g /= world;
  phases_.gradient_sync_s = since(t);
  t = Clock::now();
  // Update this rank's partition of the parameters, then all-gather them.
  const size_t begin = static_cast<size_t>(comm_.rank()) * shard_;
  std::vector<float>& params = model_.params;
  std::fill(padded_.begin(), padded_.end(), 0.0f);
  for (size_t i = 0; i < shard_ && begin + i < n; ++i) padded_[begin + i] = params[begin + i];
  adamw_step(padded_.data() + begin, grad_shard_.data(), m_.data(), v_.data(), shard_, steps_, adam_.lr, adam_.beta1,
             adam_.beta2, adam_.eps, adam_.weight_decay);
  phases_.optimizer_s = since(t);
  t = Clock::now();
  std::vector<float> mine(padded_.begin() + static_cast<std::ptrdiff_t>(begin),
                          padded_.begin() + static_cast<std::ptrdiff_t>(begin + shard_));
  comm_.all_gather(mine.data(), padded_.data(), shard_);
  std::copy(padded_.begin(), padded_.begin() + static_cast<std::ptrdiff_t>(n), params.begin());
  phases_.parameter_gather_s = since(t);
  return loss;
}

template <class Model>
CheckpointState DataParallelTrainer<Model>::state() const {
  CheckpointState s;
  s.step = static_cast<uint64_t>(steps_);
  s.params = model_.params;
  s.m = m_;
  s.v = v_;
  return s;
}

template <class Model>
void DataParallelTrainer<Model>::restore(const CheckpointState& s) {
  if (s.params.size() != model_.params.size() || s.m.size() != m_.size() || s.v.size() != v_.size()) {
    throw std::runtime_error("checkpoint does not match this model and layout (sizes differ)");
  }
  steps_ = static_cast<int>(s.step);
  model_.params = s.params;
  m_ = s.m;
  v_ = s.v;
}

template class DataParallelTrainer<GptModel<float>>;
template class DataParallelTrainer<LlamaModel<float>>;

}  // namespace zp
