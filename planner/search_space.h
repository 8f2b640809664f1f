// The space of layouts the planner searches for one model on one cluster:
// every factorisation dp x tp x pp = N (tp inside a node and dividing heads,
// KV heads and the FFN; pp up to the layer count, uneven splits allowed),
// expert parallelism for MoE, interleaving, micro-batch sizes, accumulation
// steps meeting the global batch (or a few per pipeline when none is given),
// ZeRO 0-3, optimizer and parameter offload, recompute and sequence
// parallelism, and the attention kernel where asked. Selective recompute is
// visited with materialised attention only: it recomputes the attention core
// to drop its s x s scores (Korthikanti et al. 2022, Sec. 4.2), which flash
// attention never keeps, so under flash it saves nothing and at best costs
// nothing (zeroplan's executor) or repeats the core (Megatron-LM): a
// duplicate or a dominated layout. for_each_layout() calls a function for each candidate without
// allocating; the candidates still go through check_layout_shape (their
// state half is valid by construction, state_choices). The visitor also
// gets a shape id that changes whenever anything but the model-state choices
// (ZeRO stage, offload, tiling, checkpoint placement) changes: what depends
// only on the shape (check_layout_shape, the step time's lower bound) can be
// computed once per id.
#pragma once

#include <cstdint>
#include <vector>

#include "costmodel/layout.h"
#include "costmodel/model_shape.h"

namespace zp {

struct SearchSpace {
  uint64_t num_gpus = 8;
  uint64_t gpus_per_node = 8;
  uint32_t seq_len = 2048;
  uint64_t global_batch = 0;  // sequences; 0 = free
  Framework framework = Framework::Zeroplan;
  Precision precision = Precision::Bf16;
  bool allow_offload = true;
  bool allow_nvme = true;
  bool allow_param_offload = true;  // ZeRO-Infinity; off reproduces ZeRO-Offload (optimizer only)
  bool uneven_splits = true;    // also the best uneven pipeline split Megatron-Core can run (planner_split)
  bool delayed_update = false;  // ZeRO-Offload's delayed parameter update for offloaded layouts (changes the optimizer's semantics: opt in)
  std::vector<uint32_t> micro_batches = {1, 2, 4, 8};
  std::vector<uint32_t> accumulation_per_stage = {1, 2, 4, 8};  // grad_accum = pp * this, when free
  // The attention kernels to try: flash alone by default (FlashAttention-2
  // in Megatron-LM and DeepSpeed, zeroplan's own flash kernels); both where
  // flash is slow or missing (zeroplan's warp kernels without bf16 tensor
  // cores, a V100's frameworks), at the cost of the s x s scores.
  std::vector<Attention> attentions = {Attention::Flash};
};

template <class F>
void for_each_layout(const ModelShape& m, const SearchSpace& s, F&& visit);

// One model-state choice of the search: ZeRO stage, offloads, tiling.
struct StateChoice {
  uint8_t zero_stage = 0;
  Offload offload_optimizer = Offload::None;
  Offload offload_param = Offload::None;
  uint32_t tile_factor = 1;
  bool tiled = false;  // a tiled ZeRO-Infinity variant: full-recompute checkpoints go to the host
};

// The state choices the search visits for every shape, in its order: ZeRO
// stages 0-3 with optimizer offload and parameter offload (as the space
// allows them) that check_layout_states admits for the framework (with a
// pipeline or without: DeepSpeed's pipeline engine takes ZeRO 0-1,
// Megatron-LM 0-1 without offload), and in a second pass the tiled variants
// (tile factor 4 and 16) of each parameter offload. The tiled pass comes
// last so that the checkpoint placement, which the memory model's per-shape
// work depends on, changes once per shape rather than with every offload
// choice. Every layout for_each_layout visits therefore passes
// check_layout_states; check_layout_shape is the caller's.
std::vector<StateChoice> state_choices(const SearchSpace& s, bool pipeline);

// Divisors of n in increasing order, up to `limit`.
std::vector<uint64_t> divisors(uint64_t n, uint64_t limit);

}  // namespace zp

#include "planner/search_space_impl.h"
