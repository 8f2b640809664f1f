// ModelSpec: the architecture of a decoder-only transformer, as every part of
// zeroplan sees it (parameter counts, the cost model, the executor). It is a
// plain value; loaders (model_json.h, hf_config.h) fill it and validate() checks
// the invariants the rest of the code relies on (heads divide hidden, KV heads
// divide heads, ...). Sizes are uint64 so products stay in integer arithmetic.
#pragma once

#include <cstdint>
#include <string>

namespace zp {

enum class NormKind { LayerNorm, RMSNorm };
enum class MlpKind { Gelu, SwiGlu };
enum class PositionKind { Learned, Rotary, Alibi };

struct ModelSpec {
  std::string name;    // catalog name, e.g. "llama-3.1-8b"
  std::string family;  // "gpt", "llama", "mixtral", "bloom", ...
  std::string source;  // where the shape comes from (paper, config.json)

  uint64_t num_layers = 0;
  uint64_t hidden_size = 0;      // h
  uint64_t ffn_hidden_size = 0;  // F (per expert for MoE)
  uint64_t num_heads = 0;        // a
  uint64_t num_kv_heads = 0;     // grouped-query attention; == a for MHA
  uint64_t head_dim = 0;         // d; usually h / a
  uint64_t vocab_size = 0;       // V
  uint64_t max_seq_len = 0;      // learned position table size; context length

  NormKind norm = NormKind::LayerNorm;
  MlpKind mlp = MlpKind::Gelu;
  PositionKind position = PositionKind::Learned;

  bool tied_embeddings = true;
  bool qkv_bias = false;        // bias on the fused q/k/v projection
  bool attn_out_bias = false;   // bias on the attention output projection
  bool mlp_bias = false;        // biases on the MLP projections
  bool embedding_norm = false;  // BLOOM: LayerNorm right after the embedding
  bool dropout = false;         // trained with dropout (masks are saved)

  uint64_t num_experts = 0;  // 0 = dense MLP
  uint64_t moe_top_k = 0;

  uint64_t published_params = 0;  // 0 = none; checked by the tests
  std::string published_params_source;

  bool is_moe() const { return num_experts > 0; }
  uint64_t q_width() const { return num_heads * head_dim; }
  uint64_t kv_width() const { return num_kv_heads * head_dim; }
};

// The most layers a model may have (validate_model): ten times the deepest
// published transformer's 1,000.
constexpr uint64_t kMaxLayers = 10000;

// Throws InputError naming `origin` when the spec is inconsistent.
void validate_model(const ModelSpec& m, const std::string& origin);

const char* to_string(NormKind k);
const char* to_string(MlpKind k);
const char* to_string(PositionKind k);

}  // namespace zp
