#include "models/model_json.h"

#include "models/input_error.h"

namespace zp {
namespace {

const std::vector<std::string> kFields = {
    "name", "family", "source", "num_layers", "hidden_size", "ffn_hidden_size", "num_heads",
    "num_kv_heads", "head_dim", "vocab_size", "max_seq_len", "norm", "mlp", "position",
    "tied_embeddings", "qkv_bias", "attn_out_bias", "mlp_bias", "embedding_norm", "dropout",
    "num_experts", "moe_top_k", "published_params", "published_params_source", "notes"};

}  // namespace

ModelSpec model_from_json(const Json& j, const std::string& origin) {
  JsonFields f(j, origin);
  f.reject_unknown(kFields);
  ModelSpec m;
  m.name = f.string("name");
  m.family = f.string_or("family", "custom");
  m.source = f.string_or("source", origin);
  m.num_layers = f.positive("num_layers");
  m.hidden_size = f.positive("hidden_size");
  m.ffn_hidden_size = f.positive("ffn_hidden_size");
  m.num_heads = f.positive("num_heads");
  m.num_kv_heads = f.positive_or("num_kv_heads", m.num_heads);
  if (f.has("head_dim")) {
    m.head_dim = f.positive("head_dim");
  } else {
    if (m.hidden_size % m.num_heads != 0) {
      throw InputError(f.where("num_heads") + ": " + std::to_string(m.num_heads) +
                       " heads do not divide hidden_size " + std::to_string(m.hidden_size) +
                       " (give head_dim if that is intended)");
    }
    m.head_dim = m.hidden_size / m.num_heads;
  }
  m.vocab_size = f.positive("vocab_size");
  m.max_seq_len = f.positive("max_seq_len");
  m.norm = f.choice("norm", {"layernorm", "rmsnorm"}, "layernorm") == "rmsnorm" ? NormKind::RMSNorm
                                                                              : NormKind::LayerNorm;
  m.mlp = f.choice("mlp", {"gelu", "swiglu"}, "gelu") == "swiglu" ? MlpKind::SwiGlu : MlpKind::Gelu;
  const std::string pos = f.choice("position", {"learned", "rotary", "alibi"}, "learned");
  m.position = pos == "rotary" ? PositionKind::Rotary
               : pos == "alibi" ? PositionKind::Alibi
                                : PositionKind::Learned;
  m.tied_embeddings = f.boolean_or("tied_embeddings", true);
  m.qkv_bias = f.boolean_or("qkv_bias", false);
  m.attn_out_bias = f.boolean_or("attn_out_bias", false);
  m.mlp_bias = f.boolean_or("mlp_bias", false);
  m.embedding_norm = f.boolean_or("embedding_norm", false);
  m.dropout = f.boolean_or("dropout", false);
  if (f.has("num_experts")) {
    m.num_experts = f.positive("num_experts");
    m.moe_top_k = f.positive("moe_top_k");
  }
  m.published_params = f.positive_or("published_params", 0);
  m.published_params_source = f.string_or("published_params_source", "");
  validate_model(m, origin);
  return m;
}

Json model_to_json(const ModelSpec& m) {
  Json j = {{"name", m.name},
            {"family", m.family},
            {"source", m.source},
            {"num_layers", m.num_layers},
            {"hidden_size", m.hidden_size},
            {"ffn_hidden_size", m.ffn_hidden_size},
            {"num_heads", m.num_heads},
            {"num_kv_heads", m.num_kv_heads},
            {"head_dim", m.head_dim},
            {"vocab_size", m.vocab_size},
            {"max_seq_len", m.max_seq_len},
            {"norm", to_string(m.norm)},
            {"mlp", to_string(m.mlp)},
            {"position", to_string(m.position)},
            {"tied_embeddings", m.tied_embeddings},
            {"qkv_bias", m.qkv_bias},
            {"attn_out_bias", m.attn_out_bias},
            {"mlp_bias", m.mlp_bias},
            {"embedding_norm", m.embedding_norm},
            {"dropout", m.dropout}};
  if (m.is_moe()) {
    j["num_experts"] = m.num_experts;
    j["moe_top_k"] = m.moe_top_k;
  }
  return j;
}

}  // namespace zp
