#include "costmodel/model_shape.h"

namespace zp {

ModelShape make_shape(const ModelSpec& m) {
  ModelShape s;
  s.layers = m.num_layers;
  s.hidden = m.hidden_size;
  s.ffn = m.ffn_hidden_size;
  s.heads = m.num_heads;
  s.kv_heads = m.num_kv_heads;
  s.head_dim = m.head_dim;
  s.vocab = m.vocab_size;
  s.max_seq = m.max_seq_len;
  s.experts = m.num_experts;
  s.top_k = m.moe_top_k;
  s.mlp = m.mlp;
  s.norm = m.norm;
  s.position = m.position;
  s.tied = m.tied_embeddings;
  s.qkv_bias = m.qkv_bias;
  s.attn_out_bias = m.attn_out_bias;
  s.mlp_bias = m.mlp_bias;
  s.embedding_norm = m.embedding_norm;
  s.dropout = m.dropout;
  s.params = count_params(m);
  return s;
}

}  // namespace zp
