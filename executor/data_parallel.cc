#include "executor/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace zp {

template <class Model>
DataParallelTrainer<Model>::DataParallelTrainer(Model& model, Communicator& comm, int zero_stage, AdamConfig adam,
                                                TrainerMemory memory)
    : model_(model),
      be_(model.backend()),
      bridge_(be_, memory.offload_optimizer ? memory.host : memory.device),
      comm_(comm),
      stage_(zero_stage),
      adam_(adam),
      memory_(memory) {
  if (zero_stage < 0 || zero_stage > 3) throw std::runtime_error("data parallel: ZeRO stage 0-3");
  if (memory.offload_optimizer && zero_stage == 0) throw std::runtime_error("optimizer offload needs ZeRO stage 1 or higher");
  if (memory.offload_params && zero_stage != 3) throw std::runtime_error("parameter offload needs ZeRO stage 3");
  const size_t n = model.params.size(), world = static_cast<size_t>(comm.size());
  TrackingAllocator* dev = memory.device;
  // Offloaded optimizer states live in host memory (the cost model's rules:
  // the moments, the master weights and an fp32 gradient partition move,
  // costmodel/model_states.cc).
  TrackingAllocator* opt = memory.offload_optimizer ? memory.host : dev;
  // The master weights start as the model's weights, widened exactly.
  auto make_master = [&](const T* from, Device& from_device, size_t count, size_t size) {
    if constexpr (kMixed) {
      master_ = make_buffer<float>(opt, Component::MasterWeights, size);
      bridge_.optimizer().widen_into(master_.data(), bridge_.reach(from, from_device, count), count);
    }
  };
  if (stage_ == 3) {
    std::vector<size_t> units;
    for (int u = 0; u < model.num_units(); ++u) units.push_back(model.unit_size(u));
    zero3_ = std::make_unique<Zero3Units<T>>(bridge_, comm, units, dev, memory.offload_optimizer ? memory.host : dev,
                                             memory.offload_optimizer ? Component::MainGradients : Component::Gradients,
                                             memory.offload_params ? memory.host : dev);
    // The model was built whole (as DeepSpeed does without zero.Init); keep
    // this rank's partition and give the whole copies back.
    zero3_->partition(model.params.data());
    model.set_unit_provider(zero3_.get());
    release_buffer(model.params);
    release_buffer(model.grads);
    m_ = make_buffer<float>(opt, Component::OptimizerStates, zero3_->shard_size());
    v_ = make_buffer<float>(opt, Component::OptimizerStates, zero3_->shard_size());
    make_master(zero3_->params.data(), zero3_->params.home().device(), zero3_->shard_size(), zero3_->shard_size());
    return;
  }
  const size_t states = stage_ == 0 ? n : (n + world - 1) / world;
  m_ = make_buffer<float>(opt, Component::OptimizerStates, states);
  v_ = make_buffer<float>(opt, Component::OptimizerStates, states);
  const size_t begin = stage_ == 0 ? 0 : std::min(n, static_cast<size_t>(comm.rank()) * states);
  make_master(model.params.data() + begin, be_.device(), std::min(states, n - begin), states);
  if (stage_ == 0) return;
  shard_ = states;
  // The reduced partition: the gradients ZeRO-2 keeps, the fp32 gradients the
  // host optimizer reads under offload, a bucket otherwise.
  const Component shard_tag = memory.offload_optimizer ? Component::MainGradients
                              : stage_ == 2           ? Component::Gradients
                                                      : Component::Buckets;
  fp32_shard_ = !kMixed || memory.offload_optimizer;
  if (fp32_shard_) {
    grad_fp32_ = make_buffer<float>(memory.offload_optimizer ? memory.host : dev, shard_tag, shard_);
  } else {
    grad_low_ = make_buffer<T>(dev, shard_tag, shard_);
  }
  padded_ = make_buffer<T>(dev, Component::Buckets, shard_ * world);
  send_ = make_buffer<T>(dev, Component::Buckets, shard_);
  received_ = make_buffer<T>(dev, Component::Buckets, shard_);
  // ZeRO-2 keeps only the partition: the model's full gradient buffer holds
  // one micro-batch's gradients until they are reduce-scattered, a bucket.
  if (stage_ == 2 && dev) dev->retag(model.grads.data(), Component::Buckets);
}

