#include "planner/model_family.h"

#include <algorithm>

#include "models/input_error.h"

namespace zp {

ModelSpec family_model(const std::string& family, uint64_t hidden) {
  ModelSpec m;
  m.hidden_size = hidden;
  m.head_dim = 128;
  m.num_heads = hidden / 128;
  m.num_layers = std::max<uint64_t>(2, hidden / 128);
  if (family == "gpt") {
    m.family = "gpt";
    m.ffn_hidden_size = 4 * hidden;
    m.num_kv_heads = m.num_heads;
    m.vocab_size = 50257;
    m.max_seq_len = 2048;
    m.qkv_bias = m.attn_out_bias = m.mlp_bias = true;
    m.dropout = true;
  } else if (family == "llama") {
    m.family = "llama";
    m.ffn_hidden_size = (hidden * 7 / 2 + 255) / 256 * 256;
    m.num_kv_heads = std::min<uint64_t>(8, m.num_heads);
    while (m.num_heads % m.num_kv_heads) --m.num_kv_heads;
    m.vocab_size = 128256;
    m.max_seq_len = 8192;
    m.norm = NormKind::RMSNorm;
    m.mlp = MlpKind::SwiGlu;
    m.position = PositionKind::Rotary;
    m.tied_embeddings = false;
  } else {
    throw InputError("--family: expected gpt or llama, got \"" + family + "\"");
  }
  m.name = family + "-h" + std::to_string(hidden);
  m.source = "zeroplan family scaling (planner/model_family.h)";
  return m;
}

}  // namespace zp
