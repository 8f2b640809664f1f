// The time of one training step, phase by phase, and the bytes every GPU
// sends, for a layout on a cluster (docs/time-model.md has every formula and
// its source).
//
//  - Compute: each layer's GEMMs, attention and elementwise work per
//    micro-batch (compute.h); backward twice forward; full recompute repeats
//    the forward, selective recompute the attention core.
//  - Tensor parallel: two all-reduces of T*h per layer forward and two
//    backward (all-gather + reduce-scatter pairs with sequence parallelism,
//    plus the all-gathers Megatron redoes in backward), one more pair per
//    recomputed forward; exposed unless tp_comm_overlap.
//  - Pipeline: 1F1B and GPipe take (m + p - 1) micro-batch slots, so the
//    bubble fraction is (p-1)/m; interleaved takes (m + (p-1)/v) slots
//    (Narayanan et al. 2021 Sec. 2.2); activations and their gradients cross
//    each stage boundary point to point (v times as many with interleaving).
//  - Data parallel: all-reduce 2*Psi*(d-1)/d, ZeRO-1/2 reduce-scatter +
//    all-gather (the same 2*Psi), ZeRO-3 all-gather forward and backward +
//    reduce-scatter (3*Psi) per micro-batch; overlapped with backward (or,
//    for ZeRO-3, with the layer computing) where the framework overlaps, only
//    the exposed part added.
//  - Optimizer: a memory-bound pass over the rank's partition on the GPU, or
//    CPU Adam with PCIe traffic (ZeRO-Offload), hidden behind the next step
//    with delayed_update; NVMe traffic at the node's NVMe bandwidth shared by
//    its GPUs (ZeRO-Infinity's bandwidth-centric partitioning: every GPU reads
//    its own partition, so aggregate bandwidth grows with the GPU count).
#pragma once

#include <array>
#include <cstdint>

#include "costmodel/collectives.h"
#include "costmodel/compute.h"
#include "costmodel/evaluator_reuse.h"
#include "costmodel/layout.h"
#include "costmodel/model_shape.h"
#include "costmodel/rank_params.h"
#include "models/hardware.h"

namespace zp {

// Communication per GPU per step, one row per collective kind and dimension.
struct CommRow {
  const char* dimension = "";   // "dp", "tp", "pp", "ep", "embedding"
  const char* collective = "";  // "all-reduce", "reduce-scatter", ...
  double buffer_bytes = 0;      // size of one call's buffer
  double calls = 0;             // per step
  double sent_bytes = 0;        // per GPU per step (ring algorithm)
  double seconds = 0;           // time of all calls, before overlap
};

struct StepTime {
  // Phases on the critical path, seconds per step.
  double compute_s = 0;          // forward + backward + recompute of all micro-batches
  double recompute_s = 0;        // the recompute part of compute_s
  double tp_comm_s = 0;          // exposed tensor-parallel communication
  double ep_comm_s = 0;          // MoE all-to-all
  double pp_comm_s = 0;          // point-to-point across stage boundaries
  double bubble_s = 0;           // pipeline fill and drain = warmup_s + cooldown_s
  double warmup_s = 0;           // stages waiting for their first forward
  double cooldown_s = 0;         // stages idle after their last backward
  double dp_comm_s = 0;          // exposed data-parallel / ZeRO communication
  double optimizer_s = 0;        // optimizer step (GPU or exposed CPU part)
  double offload_s = 0;          // exposed PCIe / NVMe traffic
  double gradient_zeroing_s = 0;  // zeroplan's executor zeroing its gradient buffers (costmodel/gradient_zeroing.h)
  double total_s = 0;

  double microbatch_forward_s = 0, microbatch_backward_s = 0;  // one micro-batch, busiest stage
  double bubble_fraction = 0;    // bubble / (total pipeline time)
  double tokens_per_s = 0, samples_per_s = 0;
  double model_flops = 0;        // per step, all GPUs (matrix products, no recompute)
  double hardware_flops = 0;     // per step, all GPUs, with recompute
  double tflops_per_gpu = 0;     // model FLOPs
  double mfu = 0, hfu = 0;

  std::array<CommRow, 12> comm{};
  int comm_rows = 0;
};

struct TimeInputs {
  const ModelShape& model;
  const Layout& layout;
  const GpuSpec& gpu;
  const NodeSpec& node;
  const Network& network;
};

StepTime evaluate_time(const TimeInputs& in);

// The per-shape work of evaluate_time (per-layer compute, the output layer,
// tensor-parallel and expert collectives per layer, per-rank parameters),
// which depends only on tp, ep, micro-batch, sequence, sequence parallelism,
// attention, dropout, precision, framework and whether there is a pipeline.
// A search changes those far less often than dp, ZeRO stage, offload or
// recompute; TimeEvaluator keeps the last and reuses it. Same answers as
// evaluate_time (a test checks), no heap allocation.
struct TimePrep {
  const ModelShape* model = nullptr;
  const Network* network = nullptr;
  const GpuSpec* gpu = nullptr;
  uint32_t tp = 0, ep = 0, micro_batch = 0, seq_len = 0;
  bool sequence_parallel = false, head_copy = false, tp_comm_overlap = false;
  Attention attention = Attention::Flash;
  Dropout dropout = Dropout::ModelDefault;
  Precision precision = Precision::Bf16;
  Framework framework = Framework::Zeroplan;

