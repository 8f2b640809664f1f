#include "executor/data_parallel.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "executor/model_step.h"

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
      memory_(memory),
      timer_(be_.device()) {
  if (zero_stage < 0 || zero_stage > 3) throw std::runtime_error("data parallel: ZeRO stage 0-3");
  if (memory.offload_optimizer && zero_stage == 0) throw std::runtime_error("optimizer offload needs ZeRO stage 1 or higher");
  if (memory.offload_params && zero_stage != 3) throw std::runtime_error("parameter offload needs ZeRO stage 3");
  if (memory.delayed_update && !memory.offload_optimizer) {
    throw std::runtime_error("the delayed parameter update needs optimizer offload");
  }
  const size_t n = model.params.size(), world = static_cast<size_t>(comm.size());
  TrackingAllocator* dev = memory.device;
  // Offloaded optimizer states live in host memory (the cost model's rules:
  // the moments, the master weights and an fp32 gradient partition move,
  // costmodel/model_states.cc).
  TrackingAllocator* opt = memory.offload_optimizer ? memory.host : dev;
  // The master weights start as the model's weights of the same elements, widened exactly.
  auto widen_master = [&](const T* from, Device& from_device, size_t count, size_t at) {
    if constexpr (kMixed) {
      if (count > 0) bridge_.optimizer().widen_into(master_.data() + at, bridge_.reach(from, from_device, count), count);
    }
  };
  auto make_states = [&](size_t size) {
    m_ = make_buffer<float>(opt, Component::OptimizerStates, size);
    v_ = make_buffer<float>(opt, Component::OptimizerStates, size);
    if constexpr (kMixed) master_ = make_buffer<float>(opt, Component::MasterWeights, size);
  };
  if (stage_ >= 2) {
    std::vector<size_t> units;
    for (int u = 0; u < model.num_units(); ++u) units.push_back(model.unit_size(u));
    const bool offload = memory.offload_optimizer;
    units_ = std::make_unique<ZeroUnits<T>>(bridge_, comm, units, dev, offload ? memory.host : dev,
                                            offload ? Component::MainGradients : Component::Gradients, stage_ == 3,
                                            memory.offload_params ? memory.host : dev);
    // ZeRO-3: the model was built whole (as DeepSpeed does without
    // zero.Init); keep this rank's partition and give the whole copies back.
    // ZeRO-2: the parameters stay; only the whole gradient buffer goes.
    units_->partition(model.params.data());
    model.set_unit_provider(units_.get());
    if (stage_ == 3) release_buffer(model.params);
    release_buffer(model.grads);
    make_states(units_->shard_size());
    for (size_t u = 0; u < units_->num_units(); ++u) {
      if (stage_ == 3) {
        widen_master(units_->params.data() + units_->partition_offset(u), units_->params.home().device(),
                     units_->chunk_size(u), units_->partition_offset(u));
      } else {
        widen_master(model.params.data() + units_->owned_first(u), be_.device(), units_->owned_count(u),
                     units_->partition_offset(u));
      }
    }
    setup_delayed();
    return;
  }
  shard_ = stage_ == 0 ? n : (n + world - 1) / world;
  make_states(shard_);
  const auto [begin, mine] = owned_partition();
  widen_master(model.params.data() + begin, be_.device(), mine, 0);
  // ZeRO-1 under offload: the host optimizer's fp32 gradient partition (a
  // model state); otherwise the reduced partition lands in the model's own
  // gradient buffer (apply_gradients).
  if (stage_ == 1 && memory.offload_optimizer) grad_fp32_ = make_buffer<float>(memory.host, Component::MainGradients, shard_);
  setup_delayed();
}

template <class Model>
DataParallelTrainer<Model>::~DataParallelTrainer() {
  if (worker_.joinable()) worker_.join();
}

template <class Model>
Buffer<float>& DataParallelTrainer<Model>::reduced_gradients() {
  return units_ ? units_->gradients_fp32 : grad_fp32_;
}

template <class Model>
void DataParallelTrainer<Model>::setup_delayed() {
  if (!memory_.delayed_update) return;
  // A second fp32 gradient partition, so the next step reduces into one
  // while the worker reads the other, and the partition's weights.
  const size_t size = reduced_gradients().size();
  pending_grads_ = make_buffer<float>(memory_.host, Component::MainGradients, size);
  delayed_weights_ = make_buffer<T>(memory_.host, Component::OffloadStaging, size);
  if constexpr (!kMixed) {
    // An fp32 model has no master weights: the worker keeps the partition's
    // fp32 weights here, starting from the model's.
    Device& host = delayed_weights_.home().device();
    if (stage_ == 3) {
      mover(host, units_->params.home().device()).copy(delayed_weights_.data(), units_->params.data(), size * sizeof(T));
    } else if (units_) {
      for (size_t u = 0; u < units_->num_units(); ++u) {
        mover(host, be_.device())
            .copy(delayed_weights_.data() + units_->partition_offset(u), model_.params.data() + units_->owned_first(u),
                  units_->owned_count(u) * sizeof(T));
      }
    } else {
      const auto [begin, mine] = owned_partition();
      mover(host, be_.device()).copy(delayed_weights_.data(), model_.params.data() + begin, mine * sizeof(T));
    }
  }
}

