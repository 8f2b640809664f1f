#include "executor/pipeline_parallel.h"

#include <algorithm>
#include <array>
#include <deque>
#include <stdexcept>
#include <utility>

#include "costmodel/rank_params.h"

namespace zp {

PipelineStage pipeline_stage(uint64_t layers, const Layout& l, uint32_t stage) {
  PipelineStage part;
  for (uint32_t s = 0; s < stage; ++s) part.first_layer += static_cast<int>(layers_on_stage(layers, l, s));
  part.layers = static_cast<int>(layers_on_stage(layers, l, stage));
  part.first = stage == 0;
  part.last = stage + 1 == l.pp;
  return part;
}

PipelineStage pipeline_chunk(uint64_t layers, const Layout& l, uint32_t stage, uint32_t chunk) {
  PipelineStage part;
  const uint64_t per_chunk = layers / (uint64_t{l.pp} * l.vpp);
  part.first_layer = static_cast<int>((uint64_t{chunk} * l.pp + stage) * per_chunk);
  part.layers = static_cast<int>(per_chunk);
  part.first = stage == 0 && chunk == 0;
  part.last = stage + 1 == l.pp && chunk + 1 == l.vpp;
  return part;
}

template <class Model>
PipelineTrainer<Model>::PipelineTrainer(Model& stage, Communicator& comm, PipeSchedule schedule, AdamConfig adam,
                                        TrainerMemory memory, Communicator* data_parallel, int zero_stage)
    : PipelineTrainer(std::vector<Model*>{&stage}, comm, schedule, adam, memory, data_parallel, zero_stage) {}

template <class Model>
PipelineTrainer<Model>::PipelineTrainer(std::vector<Model*> chunks, Communicator& comm, PipeSchedule schedule,
                                        AdamConfig adam, TrainerMemory memory, Communicator* data_parallel,
                                        int zero_stage)
    : chunks_(std::move(chunks)),
      model_(*chunks_.at(0)),
      comm_(comm),
      dp_(data_parallel),
      schedule_(schedule),
      device_(memory.device),
      timer_(model_.backend().device()) {
  const size_t v = chunks_.size();
  const int p = comm.size(), r = comm.rank();
  if ((schedule == PipeSchedule::Interleaved) != (v > 1)) {
    throw std::runtime_error("pipeline: the interleaved schedule runs two or more model chunks a rank, the others one");
  }
  if (v > 1 && p < 2) throw std::runtime_error("pipeline: the interleaved schedule needs two or more stages");
  for (size_t c = 0; c < v; ++c) {
    const PipelineStage& s = chunks_[c]->stage();
    if (s.first != (r == 0 && c == 0) || s.last != (r + 1 == p && c + 1 == v)) {
      throw std::runtime_error("pipeline: rank " + std::to_string(r) + " of " + std::to_string(p) + " holds the wrong stage (first/last) in chunk " +
                               std::to_string(c));
    }
    if (c > 0) chunks_[c]->share_scratch_with(*chunks_[0]);
    optimizers_.push_back(std::make_unique<DataParallelTrainer<Model>>(*chunks_[c], data_parallel ? *data_parallel : alone_,
                                                                       zero_stage, adam, memory));
    // The tied embedding's gradient is summed between the end stages once per
    // step, before the data-parallel reduction: under ZeRO-2/3 it stays out of
    // the per-micro-batch reductions until then.
    optimizers_.back()->hold_unit(chunks_[c]->tied_embedding_unit());
  }
  input_ = make_buffer<T>(device_, Component::Buckets);
  output_grad_ = make_buffer<T>(device_, Component::Buckets);
  tied_ = make_buffer<T>(device_, Component::Buckets);
}

template <class Model>
uint64_t PipelineTrainer<Model>::zero3_peak_gathered_bytes() const {
  uint64_t sum = 0;
  for (const auto& o : optimizers_) sum += o->zero3_peak_gathered_bytes();
  return sum;
}

template <class Model>
CheckpointState PipelineTrainer<Model>::state() const {
  CheckpointState all = optimizers_[0]->state();
  for (size_t c = 1; c < optimizers_.size(); ++c) {
    const CheckpointState s = optimizers_[c]->state();
    all.params.insert(all.params.end(), s.params.begin(), s.params.end());
    all.master.insert(all.master.end(), s.master.begin(), s.master.end());
    all.m.insert(all.m.end(), s.m.begin(), s.m.end());
    all.v.insert(all.v.end(), s.v.begin(), s.v.end());
  }
  return all;
}

template <class Model>
void PipelineTrainer<Model>::restore(const CheckpointState& s) {
  if (optimizers_.size() == 1) return optimizers_[0]->restore(s);
  // Each chunk takes its share, in state()'s order: its own state's sizes.
  std::vector<std::array<size_t, 4>> shares;
  std::array<size_t, 4> total{};
  for (const auto& o : optimizers_) {
    shares.push_back(o->state_sizes());
    for (size_t a = 0; a < 4; ++a) total[a] += shares.back()[a];
  }
  if (total != std::array<size_t, 4>{s.params.size(), s.master.size(), s.m.size(), s.v.size()}) {
    throw std::runtime_error(kCheckpointMismatch);
  }
  std::array<size_t, 4> at{};
  auto take = [&](const std::vector<float>& from, size_t a, size_t count) {
    const auto first = from.begin() + static_cast<std::ptrdiff_t>(at[a]);
    at[a] += count;
    return std::vector<float>(first, first + static_cast<std::ptrdiff_t>(count));
  };
  for (size_t c = 0; c < optimizers_.size(); ++c) {
    const std::array<size_t, 4>& sizes = shares[c];
    CheckpointState part;
    part.step = s.step;
    part.params = take(s.params, 0, sizes[0]);
    part.master = take(s.master, 1, sizes[1]);
    part.m = take(s.m, 2, sizes[2]);
    part.v = take(s.v, 3, sizes[3]);
    optimizers_[c]->restore(part);
  }
}

template <class Model>
void PipelineTrainer<Model>::finish_pending() {
  for (auto& o : optimizers_) o->finish_pending();
}

template <class Model>
void PipelineTrainer<Model>::forward(size_t c, int k, const int* tokens, const int* targets, const T* input,
                                     int micro_batch, int Tn) {
  const size_t start = timer_.mark();
  const size_t per_micro = static_cast<size_t>(micro_batch) * Tn;
  loss_sum_ += chunks_[c]->stage_forward(k, tokens + k * per_micro, targets + k * per_micro, input, micro_batch, Tn);
  ++in_flight_;
  max_in_flight_ = std::max(max_in_flight_, in_flight_);
  if (device_) {
    peak_activation_bytes_ = std::max(peak_activation_bytes_, device_->current_bytes(Component::Activations) +
                                                                  device_->current_bytes(Component::RecomputeWorkspace) +
                                                                  device_->current_bytes(Component::Logits));
  }
  timer_.add(phases_.forward_s, start);
}

template <class Model>
void PipelineTrainer<Model>::backward(size_t c, int k, const T* doutput, int micro_batch, int Tn) {
  const size_t start = timer_.mark();
  chunks_[c]->stage_backward(k, doutput, micro_batch, Tn);
  chunks_[c]->free_activations(k);
  --in_flight_;
  timer_.add(phases_.backward_s, start);
}

template <class Model>
void PipelineTrainer<Model>::one_chunk_schedule(const int* tokens, const int* targets, int micro_batch, int Tn, int m,
                                                size_t n) {
  const int p = comm_.size(), stage = comm_.rank();
  const PipelineStage& s = model_.stage();
  const T* input = s.first ? nullptr : input_.data();
  const T* doutput = s.last ? nullptr : output_grad_.data();
  // Point to point with the neighbours (nothing before the first stage or after the last).
  auto recv_forward = [&] { if (!s.first) comm_.recv(input_.data(), n, stage - 1); };
  auto send_forward = [&](int k) {
    if (s.last) return;
    comm_.send(model_.stage_output(k), n, stage + 1);
    model_.output_sent(k);
  };
  auto recv_backward = [&] { if (!s.last) comm_.recv(output_grad_.data(), n, stage + 1); };
  auto send_backward = [&] { if (!s.first) comm_.send(model_.input_gradient(), n, stage - 1); };
  if (schedule_ == PipeSchedule::GPipe && p > 1) {
    for (int k = 0; k < m; ++k) {
      recv_forward();
      forward(0, k, tokens, targets, input, micro_batch, Tn);
      send_forward(k);
    }
    for (int k = 0; k < m; ++k) {
      recv_backward();
      backward(0, k, doutput, micro_batch, Tn);
      send_backward();
    }
    return;
  }
  // 1F1B in Megatron-LM's order (core/pipeline_parallel/schedules.py,
  // forward_backward_pipelining_without_interleaving): in the steady state
  // a stage sends its output while it receives the gradient, and sends the
  // gradient while it receives the next input, each pair as one call. With
  // one stage there is no pipeline to fill: each micro-batch's backward
  // follows its forward whatever the schedule (the cost model's pp = 1 case).
  const int warmup = std::min(p - stage - 1, m), remaining = m - warmup;
  for (int k = 0; k < warmup; ++k) {
    recv_forward();
    forward(0, k, tokens, targets, input, micro_batch, Tn);
    send_forward(k);
  }
  if (remaining > 0) recv_forward();
  for (int i = 0; i < remaining; ++i) {
    const int k = warmup + i;
    forward(0, k, tokens, targets, input, micro_batch, Tn);
    if (!s.last) {
      comm_.send_recv(model_.stage_output(k), n, stage + 1, output_grad_.data(), n, stage + 1);
      model_.output_sent(k);
    }
    backward(0, i, doutput, micro_batch, Tn);
    if (i + 1 == remaining) {
      send_backward();
    } else if (!s.first) {
      comm_.send_recv(model_.input_gradient(), n, stage - 1, input_.data(), n, stage - 1);
    }
  }
  for (int k = remaining; k < m; ++k) {
    recv_backward();
    backward(0, k, doutput, micro_batch, Tn);
    send_backward();
  }
}

template <class Model>
void PipelineTrainer<Model>::interleaved_schedule(const int* tokens, const int* targets, int micro_batch, int Tn, int m,
                                                  size_t n) {
  // Megatron-LM's forward_backward_pipelining_with_interleaving (core/
  // pipeline_parallel/schedules.py, without overlapped communication; p
  // micro-batches a group, its default microbatch_group_size_per_vp_stage).
  // Chunk-pass k (of m v) runs chunk (k mod p v) / p forward, and chunk
  // v - 1 minus that backward; each chunk takes its micro-batches in order.
  const int p = comm_.size(), r = comm_.rank(), v = static_cast<int>(chunks_.size()), total = m * v;
  if (m % p != 0) {
    throw std::runtime_error("pipeline: the interleaved schedule needs the micro-batches (" + std::to_string(m) +
                             ") to be a multiple of the stages (" + std::to_string(p) + ")");
  }
  const int next = (r + 1) % p, prev = (r + p - 1) % p;
  constexpr int kForwardTag = 0, kBackwardTag = 1;  // the two directions apart where a pair of ranks is both neighbours
  auto chunk_of = [&](int k, bool forward) {
    const int c = (k % (p * v)) / p;
    return forward ? c : v - 1 - c;
  };
  auto virtual_first = [&](int c) { return r == 0 && c == 0; };
  auto virtual_last = [&](int c) { return r == p - 1 && c == v - 1; };
  // Whether a tensor comes in after pass k (forward: an input from the
  // previous rank; backward: a gradient from the next) and for which chunk.
  // The rank that leads in that direction (the first forward, the last
  // backward) receives from the ring's other end, which is p - 1 passes
  // behind it; the chunk that ends the model sends nothing on.
  auto incoming = [&](int k, bool forward) -> std::pair<bool, int> {
    const bool leading = forward ? r == 0 : r == p - 1;
    if (!leading) return {true, chunk_of(k + 1, forward)};
    const bool behind_started = k >= p - 1;
    const int sender_chunk = behind_started ? chunk_of(k - (p - 1), forward) : chunk_of(k + 1, forward);
    const bool ends = sender_chunk == (forward ? v - 1 : 0);
    return {behind_started && !ends, sender_chunk + (forward ? 1 : -1)};
  };
  std::vector<std::deque<Buffer<T>>> inputs(static_cast<size_t>(v)), grads(static_cast<size_t>(v));
  std::vector<int> forwards(static_cast<size_t>(v), 0), backwards(static_cast<size_t>(v), 0);
  auto fresh = [&] { return make_output_buffer<T>(device_, Component::Buckets, n); };  // a receive writes it whole
  // One exchange: this pass's output forward and input gradient back (when
  // there are), the next input and output gradient in (when they come).
  auto communicate = [&](int out_chunk, int out_k, int grad_chunk, bool recv_prev, int prev_chunk, bool recv_next,
                         int next_chunk) {
    std::vector<Communicator::Transfer> transfers;
    Buffer<T> in, gin;
    if (out_chunk >= 0) transfers.push_back(Communicator::send_to(chunks_[static_cast<size_t>(out_chunk)]->stage_output(out_k), n, next, kForwardTag));
    if (recv_prev) {
      in = fresh();
      transfers.push_back(Communicator::recv_from(in.data(), n, prev, kForwardTag));
    }
    if (grad_chunk >= 0) transfers.push_back(Communicator::send_to(chunks_[static_cast<size_t>(grad_chunk)]->input_gradient(), n, prev, kBackwardTag));
    if (recv_next) {
      gin = fresh();
      transfers.push_back(Communicator::recv_from(gin.data(), n, next, kBackwardTag));
    }
    comm_.template exchange<T>(transfers);
    if (out_chunk >= 0) chunks_[static_cast<size_t>(out_chunk)]->output_sent(out_k);
    if (recv_prev) inputs[static_cast<size_t>(prev_chunk)].push_back(std::move(in));
    if (recv_next) grads[static_cast<size_t>(next_chunk)].push_back(std::move(gin));
  };
  // Pass k forward / backward: the chunk, and its micro-batch.
  auto run_forward = [&](int k) {
    const int c = chunk_of(k, true), mb = forwards[static_cast<size_t>(c)]++;
    auto& queue = inputs[static_cast<size_t>(c)];
    if (!virtual_first(c) && queue.empty()) throw std::logic_error("interleaved pipeline: no input for a forward");
    forward(static_cast<size_t>(c), mb, tokens, targets, virtual_first(c) ? nullptr : queue.front().data(), micro_batch, Tn);
    if (!virtual_first(c)) queue.pop_front();
    return std::pair<int, int>{c, mb};
  };
  auto run_backward = [&](int k) {
    const int c = chunk_of(k, false), mb = backwards[static_cast<size_t>(c)]++;
    auto& queue = grads[static_cast<size_t>(c)];
    if (!virtual_last(c) && queue.empty()) throw std::logic_error("interleaved pipeline: no gradient for a backward");
    backward(static_cast<size_t>(c), mb, virtual_last(c) ? nullptr : queue.front().data(), micro_batch, Tn);
    if (!virtual_last(c)) queue.pop_front();
    return c;
  };
  int warmup = 2 * (p - r - 1) + (v - 1) * p;
  const bool all_warmup = warmup >= total;
  if (all_warmup) warmup = total;
  const int remaining = total - warmup;
  if (!virtual_first(0)) communicate(-1, 0, -1, true, 0, false, 0);
  for (int k = 0; k < warmup; ++k) {
    const auto [c, mb] = run_forward(k);
    auto [recv_prev, prev_chunk] = incoming(k, true);
    if (k == total - 1) recv_prev = false;
    // The last warm-up pass also takes the first gradient in.
    const bool recv_next = k == warmup - 1 && !all_warmup && r != p - 1;
    communicate(virtual_last(c) ? -1 : c, mb, -1, recv_prev, prev_chunk, recv_next, v - 1);
  }
  for (int i = 0; i < remaining; ++i) {
    const int k = warmup + i;
    const auto [fc, mb] = run_forward(k);
    const int bc = run_backward(i);
    auto [recv_prev, prev_chunk] = incoming(k, true);
    const auto [recv_next, next_chunk] = incoming(i, false);
    if (i == remaining - 1) recv_prev = false;
    communicate(virtual_last(fc) ? -1 : fc, mb, virtual_first(bc) ? -1 : bc, recv_prev, prev_chunk, recv_next, next_chunk);
  }
  if (all_warmup && !virtual_last(v - 1)) communicate(-1, 0, -1, false, 0, true, v - 1);
  for (int k = remaining; k < total; ++k) {
    const int c = run_backward(k);
    auto [recv_next, next_chunk] = incoming(k, false);
    if (k == total - 1) recv_next = false;
    communicate(-1, 0, virtual_first(c) ? -1 : c, false, 0, recv_next, next_chunk);
  }
}

template <class Model>
float PipelineTrainer<Model>::step(const int* tokens, const int* targets, int micro_batch, int Tn, int micro_batches) {
  const int p = comm_.size(), stage = comm_.rank(), m = micro_batches;
  const PipelineStage& s = model_.stage();
  const size_t n = model_.stage_io_elements(micro_batch, Tn);
  // What comes from the stage before, and the gradient from the stage after
  // (neither on an end of the pipeline, nor without one: tensor parallelism
  // alone); the interleaved schedule queues what it receives instead.
  const bool one_chunk = chunks_.size() == 1;
  // Each is received into before it is read.
  input_.allocate(s.first || !one_chunk ? 0 : n);
  output_grad_.allocate(s.last || !one_chunk ? 0 : n);
  const size_t step_start = timer_.mark();
  phases_ = Phases{};
  step_s_ = 0;
  for (auto& o : optimizers_) o->begin_step();
  loss_sum_ = 0;
  if (one_chunk) {
    one_chunk_schedule(tokens, targets, micro_batch, Tn, m, n);
  } else {
    interleaved_schedule(tokens, targets, micro_batch, Tn, m, n);
  }
  // The mean loss lives on the last stage; every rank reports it.
  float loss = loss_sum_ / static_cast<float>(m);
  comm_.broadcast(&loss, 1, p - 1);
  // Tied embeddings: the first and last stages add each other's gradient of
  // the shared table, so the two copies stay equal.
  // (Interleaved: the first rank's first chunk and the last rank's last.)
  for (size_t c = 0; c < chunks_.size(); ++c) {
    Model& chunk = *chunks_[c];
    const int tied_unit = chunk.tied_embedding_unit();
    if (tied_unit < 0) continue;
    T* tied = optimizers_[c]->unit_gradients(tied_unit);
    const size_t table = chunk.tied_embedding_size();
    tied_.allocate(table);  // received whole
    comm_.send_recv(tied, table, stage == 0 ? p - 1 : 0, tied_.data(), table, stage == 0 ? p - 1 : 0);
    chunk.backend().accumulate(tied, tied_.data(), table);
    release_buffer(tied_);  // needed again at the next step's end only
  }
  // Across the pipelines: the mean over their slices of the batch and the
  // optimizer step (the gradients still hold the sum over the micro-batches).
  if (dp_ && dp_->size() > 1) {
    dp_->all_reduce_sum(&loss, 1);
    loss /= static_cast<float>(dp_->size());
  }
  for (auto& optimizer : optimizers_) {
    optimizer->apply_gradients(m);
    const auto& o = optimizer->last_phases();
    phases_.gradient_sync_s += o.gradient_sync_s;
    phases_.optimizer_s += o.optimizer_s;
    phases_.parameter_gather_s += o.parameter_gather_s;
    phases_.gradient_zeroing_s += o.gradient_zeroing_s;
  }
  // What is left of the step: the transfers with the neighbours (and the
  // waits for them: the bubble), the loss broadcast and the tied-embedding sum.
  timer_.add(step_s_, step_start);
  timer_.resolve();
  phases_.pipeline_transfer_s = step_s_ - phases_.forward_s - phases_.backward_s - phases_.gradient_sync_s -
                                phases_.optimizer_s - phases_.parameter_gather_s - phases_.gradient_zeroing_s;
  return loss;
}

template class PipelineTrainer<GptModel<float>>;
template class PipelineTrainer<LlamaModel<float>>;
template class PipelineTrainer<GptModel<bf16>>;
template class PipelineTrainer<LlamaModel<bf16>>;

}  // namespace zp
