#include "models/param_count.h"

#include <algorithm>

#include "models/input_error.h"

namespace zp {
namespace {

// Shorthand for overflow-checked arithmetic with the model named in errors.
struct Checked {
  std::string what;
  uint64_t mul(uint64_t a, uint64_t b) const { return checked_mul(a, b, what); }
  uint64_t add(uint64_t a, uint64_t b) const { return checked_add(a, b, what); }
};

uint64_t norm_params(const ModelSpec& m) {
  return m.norm == NormKind::LayerNorm ? 2 * m.hidden_size : m.hidden_size;
}

}  // namespace

ParamCounts count_params(const ModelSpec& m) {
  const Checked c{"model '" + m.name + "'"};
  const uint64_t h = m.hidden_size;
  const uint64_t f = m.ffn_hidden_size;
  ParamCounts p;
  p.num_layers = m.num_layers;
  p.embedding = c.mul(m.vocab_size, h);
  p.position = m.position == PositionKind::Learned ? c.mul(m.max_seq_len, h) : 0;
  p.embedding_norm = m.embedding_norm ? norm_params(m) : 0;

  const uint64_t qkv_out = c.add(m.q_width(), c.mul(2, m.kv_width()));
  uint64_t attn = c.add(c.mul(h, qkv_out), c.mul(m.q_width(), h));
  if (m.qkv_bias) attn = c.add(attn, qkv_out);
  if (m.attn_out_bias) attn = c.add(attn, h);
  p.attention = attn;

  // One expert (or the dense MLP): GELU has up and down, SwiGLU gate, up, down.
  uint64_t expert = m.mlp == MlpKind::SwiGlu ? c.mul(3, c.mul(h, f)) : c.mul(2, c.mul(h, f));
  if (m.mlp_bias) expert = c.add(expert, m.mlp == MlpKind::SwiGlu ? 2 * f + h : f + h);
  if (m.is_moe()) {
    p.mlp = c.mul(m.num_experts, expert);
    p.mlp_active = c.mul(m.moe_top_k, expert);
    p.router = c.mul(h, m.num_experts);
  } else {
    p.mlp = expert;
    p.mlp_active = expert;
  }
  p.layer_norms = 2 * norm_params(m);
  p.layer = c.add(c.add(p.attention, p.mlp), c.add(p.router, p.layer_norms));
  p.final_norm = norm_params(m);
  p.head = m.tied_embeddings ? 0 : p.embedding;

  const uint64_t outside_layers =
      c.add(c.add(p.embedding, p.position), c.add(p.embedding_norm, c.add(p.final_norm, p.head)));
  p.total = c.add(outside_layers, c.mul(m.num_layers, p.layer));
  const uint64_t active_layer = c.add(c.add(p.attention, p.mlp_active), c.add(p.router, p.layer_norms));
  p.active = c.add(outside_layers, c.mul(m.num_layers, active_layer));

  // Largest module with its own parameters: the embedding, or one projection.
  uint64_t largest = std::max({p.embedding, p.position, c.mul(h, qkv_out), c.mul(h, f)});
  p.largest_module = largest;
  return p;
}

}  // namespace zp
