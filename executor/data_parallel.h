// Data parallelism with ZeRO stages 0-2 over a Communicator, for the flat
// fp32 parameters of a GptModel or LlamaModel (issue 6), with gradient
// accumulation over micro-batches and optional optimizer offload:
//  - stage 0: gradients all-reduced (2 Psi), every rank runs AdamW on all
//    parameters and keeps all optimizer states;
//  - stage 1: gradients accumulate over the step's micro-batches in the
//    model's full buffer and are reduce-scattered once, bucket by bucket
//    (TrainerMemory::reduce_bucket_elems, DeepSpeed's reduce_bucket_size),
//    into this rank's partition (ceil(Psi / dp) elements, the tail padded);
//    each rank runs AdamW on its partition in the model's own parameters and
//    keeps only that partition's moments; the parameters are then
//    all-gathered through the same bucket (2 Psi). The bucket and the
//    reduced partition exist during the step's end only;
//  - stage 2: the model reaches each unit's gradient buffer through
//    ZeroUnits (executor/zero_units.h), which reduce-scatters it into the
//    rank's partition (each unit padded to dp chunks) as soon as backward
//    finishes the unit, and frees it: the partition is the only gradient
//    kept (the ZeRO paper's Sec. 5.2); after AdamW each unit's chunks are
//    all-gathered back into the model's parameters;
//  - stage 3: the parameters are partitioned too; ZeroUnits all-gathers each
//    unit for forward and again for backward; the optimizer updates the
//    partition in place;
//  - parameter offload (stage 3, ZeRO-Infinity, arXiv 2104.07857): the
//    parameter partition lives in host memory and gathers read it there;
//  - optimizer offload (stage >= 1, ZeRO-Offload): the moments and the fp32
//    gradient partition live in host memory, where the optimizer step runs;
//  - delayed parameter update (with optimizer offload; ZeRO-Offload's DPU,
//    arXiv 2101.06840 Sec. 4.3): the host optimizer step on step t's
//    gradients runs on a thread of its own while the device computes step
//    t+1 on the weights of step t-1's update, and its result reaches the
//    model at step t+1's end; the reduced gradients are double-buffered on
//    the host and the updated weight partition has a host buffer of its own.
//    The first update reaches the model at the end of the second step;
//    finish_pending() applies the last one (before a checkpoint, at the end);
//  - mixed precision (a bf16 model): the weights, gradients and every
//    collective are bf16; the optimizer keeps fp32 master weights of its
//    partition beside the moments (with them in host memory under offload),
//    updates them from the bf16 gradients and rounds them back into the
//    model's bf16 weights (Micikevicius et al. 2018; the cost model's
//    zeroplan rows: 2 + 2 + 12 bytes per parameter).
// Buffers come from the device and host TrackingAllocators under the cost
// model's tags, so a run's model-state bytes can be set beside the cost
// model's zeroplan accounting. Each rank computes
// the mean loss of its own slice of the batch; the reported loss is the mean
// over ranks and micro-batches, as one rank on the whole batch computes it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "executor/adamw.h"
#include "executor/checkpoint.h"
#include "executor/communicator.h"
#include "executor/gpt_model.h"
#include "executor/llama_model.h"
#include "executor/offload_bridge.h"
#include "executor/phase_timer.h"
#include "executor/tagged_buffer.h"
#include "executor/zero_units.h"