  LayerCompute lc;
  HeadCompute hc;
  ActivationShape x;
  RankParams rp;
  GroupSpan tp_span, ep_span;
  double tp_fwd_s = 0, tp_bwd_s = 0, tp_calls_fwd = 0, tp_calls_bwd = 0;
  double ep_layer_s = 0;
  double forward_flops_per_sequence = 0;  // model_forward_flops for one sequence
};

// The data-parallel collective times of one pipeline shape (all-reduce,
// reduce-scatter and all-gather of the busiest stage's dense and expert
// parameters), which depend only on these inputs: a search's micro-batch,
// recompute and sequence-parallel variants of one parallel layout share
// them, so TimeEvaluator keeps a few (one per stage split).
struct DpCollectives {
  const Network* network = nullptr;
  double dense = 0, experts = 0, grad_bytes = 0, param_bytes = 0;
  GroupSpan dp_span, edp_span;
  bool valid = false;
  double dense_all_reduce_s = 0, dense_reduce_scatter_s = 0, dense_all_gather_s = 0;
  double expert_all_reduce_s = 0, expert_reduce_scatter_s = 0, expert_all_gather_s = 0;
};

// The per-pipeline work of evaluate_time on top of TimePrep: the busiest
// stage's micro-batch times, the pipeline with its bubble and point-to-point
// traffic, and the data-parallel collectives of every ZeRO stage. It depends
// on the layout's parallel sizes, schedule, micro-batches and recompute, not
// on the ZeRO stage or offload, which a search varies innermost.
struct PipelinePrep {
  uint32_t dp = 0, pp = 0, vpp = 0, grad_accum = 0, recompute_layers = 0, first_stage_layers = 0, last_stage_layers = 0;
  Schedule schedule = Schedule::OneFOneB;
  Recompute recompute = Recompute::None;
  Optimizer optimizer = Optimizer::Adam;
  bool fp32_grad_accum = false;
  bool valid = false;
  double nvme_optimizer_bytes_per_param = 0;  // what NVMe optimizer offload reads and writes per parameter

  double layers = 0, recompute_layer_s = 0;
  double microbatch_forward_s = 0, microbatch_backward_s = 0;
  double p2p_buffer = 0, p2p_calls = 0, p2p_per_mb_s = 0;
  double fill = 0, pipeline_s = 0;
  // Data parallel: parameters held by the busiest stage (dense, experts),
  // bytes on the wire and the collective times over each group.
  double dense = 0, experts = 0, grad_bytes = 0, param_bytes = 0;
  double units = 0;  // the busiest stage's parameter units (its layers, the embedding or the final norm and head)
  GroupSpan dp_span, edp_span;
  DpCollectives collectives;  // their times (from TimeEvaluator's memo)
  double tied_embedding_bytes = 0, tied_embedding_s = 0;
  double held_unit_params = 0;  // the tied embedding with pp > 1: its gradients held to the step's end
};

class TimeEvaluator {
 public:
  StepTime evaluate(const TimeInputs& in);
  // A lower bound on evaluate(in).total_s: the pipeline alone (compute,
  // tensor/expert-parallel and point-to-point communication, bubble), without
  // the data-parallel sync, optimizer or offload that come on top. The same
  // for every ZeRO stage and offload choice; the planner skips layouts whose
  // best possible throughput cannot enter its answer.
  double lower_bound_s(const TimeInputs& in);
  // evaluate(in).tokens_per_s, the same double, without the phase breakdown,
  // communication rows and FLOP rates: what a search ranks by.
  // Reuse::SameShape: only state choices changed since the previous call.
  double tokens_per_s(const TimeInputs& in, Reuse reuse = Reuse::Check);
  // What one rank of `stage` runs when its world is emulated on one GPU
  // (zeroplan validate, executor/loopback_communicator.h).
  struct EmulatedRank {
    // Its layers (and output layer) for every micro-batch, recompute
    // included, the local copies its collectives make inside forward and
    // backward (local_copies_in_compute_s) and its host copies there
    // (offload_in_compute_s), as its measured compute phases hold them.
    double compute_s = 0;
    double local_copies_in_compute_s = 0;
    double offload_in_compute_s = 0;  // host copies inside forward and backward (ZeRO-2/3 offload), also a part of it
    double local_copies_at_step_end_s = 0;  // ZeRO-1/2's step-end reduce and gather as local copies
    // Its pipeline receives, each zero-filled by the loopback (no neighbour
    // sends), outside forward and backward: the pipeline's transfer phase.
    double local_receives_s = 0;
    double offload_in_sync_s = 0;           // ZeRO-1 offload's partition to the host and its add, in that sync
    double optimizer_s = 0;                 // as in evaluate()
    double offload_s = 0;  // the rest of the offload (not in the fields above)
    // Its gradient zeroing outside forward and backward (ZeRO-2/3's
    // per-micro-batch buckets are zeroed inside backward: in compute_s).
    double gradient_zeroing_s = 0;
    double total_s = 0;
  };
  EmulatedRank emulated_rank(const TimeInputs& in, uint32_t stage);

 private:
  const PipelinePrep& prepared(const TimeInputs& in);
  TimePrep prep_;
  PipelinePrep pipe_;
  std::array<DpCollectives, 4> dp_collectives_{};
  int dp_victim_ = 0;
};

// Seconds to train `tokens` tokens at this step time.
inline double time_to_train_s(const StepTime& t, double tokens) { return t.tokens_per_s > 0 ? tokens / t.tokens_per_s : 0; }

}  // namespace zp
