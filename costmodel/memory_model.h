// The memory cost model: bytes per GPU, per node's host memory and per node's
// NVMe for one layout, component by component, at the most loaded rank.
//
// evaluate_memory() (and MemoryEvaluator, below) is the planner's hot path: no heap allocation, a handful
// of pipeline stages evaluated (the first, the first with an extra
// layer, the last: every other stage holds no more than one of these), the
// maximum taken. memory_rows_for_stage() gives the full table of one stage for
// `explain`, the executor and tests. The layout must have passed check_layout().
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "costmodel/activations.h"
#include "costmodel/cluster.h"
#include "costmodel/evaluator_reuse.h"
#include "costmodel/layout.h"
#include "costmodel/memory_options.h"
#include "costmodel/memory_rows.h"
#include "costmodel/model_shape.h"
#include "costmodel/model_states.h"
#include "costmodel/rank_params.h"

namespace zp {

struct MemoryInputs {
  const ModelShape& model;
  const Layout& layout;
  const ClusterShape& cluster;
  const MemoryOptions& options;  // resolved (resolve_options)
};

// The totals a search needs to decide whether a layout fits.
struct MemoryFit {
  uint32_t stage = 0;             // the most loaded rank's pipeline stage
  uint64_t gpu_bytes = 0;         // GPU total of that rank
  uint64_t host_bytes_per_node = 0;
  uint64_t nvme_bytes_per_node = 0;
  bool fits_gpu = false, fits_host = false, fits_nvme = false;
  bool fits() const { return fits_gpu && fits_host && fits_nvme; }
};

// ... and the breakdown by component of the most loaded rank.
struct MemoryResult : MemoryFit {
  MemoryTotals rank;
};

MemoryResult evaluate_memory(const MemoryInputs& in);

// The parts of an evaluation that depend only on a few layout fields (tensor
// and expert parallelism, micro-batch, sequence, recompute, precision, ...):
// per-rank parameters, one layer's activation bytes, the state rules. A
// search varies dp, ZeRO stage, offload and pipeline depth far more often
// than these, so MemoryEvaluator keeps the last ones and reuses them when the
// fields they depend on are unchanged. Results are identical to
// evaluate_memory(); no heap allocation.
struct MemoryPrep {
  // What the shape part was built from.
  const ModelShape* model = nullptr;
  uint32_t tp = 0, ep = 0, micro_batch = 0, seq_len = 0;
  bool head_copy = false, sequence_parallel = false, partition_activations = false, checkpoints_to_cpu = false;
  Recompute recompute = Recompute::None;
  Attention attention = Attention::Flash;
  Dropout dropout = Dropout::ModelDefault;
  Precision precision = Precision::Bf16;
  Framework framework = Framework::Zeroplan;
  RankParams r;
  ActivationShape x;
  uint64_t layer_saved = 0;       // one layer, one micro-batch, as saved under the recompute mode
  uint64_t layer_full = 0;        // one layer without recompute
  uint64_t layer_checkpoint = 0;  // full recompute: the saved input
  // zeroplan's executor, on a stage after the first or the first: the bytes
  // of backward's own workspace rows at each moment of its peak (loop, head,
  // end), which decide the moment, and of every workspace row at that
  // moment; and by [first][last] the rows that depend on the stage's place
  // (pipeline receive buffers, the CUDA backend's token index arrays).
  std::array<std::array<uint64_t, 3>, 2> executor_own_workspace{};
  std::array<std::array<uint64_t, 3>, 2> executor_workspace_bytes{};
  std::array<std::array<uint64_t, 2>, 2> executor_stage_end_bytes{};
  Residence checkpoint_residence = Residence::Gpu;
  // State rules for every ZeRO stage x optimizer offload x parameter offload
  // of one (framework, precision, optimizer, gradient dtype), filled lazily.
  struct RulesSlot {
    PlacedStates placed;
    StateBytesPerParam by_residence;  // the same states summed per residence
    uint64_t optimizer_side_bytes = 0;  // per parameter, what optimizer offload moves
  };
  Framework rules_framework = Framework::Zeroplan;
  Precision rules_precision = Precision::Bf16;
  Optimizer rules_optimizer = Optimizer::Adam;
  bool rules_fp32_accum = false;
  // Filled on first use: a cold evaluation builds only the slot it needs.
  std::array<std::optional<RulesSlot>, 4 * 3 * 3> rules_slots{};
  const RulesSlot* rules = nullptr;  // the slot of the layout being evaluated
  // The activation side (activations, logits, token ids) of each candidate
  // stage, for one pipeline shape.
  bool act_valid = false;
  uint32_t act_pp = 0, act_vpp = 0, act_grad_accum = 0, act_recompute_layers = 0, act_first = 0, act_last = 0;
  Schedule act_schedule = Schedule::OneFOneB;
  std::array<std::array<uint64_t, 3>, 3> act_bytes{};  // per residence: what a fit needs
  std::array<TotalsSink, 3> act_totals{};              // per component, for a breakdown, built on demand
  // The same at the step's end of a rank that frees each micro-batch's
  // activations by then (pipeline or tensor parallel): without the GPU's
  // activations and logits.
  std::array<std::array<uint64_t, 3>, 3> act_end_bytes{};
  std::array<TotalsSink, 3> act_end_totals{};
  bool act_totals_valid = false;
  std::array<uint32_t, 3> act_stages{};
  std::array<uint64_t, 3> act_dense{}, act_experts{};  // parameters each candidate stage holds
  std::array<uint64_t, 3> act_layers{};                // and its transformer layers
  // zeroplan's executor on each candidate stage, per moment: its own
  // workspace (executor_own_workspace) and every workspace and pipeline
  // receive buffer's bytes.
  std::array<std::array<uint64_t, 3>, 3> act_executor_own{}, act_executor_bytes{};
  int act_count = 0;