template <class Model>
void DataParallelTrainer<Model>::launch_delayed(float scale) {
  // This step's reduced gradients go to the worker; the next step reduces
  // into the other buffer (zeroed, or overwritten, as it begins).
  reduced_gradients().swap(pending_grads_);
  const int step = steps_;
  // The host optimizer's AdamW reads and writes only the optimizer's own
  // buffers (no allocation, no shared scratch), so it runs beside the
  // model's work.
  worker_ = std::thread([this, scale, step] {
    float* fp32 = nullptr;
    T* low = nullptr;
    if constexpr (kMixed) {
      fp32 = master_.data();
      low = delayed_weights_.data();
    } else {
      fp32 = delayed_weights_.data();
    }
    bridge_.optimizer().adamw_fp32_grads(fp32, low, pending_grads_.data(), scale, m_.data(), v_.data(),
                                         pending_grads_.size(), step, adam_);
  });
}

template <class Model>
void DataParallelTrainer<Model>::apply_delayed() {
  Device& host = delayed_weights_.home().device();
  if (stage_ == 3) {
    mover(units_->params.home().device(), host)
        .copy(units_->params.data(), delayed_weights_.data(), units_->shard_size() * sizeof(T));
  } else if (units_) {
    units_->gather_updated([&](size_t u, T* chunk) {
      mover(be_.device(), host)
          .copy(chunk, delayed_weights_.data() + units_->partition_offset(u), units_->chunk_size(u) * sizeof(T));
    });
  } else {
    const auto [begin, mine] = owned_partition();
    mover(be_.device(), host).copy(model_.params.data() + begin, delayed_weights_.data(), mine * sizeof(T));
    gather_partition();
  }
}

template <class Model>
void DataParallelTrainer<Model>::finish_pending() {
  if (!worker_.joinable()) return;
  worker_.join();
  apply_delayed();
}

template <class Model>
template <class G>
void DataParallelTrainer<Model>::update(T* weights, Device& weights_device, const G* grads, float scale, size_t count,
                                        size_t at) {
  if (count == 0) return;
  Backend<T>& opt = bridge_.optimizer();
  // The weights where the optimizer runs: themselves, or a staged copy that goes back after.
  const bool staged = bridge_.elsewhere(weights_device);
  T* where = staged ? bridge_.stage(weights, weights_device, count) : weights;
  auto step = [&](float* fp32, T* low) {
    if constexpr (std::is_same_v<G, float>) {
      opt.adamw_fp32_grads(fp32, low, grads, scale, m_.data() + at, v_.data() + at, count, steps_, adam_);
    } else {
      opt.adamw_model_grads(fp32, low, grads, scale, m_.data() + at, v_.data() + at, count, steps_, adam_);
    }
  };
  if constexpr (kMixed) {
    step(master_.data() + at, where);
  } else {
    step(where, nullptr);
  }
  if (staged) bridge_.unstage(weights, weights_device, where, count);
}

template <class Model>
float DataParallelTrainer<Model>::step(const int* tokens, const int* targets, int micro_batch, int Tn, int micro_batches) {
  // The same calls a pipeline makes: gradients zeroed once, each micro-batch
  // adding to them (ZeRO-2/3's reduce-scatters, and ZeRO-3's gathers, happen
  // inside forward and backward, so they count in those phases).
  begin_step();
  float loss = 0;
  const size_t per_micro = static_cast<size_t>(micro_batch) * Tn;
  for (int k = 0; k < micro_batches; ++k) {
    loss += timed_forward_backward(model_, tokens + k * per_micro, targets + k * per_micro, micro_batch, Tn, timer_,
                                   phases_.forward_s, phases_.backward_s);
  }
  comm_.all_reduce_sum(&loss, 1);
  apply_gradients(micro_batches);
  return loss / (static_cast<float>(comm_.size()) * static_cast<float>(micro_batches));
}

template <class Model>
void DataParallelTrainer<Model>::begin_step() {
  phases_ = Phases{};
  const size_t t = timer_.mark();
  if (units_) {
    units_->zero_gradients();
  } else {
    fill_zero(model_.grads);
  }
  timer_.add(phases_.gradient_zeroing_s, t);
}

