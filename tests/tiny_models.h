// Toy model shapes for the executor tests: a GPT-2 style and a Llama-style
// decoder small enough for finite differences and multi-rank runs.
#pragma once

#include "models/model_spec.h"

namespace zp::test {

inline ModelSpec tiny_gpt(int vocab, int seq, int layers, int heads, int channels) {
  ModelSpec m;
  m.name = "tiny-gpt";
  m.num_layers = layers;
  m.hidden_size = channels;
  m.ffn_hidden_size = 4 * channels;
  m.num_heads = m.num_kv_heads = heads;
  m.head_dim = channels / heads;
  m.vocab_size = vocab;
  m.max_seq_len = seq;
  m.qkv_bias = m.attn_out_bias = m.mlp_bias = true;
  return m;
}

// 2 layers, hidden 16, 4 query heads sharing 2 KV heads, FFN 24, sequence 8.
inline ModelSpec tiny_llama(int vocab) {
  ModelSpec m;
  m.name = "tiny-llama";
  m.num_layers = 2;
  m.hidden_size = 16;
  m.ffn_hidden_size = 24;
  m.num_heads = 4;
  m.num_kv_heads = 2;
  m.head_dim = 4;
  m.vocab_size = vocab;
  m.max_seq_len = 8;
  m.norm = NormKind::RMSNorm;
  m.mlp = MlpKind::SwiGlu;
  m.position = PositionKind::Rotary;
  m.tied_embeddings = false;
  return m;
}

}  // namespace zp::test