  // Bumped whenever the rules or the activation side are rebuilt, so a
  // StatesCache knows when to look again.
  uint64_t rules_version = 0, activations_version = 0;
};

// The state side of each candidate stage (emit_states: model states, ZeRO-3
// working set, buckets, offload staging; zeroplan's executor buffers; and the
// fixed runtime overheads) per state choice, as bytes per residence, kept for
// the search (evaluate_fit). It depends on the stages' parameters, dp, ep,
// tp, the state rules and the options, not on the micro-batch, accumulation,
// sequence or recompute, so it outlives MemoryPrep's shape part: the search's
// micro-batch, accumulation and recompute variants of one parallel layout
// reuse it. A few entries, one per stage split, since the search alternates
// the default split with the uneven one of each recompute mode. A slot is
// valid while its generation is its entry's; any change to what the entry
// depends on gives the entry a new generation. About 40 KB: a cold
// evaluate_memory() does without it.
struct StatesCache {
  struct StatesKey {
    const ModelShape* model = nullptr;
    uint32_t dp = 0, ep = 0, pp = 0, tp = 0;
    bool emulated = false;  // the NCCL communicators in the runtime overheads
    RankParams r;
    int count = 0;
    std::array<uint32_t, 3> stages{};
    std::array<uint64_t, 3> dense{}, experts{}, layers{};
    Framework framework = Framework::Zeroplan;
    bool delayed_update = false;  // zeroplan's delayed update keeps a second gradient partition
    bool operator==(const StatesKey&) const = default;
  };
  // The option fields emit_states and the fixed runtime overheads read,
  // remembered per ZeRO stage (a search resolves one MemoryOptions per stage).
  struct OptionsKey {
    uint64_t reduce_bucket_elems = 0, prefetch_elems = 0, max_live_elems = 0;
    uint64_t nvme_param_buffer_elems = 0, optimizer_subgroup_elems = 0;
    uint64_t cuda_context_bytes = 0, cublas_workspace_bytes = 0;
    uint64_t nccl_first_communicator_bytes = 0, nccl_communicator_bytes = 0;
    bool overlap_comm = false, seen = false;
    bool operator==(const OptionsKey&) const = default;
  };
  // zeroplan's executor buffers of one candidate stage, without what
  // follows the micro-batch (its operator workspace and pipeline receive
  // buffers, which MemoryPrep holds per shape), so that the micro-batch
  // variants of a layout share the slot: per moment of the peak (loop, head,
  // end; costmodel/memory_model.cc, emit_executor_buffers), the bytes of the
  // units it holds, which decide the moment with the workspace, and of the
  // rows it emits then.
  struct ExecutorSlot {
    std::array<bool, 3> possible{};
    std::array<uint64_t, 3> held_bytes{}, row_bytes{};
    bool present = false;            // zeroplan's executor runs a stage with layers
    bool frees_activations = false;  // a pipeline or tensor-parallel rank: none at the step's end
  };
  struct StateSlot {
    uint64_t generation = 0;
    std::array<std::array<uint64_t, 3>, 3> bytes{};  // [candidate stage][residence]
    std::array<ExecutorSlot, 3> executor{};          // [candidate stage]
    uint64_t fixed_overhead_bytes = 0;               // CUDA context, cuBLAS, NCCL: every stage alike
  };
  struct StatesEntry {
    StatesKey key;
    uint64_t generation = 0;  // 0: holds nothing
    // ZeRO stage x optimizer offload x parameter offload x tiling 1/4/16 (the
    // search's tile factors; any other factor is evaluated without a slot).
    std::array<StateSlot, 4 * 3 * 3 * 3> slots{};
    // The executor's part follows the ZeRO stage and tiling, not the
    // offloads: worked out once per ZeRO stage x tiling, copied into the slots.
    struct ExecutorPart {
      uint64_t generation = 0;
      std::array<ExecutorSlot, 3> stages{};
    };
    std::array<ExecutorPart, 4 * 3> executor_parts{};
  };
  std::array<StatesEntry, 4> entries{};
  int current = 0, victim = 0;
  uint64_t generations = 0;  // generations handed out (64 bits: never wraps)
  std::array<OptionsKey, 4> options_seen{};
  uint64_t rules_version_seen = 0, activations_version_seen = 0;  // MemoryPrep's, when last looked at
};

class MemoryEvaluator {
 public:
  MemoryResult evaluate(const MemoryInputs& in);
  // The same totals without the per-component breakdown (the search's pruning
  // step). Reuse::SameShape skips the checks of what the last call prepared:
  // the caller guarantees that only the state choices (ZeRO stage, offloads,
  // tile factor) differ from the previous call's inputs.
  MemoryFit evaluate_fit(const MemoryInputs& in, Reuse reuse = Reuse::Check);

 private:
  MemoryPrep prep_;
  StatesCache states_;
};

// Every row of one stage's rank, at its peak.
void memory_rows_for_stage(const MemoryInputs& in, uint32_t stage, RowsSink& sink);
// The activation side of one stage's rank (activations, recompute workspace,
// token ids, logits) while it holds its micro-batches' activations, whatever
// the moment of its peak: a pipeline or tensor-parallel rank's peak can be
// its step's end, when they are gone (zeroplan's executor).
void activation_rows_for_stage(const MemoryInputs& in, uint32_t stage, RowsSink& sink);

}  // namespace zp