template <class Model>
void DataParallelTrainer<Model>::hold_unit(int unit) {
  // ZeRO-0/1 reduce everything at the end of the step anyway.
  if (unit >= 0 && units_) units_->defer(unit);
}

template <class Model>
typename DataParallelTrainer<Model>::T* DataParallelTrainer<Model>::unit_gradients(int unit) {
  return units_ ? units_->gradients(unit) : model_.grads.data() + model_.unit_offset(unit);
}

template <class Model>
void DataParallelTrainer<Model>::apply_gradients(int micro_batches) {
  reduce_and_update(micro_batches);
  timer_.resolve();  // the step's phase times, read once its work is done
}

template <class Model>
void DataParallelTrainer<Model>::reduce_and_update(int micro_batches) {
  const size_t n = model_.params.size();
  const float scale = 1.0f / (static_cast<float>(comm_.size()) * static_cast<float>(micro_batches));
  ++steps_;
  auto update_partition = [&](T* weights, Device& weights_device, size_t count, size_t at) {
    if (units_->fp32_gradients()) {
      update(weights, weights_device, units_->gradients_fp32.data() + at, scale, count, at);
    } else {
      update(weights, weights_device, units_->gradients_low.data() + at, scale, count, at);
    }
  };
  // Delayed update: wait for the step before's update, put it in the model,
  // and start this one's (the wait is the optimizer's exposed time).
  auto delayed = [&] {
    size_t t = timer_.mark();
    if (worker_.joinable()) worker_.join();
    t = timer_.add(phases_.optimizer_s, t);
    if (steps_ > 1) apply_delayed();
    timer_.add(phases_.parameter_gather_s, t);
    launch_delayed(scale);
  };
  if (stage_ >= 2) {
    size_t t = timer_.mark();
    units_->flush();  // the held units' gradients
    t = timer_.add(phases_.gradient_sync_s, t);
    if (memory_.delayed_update) {
      delayed();
      return;
    }
    if (stage_ == 3) {
      update_partition(units_->params.data(), units_->params.home().device(), units_->shard_size(), 0);
      timer_.add(phases_.optimizer_s, t);
      return;
    }
    // ZeRO-2: each unit's chunk is updated, then all-gathered into the model;
    // the updates count as the optimizer's, the rest as the gather's.
    units_->gather_updated([&](size_t u, T* chunk) {
      const size_t o = timer_.mark();
      const size_t count = units_->chunk_size(u), at = units_->partition_offset(u);
      if constexpr (!kMixed) {
        // No master weights: the chunk starts as the model's own; its padded
        // tail (no parameters) is zeroed, so the update reads zeros there.
        const size_t owned = units_->owned_count(u);
        be_.copy(chunk, model_.params.data() + units_->owned_first(u), owned);
        be_.zero(chunk + owned, count - owned);
      }
      update_partition(chunk, be_.device(), count, at);
      const size_t done = timer_.add(phases_.optimizer_s, o);
      timer_.add(phases_.parameter_gather_s, o, done, -1);
    });
    timer_.add(phases_.parameter_gather_s, t);
    return;
  }
  if (stage_ == 0) {
    size_t t = timer_.mark();
    comm_.all_reduce_sum(model_.grads.data(), n);
    t = timer_.add(phases_.gradient_sync_s, t);
    update(model_.params.data(), be_.device(), model_.grads.data(), scale, n, 0);
    timer_.add(phases_.optimizer_s, t);
    return;
  }
  // ZeRO-1: the accumulated gradients are reduce-scattered bucket by bucket
  // into this rank's partition, which lands where it was, in the model's own
  // gradient buffer (a round reads each rank's range once, so this rank's is
  // free to take its sum), or, offloaded, in the host optimizer's fp32
  // partition; the partition is updated in the model's own parameters, which
  // are then all-gathered bucket by bucket. One rank has nothing to reduce
  // or gather.
  size_t t = timer_.mark();
  const size_t world = static_cast<size_t>(comm_.size()), rank = static_cast<size_t>(comm_.rank());
  const auto [begin, mine] = owned_partition();
  const bool offloaded = !grad_fp32_.empty();
  if (world > 1 || offloaded) {
    const size_t per_rank = std::min(shard_, std::max<size_t>(1, (memory_.reduce_bucket_elems + world - 1) / world));
    // Both written whole before they are read: the ranks' ranges copied in
    // (a padded tail zeroed), the reduce-scatter's output.
    Buffer<T> bucket = make_output_buffer<T>(memory_.device, Component::Buckets, world > 1 ? per_rank * world : 0);
    Buffer<T> piece = make_output_buffer<T>(memory_.device, Component::Buckets, world > 1 ? per_rank : 0);
    for (size_t first = 0; first < shard_; first += per_rank) {
      const size_t len = std::min(per_rank, shard_ - first);
      const auto [to, count] = owned_range(rank, first, len);
      const T* reduced = model_.grads.data() + to;
      if (world > 1) {
        for (size_t r = 0; r < world; ++r) {
          const auto [from, got] = owned_range(r, first, len);
          be_.copy(bucket.data() + r * len, model_.grads.data() + from, got);
          if (got < len) be_.zero(bucket.data() + r * len + got, len - got);
        }
        comm_.reduce_scatter_sum(bucket.data(), piece.data(), len);
        reduced = piece.data();
      }
      if (offloaded) {
        bridge_.optimizer().add_into_fp32(grad_fp32_.data() + first, bridge_.reach(reduced, be_.device(), count), count,
                                          false);
      } else {
        be_.copy(model_.grads.data() + to, reduced, count);  // the padded tail has no parameters
      }
    }
  }
  t = timer_.add(phases_.gradient_sync_s, t);
  if (memory_.delayed_update) {
    delayed();
    return;
  }
  // (Mixed precision rounds the partition's weights from the master weights.)
  if (offloaded) {
    update(model_.params.data() + begin, be_.device(), grad_fp32_.data(), scale, mine, 0);
  } else {
    update(model_.params.data() + begin, be_.device(), model_.grads.data() + begin, scale, mine, 0);
  }
  t = timer_.add(phases_.optimizer_s, t);
  if (world > 1) gather_partition();
  timer_.add(phases_.parameter_gather_s, t);
}

