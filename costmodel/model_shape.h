// ModelShape: the numbers of a ModelSpec and its ParamCounts that the cost
// model reads, flattened into a trivially copyable struct so one evaluation
// touches no strings and no heap. Built once per model with make_shape().
#pragma once

#include <cstdint>

#include "models/model_spec.h"
#include "models/param_count.h"

namespace zp {

struct ModelShape {
  uint64_t layers = 0, hidden = 0, ffn = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0, max_seq = 0;
  uint64_t experts = 0, top_k = 0;
  MlpKind mlp = MlpKind::Gelu;
  NormKind norm = NormKind::LayerNorm;
  PositionKind position = PositionKind::Learned;
  bool tied = true, qkv_bias = false, attn_out_bias = false, mlp_bias = false, embedding_norm = false;
  bool dropout = false;
  ParamCounts params;
};

ModelShape make_shape(const ModelSpec& m);

}  // namespace zp
