#include "models/hf_config.h"

#include <filesystem>

#include "models/input_error.h"

namespace zp {
namespace {

std::string default_name(const std::string& origin) {
  // ".../Llama-3.1-8B/config.json" -> "Llama-3.1-8B"
  std::filesystem::path p(origin);
  if (p.filename() == "config.json" && p.has_parent_path()) {
    auto parent = p.parent_path().filename().string();
    if (!parent.empty() && parent != ".") return parent;
  }
  return p.stem().string();
}

void head_dim_from(const JsonFields& f, ModelSpec& m, const char* hidden_field, const char* heads_field) {
  if (f.has("head_dim")) {
    m.head_dim = f.positive("head_dim");
    return;
  }
  if (m.hidden_size % m.num_heads != 0) {
    throw InputError(f.where(heads_field) + ": " + std::to_string(m.num_heads) +
                     " heads do not divide " + hidden_field + " " + std::to_string(m.hidden_size));
  }
  m.head_dim = m.hidden_size / m.num_heads;
}

// llama, mistral, mixtral and qwen2 share LlamaConfig's field names.
void load_llama_like(const JsonFields& f, const std::string& type, ModelSpec& m) {
  m.family = type;
  m.num_layers = f.positive("num_hidden_layers");
  m.hidden_size = f.positive("hidden_size");
  m.ffn_hidden_size = f.positive("intermediate_size");
  m.num_heads = f.positive("num_attention_heads");
  m.num_kv_heads = f.positive_or("num_key_value_heads", m.num_heads);
  m.vocab_size = f.positive("vocab_size");
  m.max_seq_len = f.positive_or("max_position_embeddings", 4096);
  head_dim_from(f, m, "hidden_size", "num_attention_heads");
  m.norm = NormKind::RMSNorm;
  m.mlp = MlpKind::SwiGlu;
  m.position = PositionKind::Rotary;
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", false);
  if (type == "qwen2") {
    m.qkv_bias = true;  // Qwen2Attention: q/k/v with bias, o_proj without
  } else if (type == "llama") {
    m.qkv_bias = m.attn_out_bias = f.boolean_or("attention_bias", false);
    m.mlp_bias = f.boolean_or("mlp_bias", false);
  }
  if (type == "mixtral") {
    m.num_experts = f.positive("num_local_experts");
    m.moe_top_k = f.positive("num_experts_per_tok");
  }
  m.dropout = f.number_or("attention_dropout", 0.0) > 0;
}

void load_gpt2(const JsonFields& f, ModelSpec& m) {
  m.family = "gpt";
  m.num_layers = f.positive("n_layer");
  m.hidden_size = f.positive("n_embd");
  m.ffn_hidden_size = f.positive_or("n_inner", 4 * m.hidden_size);
  m.num_heads = f.positive("n_head");
  m.num_kv_heads = m.num_heads;
  head_dim_from(f, m, "n_embd", "n_head");
  m.vocab_size = f.positive("vocab_size");
  m.max_seq_len = f.positive_or("n_positions", 1024);
  m.norm = NormKind::LayerNorm;
  m.mlp = MlpKind::Gelu;
  m.position = PositionKind::Learned;
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", true);
  m.qkv_bias = m.attn_out_bias = m.mlp_bias = true;
  m.dropout = f.number_or("resid_pdrop", 0.1) > 0 || f.number_or("attn_pdrop", 0.1) > 0;
}

void load_gpt_neox(const JsonFields& f, ModelSpec& m) {
  m.family = "gpt_neox";
  m.num_layers = f.positive("num_hidden_layers");
  m.hidden_size = f.positive("hidden_size");
  m.ffn_hidden_size = f.positive_or("intermediate_size", 4 * m.hidden_size);
  m.num_heads = f.positive("num_attention_heads");
  m.num_kv_heads = m.num_heads;
  head_dim_from(f, m, "hidden_size", "num_attention_heads");
  m.vocab_size = f.positive("vocab_size");
  m.max_seq_len = f.positive_or("max_position_embeddings", 2048);
  m.norm = NormKind::LayerNorm;
  m.mlp = MlpKind::Gelu;
  m.position = PositionKind::Rotary;
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", false);
  const bool bias = f.boolean_or("attention_bias", true);
  m.qkv_bias = m.attn_out_bias = bias;
  m.mlp_bias = true;
  m.dropout = f.number_or("hidden_dropout", 0.0) > 0 || f.number_or("attention_dropout", 0.0) > 0;
}

void load_bloom(const JsonFields& f, ModelSpec& m) {
  m.family = "bloom";
  m.num_layers = f.has("n_layer") ? f.positive("n_layer") : f.positive("num_hidden_layers");
  m.hidden_size = f.has("hidden_size") ? f.positive("hidden_size") : f.positive("n_embed");
  m.ffn_hidden_size = 4 * m.hidden_size;
  m.num_heads = f.has("n_head") ? f.positive("n_head") : f.positive("num_attention_heads");
  m.num_kv_heads = m.num_heads;
  head_dim_from(f, m, "hidden_size", "n_head");
  m.vocab_size = f.positive("vocab_size");
  m.max_seq_len = f.positive_or("seq_length", 2048);  // ALiBi: no table; training length
  m.norm = NormKind::LayerNorm;
  m.mlp = MlpKind::Gelu;
  m.position = PositionKind::Alibi;
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", true);
  m.qkv_bias = m.attn_out_bias = m.mlp_bias = true;
  m.embedding_norm = true;
  m.dropout = f.number_or("hidden_dropout", 0.0) > 0 || f.number_or("attention_dropout", 0.0) > 0;
}

}  // namespace

bool is_hf_config(const Json& j) { return j.is_object() && j.contains("model_type"); }

ModelSpec model_from_hf_config(const Json& config, const std::string& origin) {
  JsonFields f(config, origin);
  const std::string type = f.string("model_type");
  ModelSpec m;
  m.name = default_name(origin);
  m.source = "Hugging Face config " + origin;
  if (type == "llama" || type == "mistral" || type == "mixtral" || type == "qwen2") {
    load_llama_like(f, type, m);
  } else if (type == "gpt2") {
    load_gpt2(f, m);
  } else if (type == "gpt_neox") {
    load_gpt_neox(f, m);
  } else if (type == "bloom") {
    load_bloom(f, m);
  } else {
    throw InputError(f.where("model_type") + ": unsupported model type \"" + type +
                     "\"; expected one of llama, mistral, mixtral, qwen2, gpt2, gpt_neox, bloom");
  }
  validate_model(m, origin);
  return m;
}

}  // namespace zp