namespace zp {

struct TrainerMemory {
  TrackingAllocator* device = nullptr;  // what the rank's accelerator holds (the CPU backend: tagged host memory)
  TrackingAllocator* host = nullptr;    // host memory of optimizer offload
  bool offload_optimizer = false;
  bool offload_params = false;  // ZeRO-Infinity (stage 3): the parameter partition in host memory
  // ZeRO-1's reduce-scatter and all-gather bucket, in elements (the cost
  // model's zeroplan default, costmodel/memory_options.cc).
  size_t reduce_bucket_elems = size_t{1} << 24;
  bool delayed_update = false;  // ZeRO-Offload's one-step delayed parameter update (needs offload_optimizer)
};

// Model: GptModel or LlamaModel of float or bf16 (flat params and grads,
// forward_backward with accumulation).
template <class Model>
class DataParallelTrainer {
 public:
  using T = typename Model::Scalar;
  static constexpr bool kMixed = !std::is_same_v<T, float>;
  DataParallelTrainer(Model& model, Communicator& comm, int zero_stage, AdamConfig adam, TrainerMemory memory = {});
  ~DataParallelTrainer();
  DataParallelTrainer(const DataParallelTrainer&) = delete;
  DataParallelTrainer& operator=(const DataParallelTrainer&) = delete;
  // One step on this rank's slice: `micro_batches` micro-batches of
  // `micro_batch` sequences of Tn tokens, one after another in tokens and
  // targets; returns the global mean loss.
  float step(const int* tokens, const int* targets, int micro_batch, int Tn, int micro_batches = 1);
  // For trainers that run the micro-batches themselves (pipelines), any
  // ZeRO stage: begin_step() before the first micro-batch, the model's
  // forward and backward of each (ZeRO-2/3 reduce-scatter each unit as
  // backward finishes it), then apply_gradients(m): it averages over the
  // group and the m micro-batches, reduces what is still unreduced and
  // steps the optimizer.
  void begin_step();
  void apply_gradients(int micro_batches);
  // Keeps `unit`'s gradients out of the per-micro-batch reductions until
  // apply_gradients, accumulated whole over the step, where unit_gradients()
  // reaches them (a pipeline's tied embedding, which the end stages sum
  // first). -1: none.
  void hold_unit(int unit);
  T* unit_gradients(int unit);
  // ZeRO-3: the most parameter bytes held gathered at once (0 otherwise).
  uint64_t zero3_peak_gathered_bytes() const { return units_ ? units_->peak_gathered_bytes() : 0; }
  // The last step's phases on the device's timeline (executor/phase_timer.h).
  struct Phases {
    double forward_s = 0, backward_s = 0, gradient_sync_s = 0, optimizer_s = 0, parameter_gather_s = 0;
    double gradient_zeroing_s = 0;  // the step's start: the gradients (ZeRO-0/1) or the partition (2/3) zeroed
  };
  const Phases& last_phases() const { return phases_; }
  // Delayed update: waits for the update in flight and puts its weights in
  // the model (nothing otherwise).
  void finish_pending();
  // What this rank holds (its moments are its partition's for stage >= 1),
  // for checkpoints; restore() takes back what state() gave. With a delayed
  // update in flight, state() throws: finish_pending() first.
  CheckpointState state() const;
  void restore(const CheckpointState& s);
  // The lengths of state()'s four arrays (params, master, m, v), without the copy.
  std::array<size_t, 4> state_sizes() const;

 private:
  // One AdamW step on the fp32 weights of `count` elements (the master copy
  // under mixed precision, else `weights` themselves) from `grads`, with the
  // moments (and master weights) from element `at` of the partition, then
  // the bf16 weights rounded from the master copy.
  template <class G>
  void update(T* weights, Device& weights_device, const G* grads, float scale, size_t count, size_t at);
  // ZeRO-1: this rank's partition of the model's parameters all-gathered
  // into every rank's copy, bucket by bucket.
  void gather_partition();
  // ZeRO-1: elements [first, first + len) of rank r's partition, where they
  // are in the model's flat buffers: (offset, count), clipped to the model.
  std::pair<size_t, size_t> owned_range(size_t r, size_t first, size_t len) const;
  // ZeRO-0/1: this rank's whole partition, owned_range(rank, 0, shard) (ZeRO-0: everything).
  std::pair<size_t, size_t> owned_partition() const;
  // apply_gradients' work, its phases marked on timer_.
  void reduce_and_update(int micro_batches);
  // Delayed update: the host buffers; the step on the reduced gradients,
  // started on the worker thread; its weights put in the model.
  void setup_delayed();
  void launch_delayed(float scale);
  void apply_delayed();
  Buffer<float>& reduced_gradients();
  Model& model_;
  Backend<T>& be_;
  OffloadBridge<T> bridge_;  // where the optimizer runs (the host's backend under offload on a GPU)
  Communicator& comm_;
  int stage_;
  AdamConfig adam_;
  TrainerMemory memory_;
  int steps_ = 0;
  Phases phases_;
  PhaseTimer timer_;  // read once a step, at the end of apply_gradients
  size_t shard_ = 0;       // partition size (stage 0, 1)
  Buffer<float> m_, v_;    // optimizer states (the partition's for stage >= 1)
  Buffer<float> master_;   // mixed precision: the fp32 master weights of the same elements
  Buffer<float> grad_fp32_;  // stage 1 under offload: the host optimizer's reduced fp32 gradients
  std::unique_ptr<ZeroUnits<T>> units_;  // stage 2, 3
  // Delayed update: the gradients the worker reads (the step before's), the
  // partition's weights it writes (for an fp32 model: the fp32 weights it
  // keeps), and the worker.
  Buffer<float> pending_grads_;
  Buffer<T> delayed_weights_;
  std::thread worker_;
};

extern template class DataParallelTrainer<GptModel<float>>;
extern template class DataParallelTrainer<LlamaModel<float>>;
extern template class DataParallelTrainer<GptModel<bf16>>;
extern template class DataParallelTrainer<LlamaModel<bf16>>;

}  // namespace zp
