#include "costmodel/rank_params.h"

#include <algorithm>

namespace zp {

RankParams rank_params(const ModelShape& m, const Layout& l) {
  const uint64_t t = l.tp, h = m.hidden, f = m.ffn;
  RankParams r;
  // Megatron pads the vocabulary to a multiple of 128 * tp
  // (megatron/training/tokenizer/tokenizer.py, _vocab_size_with_padding);
  // the others shard ceil(V / tp) rows.
  const uint64_t multiple = l.framework == Framework::Megatron ? 128 * t : t;
  r.padded_vocab = (m.vocab + multiple - 1) / multiple * multiple;
  const uint64_t vocab_shard = r.padded_vocab / t;

  const uint64_t qkv_out = (m.heads + 2 * m.kv_heads) * m.head_dim;
  uint64_t attn = h * qkv_out / t + m.heads * m.head_dim * h / t;
  if (m.qkv_bias) attn += qkv_out / t;
  if (m.attn_out_bias) attn += h;
  const bool swiglu = m.mlp == MlpKind::SwiGlu;
  uint64_t expert = (swiglu ? 3 : 2) * h * f / t;
  if (m.mlp_bias) expert += (swiglu ? 2 * f : f) / t + h;
  const uint64_t norms = 2 * (m.norm == NormKind::LayerNorm ? 2 * h : h);
  if (m.experts > 0) {
    r.layer_dense = attn + h * m.experts + norms;
    r.layer_experts = m.experts / l.ep * expert;
  } else {
    r.layer_dense = attn + expert + norms;
  }
  r.embedding = vocab_shard * h;
  r.position = m.params.position;
  r.embedding_norm = m.params.embedding_norm;
  r.final_norm = m.params.final_norm;
  r.head = (!m.tied || l.pp > 1) ? vocab_shard * h : 0;
  r.largest_module = std::max({r.embedding, r.position, h * qkv_out / t, h * f / t});
  return r;
}

}  // namespace zp