template <class Model>
void DataParallelTrainer<Model>::reduce_scatter_into_shard(bool add, bool held_too) {
  const size_t n = model_.grads.size();
  be_.copy(padded_.data(), model_.grads.data(), n);
  be_.zero(padded_.data() + n, padded_.size() - n);
  if (!held_too) be_.zero(padded_.data() + held_begin_, held_count_);
  comm_.reduce_scatter_sum(padded_.data(), received_.data(), shard_);
  if (fp32_shard_) {
    // Into the optimizer's fp32 gradients, wherever they are.
    bridge_.optimizer().add_into_fp32(grad_fp32_.data(), bridge_.reach(received_.data(), be_.device(), shard_),
                                      shard_, add);
  } else {
    be_.add_into(grad_low_.data(), received_.data(), shard_, add);
  }
}

template <class Model>
template <class G>
void DataParallelTrainer<Model>::update(T* weights, Device& weights_device, const G* grads, float scale, size_t count) {
  Backend<T>& opt = bridge_.optimizer();
  // The weights where the optimizer runs: themselves, or a staged copy that goes back after.
  const bool staged = bridge_.elsewhere(weights_device);
  T* at = staged ? bridge_.stage(weights, weights_device, count) : weights;
  auto step = [&](float* fp32, T* low) {
    if constexpr (std::is_same_v<G, float>) {
      opt.adamw_fp32_grads(fp32, low, grads, scale, m_.data(), v_.data(), count, steps_, adam_);
    } else {
      opt.adamw_model_grads(fp32, low, grads, scale, m_.data(), v_.data(), count, steps_, adam_);
    }
  };
  if constexpr (kMixed) {
    step(master_.data(), at);
  } else {
    step(at, nullptr);
  }
  if (staged) bridge_.unstage(weights, weights_device, at, count);
}

template <class Model>
float DataParallelTrainer<Model>::step(const int* tokens, const int* targets, int micro_batch, int Tn, int micro_batches) {
  // The same calls a pipeline makes: gradients zeroed once, each micro-batch
  // adding to them (stage 2 reduce-scatters and empties them after each one;
  // stage 3's gathers and reduce-scatters happen inside forward and
  // backward, so they count in those phases).
  begin_step();
  float loss = 0;
  const size_t per_micro = static_cast<size_t>(micro_batch) * Tn;
  for (int k = 0; k < micro_batches; ++k) {
    loss += model_.forward_backward(tokens + k * per_micro, targets + k * per_micro, micro_batch, Tn, true);
    phases_.forward_s += model_.last_forward_s;
    phases_.backward_s += model_.last_backward_s;
    micro_batch_done(k);
  }
  comm_.all_reduce_sum(&loss, 1);
  apply_gradients(micro_batches);
  return loss / (static_cast<float>(comm_.size()) * static_cast<float>(micro_batches));
}

template <class Model>
void DataParallelTrainer<Model>::begin_step() {
  phases_ = Phases{};
  if (zero3_) {
    zero3_->zero_gradients();
  } else {
    fill_zero(model_.grads);
  }
}

template <class Model>
void DataParallelTrainer<Model>::micro_batch_done(int k) {
  if (stage_ != 2) return;
  using Clock = std::chrono::steady_clock;
  const auto t = Clock::now();
  reduce_scatter_into_shard(k > 0, false);
  // The model's buffer is the bucket: empty it for the next micro-batch,
  // except the held unit, which accumulates until apply_gradients.
  T* g = model_.grads.data();
  be_.zero(g, held_begin_);
  be_.zero(g + held_begin_ + held_count_, model_.grads.size() - held_begin_ - held_count_);
  phases_.gradient_sync_s += std::chrono::duration<double>(Clock::now() - t).count();
}

template <class Model>
void DataParallelTrainer<Model>::hold_unit(int unit) {
  if (unit < 0) return;
  if (zero3_) {
    zero3_->defer(unit);
  } else {
    held_begin_ = model_.unit_offset(unit);
    held_count_ = model_.unit_size(unit);
  }
}

