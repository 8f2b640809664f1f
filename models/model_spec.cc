#include "models/model_spec.h"

#include "models/input_error.h"

namespace zp {

void validate_model(const ModelSpec& m, const std::string& origin) {
  auto fail = [&](const std::string& what) { throw InputError(origin + ": " + what); };
  if (m.num_layers == 0) fail("num_layers must be positive");
  if (m.hidden_size == 0) fail("hidden_size must be positive");
  if (m.ffn_hidden_size == 0) fail("ffn_hidden_size must be positive");
  if (m.num_heads == 0) fail("num_heads must be positive");
  if (m.num_kv_heads == 0) fail("num_kv_heads must be positive");
  if (m.vocab_size == 0) fail("vocab_size must be positive");
  if (m.max_seq_len == 0) fail("max_seq_len must be positive");
  if (m.head_dim == 0) fail("head_dim must be positive");
  if (m.num_heads > m.hidden_size) fail("num_heads (" + std::to_string(m.num_heads) +
                                        ") exceeds hidden_size (" + std::to_string(m.hidden_size) + ")");
  if (m.num_heads % m.num_kv_heads != 0) {
    fail("num_kv_heads (" + std::to_string(m.num_kv_heads) + ") must divide num_heads (" +
         std::to_string(m.num_heads) + ")");
  }
  if (m.is_moe() && (m.moe_top_k == 0 || m.moe_top_k > m.num_experts)) {
    fail("moe top_k must be between 1 and num_experts (" + std::to_string(m.num_experts) + ")");
  }
  // The deepest transformer published has 1,000 layers (DeepNet, Wang et al.
  // 2022); the planner's split search grows with the square of the layers a
  // stage holds (planner/layer_split.cc), so ten times that is the limit.
  if (m.num_layers > kMaxLayers) {
    fail("the layer count (num_layers, num_hidden_layers or n_layer) is " + std::to_string(m.num_layers) +
         "; expected at most " + std::to_string(kMaxLayers));
  }
  // Sizes beyond 2^32 are not transformers anyone trains; they would only
  // make later products overflow.
  const uint64_t limit = uint64_t{1} << 32;
  for (uint64_t v : {m.num_layers, m.hidden_size, m.ffn_hidden_size, m.num_heads, m.vocab_size,
                     m.max_seq_len, m.head_dim}) {
    if (v >= limit) fail("a size is over 2^32 (" + std::to_string(v) + "); the byte counts would overflow");
  }
}

const char* to_string(NormKind k) { return k == NormKind::LayerNorm ? "layernorm" : "rmsnorm"; }
const char* to_string(MlpKind k) { return k == MlpKind::Gelu ? "gelu" : "swiglu"; }
const char* to_string(PositionKind k) {
  switch (k) {
    case PositionKind::Learned: return "learned";
    case PositionKind::Rotary: return "rotary";
    case PositionKind::Alibi: return "alibi";
  }
  return "?";
}

}  // namespace zp