template <class Model>
std::pair<size_t, size_t> DataParallelTrainer<Model>::owned_range(size_t r, size_t first, size_t len) const {
  const size_t n = model_.params.size(), from = std::min(n, r * shard_ + first);
  return {from, std::min(len, n - from)};
}

template <class Model>
std::pair<size_t, size_t> DataParallelTrainer<Model>::owned_partition() const {
  return stage_ == 0 ? std::pair<size_t, size_t>{0, shard_} : owned_range(static_cast<size_t>(comm_.rank()), 0, shard_);
}

template <class Model>
void DataParallelTrainer<Model>::gather_partition() {
  if (comm_.size() == 1) return;  // nothing to gather
  const size_t world = static_cast<size_t>(comm_.size()), rank = static_cast<size_t>(comm_.rank());
  const size_t per_rank = std::min(shard_, std::max<size_t>(1, (memory_.reduce_bucket_elems + world - 1) / world));
  // The all-gather's output, and the padded tail's staging (copied, then zeroed past the partition).
  Buffer<T> bucket = make_output_buffer<T>(memory_.device, Component::Buckets, per_rank * world);
  Buffer<T> piece = make_output_buffer<T>(memory_.device, Component::Buckets, per_rank);
  auto owned = [this](size_t r, size_t first, size_t len) { return owned_range(r, first, len); };
  for (size_t first = 0; first < shard_; first += per_rank) {
    const size_t len = std::min(per_rank, shard_ - first);
    const auto [from, count] = owned(rank, first, len);
    const T* send = model_.params.data() + from;
    if (count < len) {  // the padded tail of the last partition
      be_.copy(piece.data(), send, count);
      be_.zero(piece.data() + count, len - count);
      send = piece.data();
    }
    comm_.all_gather(send, bucket.data(), len);
    for (size_t r = 0; r < world; ++r) {
      const auto [to, got] = owned(r, first, len);
      if (r != rank) be_.copy(model_.params.data() + to, bucket.data() + r * len, got);
    }
  }
}

template <class Model>
CheckpointState DataParallelTrainer<Model>::state() const {
  if (worker_.joinable()) throw std::runtime_error("a delayed update is in flight: finish_pending() before state()");
  CheckpointState s;
  s.step = static_cast<uint64_t>(steps_);
  const Buffer<T>& params = stage_ == 3 ? units_->params : model_.params;
  for (const T& p : host_copy(params)) s.params.push_back(static_cast<float>(p));
  s.master = host_copy(master_);
  s.m = host_copy(m_);
  s.v = host_copy(v_);
  return s;
}

template <class Model>
std::array<size_t, 4> DataParallelTrainer<Model>::state_sizes() const {
  const Buffer<T>& params = stage_ == 3 ? units_->params : model_.params;
  return {params.size(), master_.size(), m_.size(), v_.size()};
}

template <class Model>
void DataParallelTrainer<Model>::restore(const CheckpointState& s) {
  Buffer<T>& params = stage_ == 3 ? units_->params : model_.params;
  if (std::array<size_t, 4>{s.params.size(), s.master.size(), s.m.size(), s.v.size()} != state_sizes()) {
    throw std::runtime_error(kCheckpointMismatch);
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