template <class Model>
typename DataParallelTrainer<Model>::T* DataParallelTrainer<Model>::unit_gradients(int unit) {
  return zero3_ ? zero3_->gradients(unit) : model_.grads.data() + model_.unit_offset(unit);
}

template <class Model>
void DataParallelTrainer<Model>::apply_gradients(int micro_batches) {
  const size_t n = model_.params.size();
  const float scale = 1.0f / (static_cast<float>(comm_.size()) * static_cast<float>(micro_batches));
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  ++steps_;
  if (stage_ == 3) {
    auto t = Clock::now();
    zero3_->flush();  // the held units' gradients
    phases_.gradient_sync_s += since(t);
    t = Clock::now();
    if (zero3_->fp32_gradients()) {
      update(zero3_->params.data(), zero3_->params.home().device(), zero3_->gradients_fp32.data(), scale,
             zero3_->shard_size());
    } else {
      update(zero3_->params.data(), zero3_->params.home().device(), zero3_->gradients_low.data(), scale,
             zero3_->shard_size());
    }
    phases_.optimizer_s = since(t);
    return;
  }
  if (stage_ == 0) {
    auto t = Clock::now();
    comm_.all_reduce_sum(model_.grads.data(), n);
    phases_.gradient_sync_s = since(t);
    t = Clock::now();
    update(model_.params.data(), be_.device(), model_.grads.data(), scale, n);
    phases_.optimizer_s = since(t);
    return;
  }
  auto t = Clock::now();
  if (stage_ == 1) reduce_scatter_into_shard(false);
  // ZeRO-2 reduced each micro-batch but the held unit; its sum goes now (the
  // rest of the buffer is zero).
  if (stage_ == 2 && held_count_ > 0) reduce_scatter_into_shard(true);
  phases_.gradient_sync_s += since(t);
  t = Clock::now();
  // Update this rank's partition of the parameters (the padded tail has no
  // parameters), then all-gather them.
  // (Mixed precision rounds the whole partition from the master weights instead.)
  if constexpr (!kMixed) {
    const size_t begin = static_cast<size_t>(comm_.rank()) * shard_;
    const size_t mine = begin < n ? std::min(shard_, n - begin) : 0;
    fill_zero(send_);
    be_.copy(send_.data(), model_.params.data() + begin, mine);
  }
  if (fp32_shard_) {
    update(send_.data(), be_.device(), grad_fp32_.data(), scale, shard_);
  } else {
    update(send_.data(), be_.device(), grad_low_.data(), scale, shard_);
  }
  phases_.optimizer_s = since(t);
  t = Clock::now();
  comm_.all_gather(send_.data(), padded_.data(), shard_);
  be_.copy(model_.params.data(), padded_.data(), n);
  phases_.parameter_gather_s = since(t);
}

template <class Model>
CheckpointState DataParallelTrainer<Model>::state() const {
  CheckpointState s;
  s.step = static_cast<uint64_t>(steps_);
  const Buffer<T>& params = zero3_ ? zero3_->params : model_.params;
  for (const T& p : host_copy(params)) s.params.push_back(static_cast<float>(p));
  s.master = host_copy(master_);
  s.m = host_copy(m_);
  s.v = host_copy(v_);
  return s;
}

template <class Model>
void DataParallelTrainer<Model>::restore(const CheckpointState& s) {
  Buffer<T>& params = zero3_ ? zero3_->params : model_.params;
  if (s.params.size() != params.size() || s.master.size() != master_.size() || s.m.size() != m_.size() ||
      s.v.size() != v_.size()) {
    throw std::runtime_error("checkpoint does not match this model and layout (sizes or precision differ)");
  }
  steps_ = static_cast<int>(s.step);
  std::vector<T> low(s.params.size());
  for (size_t i = 0; i < low.size(); ++i) low[i] = static_cast<T>(s.params[i]);
  copy_in(params, low.data(), low.size());
  copy_in(master_, s.master.data(), s.master.size());
  copy_in(m_, s.m.data(), s.m.size());
  copy_in(v_, s.v.data(), s.v.size());
}

template class DataParallelTrainer<GptModel<float>>;
template class DataParallelTrainer<LlamaModel<float>>;
template class DataParallelTrainer<GptModel<bf16>>;
template class DataParallelTrainer<LlamaModel<bf16>>;

}  // namespace zp
