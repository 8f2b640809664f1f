// Parameters held by one rank after tensor, expert and pipeline parallelism.
// Column- and row-parallel weights (and the biases of column-parallel
// outputs) are divided by tp; row-parallel output biases and norms are
// replicated (Megatron-LM core/tensor_parallel/layers.py); the word embedding
// is vocabulary-parallel (VocabParallelEmbedding), padded as the framework
// pads it; experts are divided over ep and each expert's weights over tp.
#pragma once

#include <cstdint>

#include "costmodel/layout.h"
#include "costmodel/model_shape.h"

namespace zp {

struct RankParams {
  uint64_t layer_dense = 0;    // attention + dense MLP + router + norms, per layer
  uint64_t layer_experts = 0;  // experts of one MoE layer on this rank
  uint64_t embedding = 0;      // first stage: word embedding shard
  uint64_t position = 0;       // first stage: learned positions (replicated)
  uint64_t embedding_norm = 0; // first stage
  uint64_t final_norm = 0;     // last stage
  uint64_t head = 0;           // last stage: untied output layer, or the tied copy when pp > 1
  uint64_t largest_module = 0; // largest single module on the rank (DeepSpeed's gather unit)
  uint64_t padded_vocab = 0;
  bool operator==(const RankParams&) const = default;
};

RankParams rank_params(const ModelShape& m, const Layout& l);

// Layers held by pipeline stage `stage` of `pp`: L/pp each, the remainder
// going to the last stages (the first stage already holds the embedding).
inline uint64_t layers_on_stage(uint64_t layers, uint32_t pp, uint32_t stage) {
  uint64_t base = layers / pp, rem = layers % pp;
  return base + (stage >= pp - rem ? 1 : 0);
}

// The same under the layout's split: an uneven split (first_stage_layers,
// last_stage_layers) fixes the end stages and divides the rest evenly among
// the stages between (check_layout guarantees it divides).
inline bool uneven_split(const Layout& l) { return l.first_stage_layers != 0 || l.last_stage_layers != 0; }
inline uint64_t layers_on_stage(uint64_t layers, const Layout& l, uint32_t stage) {
  if (!uneven_split(l)) return layers_on_stage(layers, l.pp, stage);
  if (stage == 0 && l.first_stage_layers) return l.first_stage_layers;
  if (stage + 1 == l.pp && l.last_stage_layers) return l.last_stage_layers;
  const uint64_t ends = uint64_t{l.first_stage_layers} + l.last_stage_layers;
  const uint32_t between = l.pp - (l.first_stage_layers ? 1 : 0) - (l.last_stage_layers ? 1 : 0);
  return between ? (layers - ends) / between : 0;
}

}  // namespace zp
