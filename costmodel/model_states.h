// Model states (weights, gradients, fp32 copies, optimizer states) per rank,
// under ZeRO stage 0-3 and each framework's accounting. A framework is a
// small table of rules: bytes per parameter for each state and the ZeRO stage
// from which that state is partitioned across the data-parallel group.
//
//  zeroplan  (the ZeRO paper, arXiv 1910.02054 Sec. 3 and Table 1; the table of
//            shared/reference/deepspeed-overview.md): 2 + 2 + K, K = 12 for
//            mixed-precision Adam (fp32 master 4, momentum 4, variance 4).
//            Stage 1 shards K, stage 2 also the gradients, stage 3 also the weights.
//  deepspeed (deepspeed/runtime/zero/stage_1_and_2.py and stage3.py; the
//            comment in estimate_zero2_model_states_mem_needs): bf16 weights 2,
//            bf16 gradients 2, fp32 gradients 4, fp32 master 4, Adam 8 ->
//            stage 1 4 + 16/dp, stage 2 2 + 18/dp, stage 3 18/dp (no bf16
//            gradient partition is kept at stage 3).
//  megatron  (megatron/training/theoretical_memory_usage.py and
//            docs/user-guide/features/dist_optimizer.md): bf16 weights with
//            fp32 main grads 18 or 6 + 12/d with the distributed optimizer
//            (stage 1); fp16 20 or 4 + 16/d; fp32 16 or 8 + 8/d.
// Optimizer offload moves the optimizer-side states (fp32 master, moments,
// fp32 gradients) to host or NVMe (ZeRO-Offload, arXiv 2101.06840 Sec. 4);
// parameter offload (stage 3) moves the weight partition.
#pragma once

#include <array>
#include <cstdint>

#include "costmodel/layout.h"
#include "costmodel/memory_rows.h"

namespace zp {

struct StateRule {
  Component component = Component::Weights;
  Dtype dtype = Dtype::Bf16;
  uint8_t shard_from_stage = 4;    // partitioned over dp at this ZeRO stage and above; 4 = never
  bool optimizer_side = false;     // moves with optimizer offload
};

struct StateRules {
  std::array<StateRule, 6> rules{};
  int count = 0;
};

StateRules state_rules(const Layout& l);

// Bytes per parameter of the model states at `stage` with `dp` ways, on the
// GPU and in total (the overview's 2 + 2 + 12 arithmetic), as a double for
// tests and docs; the memory model itself uses integer rows.
double state_bytes_per_param(const Layout& l, uint32_t dp);
// Bytes per parameter of the states that move with optimizer offload.
uint64_t optimizer_side_bytes_per_param(const Layout& l);

// Where one state lives under `l`, whether it is partitioned, or whether it is
// not kept at all.
struct StatePlacement {
  bool kept = true;
  bool sharded = false;
  Residence where = Residence::Gpu;
};

inline StatePlacement place_state(const Layout& l, const StateRule& s) {
  StatePlacement p;
  p.sharded = l.zero_stage >= s.shard_from_stage;
  if (s.optimizer_side && l.offload_optimizer != Offload::None) {
    p.where = l.offload_optimizer == Offload::Cpu ? Residence::Host : Residence::Nvme;
  }
  if (s.component == Component::Weights && l.offload_param != Offload::None) {
    p.where = l.offload_param == Offload::Cpu ? Residence::Host : Residence::Nvme;
  }
  // With the optimizer offloaded at stage >= 2, reduced gradient partitions
  // stream to the host through the buckets; no GPU copy is kept.
  if (s.component == Component::Gradients && l.offload_optimizer != Offload::None && l.zero_stage >= 2) p.kept = false;
  return p;
}

// Bytes per parameter by residence, split into unpartitioned and partitioned
// parts: states(P, ways) = unsharded * P + sharded * ceil(P / ways).
struct StateBytesPerParam {
  std::array<uint64_t, kNumResidences> unsharded{}, sharded{};
};
StateBytesPerParam state_bytes_by_residence(const Layout& l, const StateRules& r);

// The rules of one layout with their placements resolved, kept states only
// (what the hot path iterates).
struct PlacedStates {
  struct Entry {
    Component component;
    Residence where;
    Dtype dtype;
    bool sharded;
  };
  std::array<Entry, 6> entries{};
  int count = 0;
};
PlacedStates place_states(const Layout& l, const StateRules& r);

// Emits the model-state rows for `params` parameters of which one rank's
// partition holds `shard` (ceil(params / ways) for one flat buffer padded to
// equal parts; more when each unit is padded on its own).
template <class Sink>
void emit_partitioned_states(const PlacedStates& placed, uint64_t params, uint64_t shard, const char* what, Sink& sink) {
  for (int i = 0; i < placed.count; ++i) {
    const PlacedStates::Entry& e = placed.entries[i];
    sink.add(tensor_row(e.component, e.where, e.dtype, what, e.sharded ? shard : params));
  }
}

// The model-state rows for `params` parameters in one flat buffer partitioned `ways` ways.
template <class Sink>
void emit_model_states(const PlacedStates& placed, uint64_t params, uint64_t ways, const char* what, Sink& sink) {
  emit_partitioned_states(placed, params, (params + ways - 1) / ways, what, sink);
}

// The same bytes for a sink that keeps per-residence sums only, without a row
// per state: `by_residence` must be state_bytes_by_residence of the same
// layout (tests check both paths agree byte for byte).
template <class Sink>
void add_partitioned_state_bytes(const StateBytesPerParam& by_residence, uint64_t params, uint64_t shard, Sink& sink) {
  for (int r = 0; r < kNumResidences; ++r) {
    sink.add_bytes(r, by_residence.unsharded[r] * params + by_residence.sharded[r] * shard);
  }
}
template <class Sink>
void add_model_state_bytes(const StateBytesPerParam& by_residence, uint64_t params, uint64_t ways, Sink& sink) {
  add_partitioned_state_bytes(by_residence, params, (params + ways - 1) / ways, sink);
}

template <class Sink>
void emit_model_states(const Layout& l, uint64_t params, uint64_t ways, const char* what, Sink& sink) {
  emit_model_states(place_states(l, state_rules(l)), params, ways, what, sink);
}

}  // namespace zp
