// Hugging Face config.json loading for each supported model type, checked
// against the parameter counts transformers reports for those checkpoints.
#include <doctest/doctest.h>

#include "models/catalog.h"
#include "models/input_error.h"
#include "models/param_count.h"

using namespace zp;

namespace {
std::string hf(const char* folder) { return std::string(ZP_TEST_DATA) + "/hf/" + folder; }
}  // namespace

TEST_CASE("each supported model type loads and counts like transformers' num_parameters()") {
  struct Case {
    const char* folder;
    uint64_t params;
  } cases[] = {
      {"llama-2-7b", 6738415616ull},     // llama
      {"mistral-7b", 7241732096ull},     // mistral (Mistral-7B-v0.1)
      {"mixtral-8x7b", 46702792704ull},  // mixtral
      {"qwen2-0.5b", 494032768ull},      // qwen2 (Qwen2-0.5B: q/k/v biases, tied)
      {"gpt2", 124439808ull},            // gpt2
      {"pythia-160m", 162322944ull},     // gpt_neox (untied embed_out)
      {"bloom-560m", 559214592ull},      // bloom (embedding LayerNorm, ALiBi)
  };
  for (const auto& c : cases) {
    CAPTURE(c.folder);
    ModelSpec m = load_model_path(hf(c.folder));  // a folder: reads config.json
    CHECK(count_params(m).total == c.params);
    CHECK(m.name == c.folder);
  }
}

TEST_CASE("fields come from the right keys") {
  ModelSpec m = load_model_path(hf("mixtral-8x7b") + "/config.json");
  CHECK(m.num_experts == 8);
  CHECK(m.moe_top_k == 2);
  CHECK(m.num_kv_heads == 8);
  CHECK(m.mlp == MlpKind::SwiGlu);
  ModelSpec g = load_model_path(hf("gpt2"));
  CHECK(g.dropout);
  CHECK(g.tied_embeddings);
  CHECK(g.ffn_hidden_size == 3072);
  ModelSpec b = load_model_path(hf("bloom-560m"));
  CHECK(b.position == PositionKind::Alibi);
  CHECK(b.embedding_norm);
}

TEST_CASE("bad configs are InputErrors naming the file and field") {
  auto message = [](const char* file) -> std::string {
    try {
      ModelSpec m = load_model_path(std::string(ZP_TEST_DATA) + "/bad/" + file);
      count_params(m);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  CHECK(message("malformed.json").find("malformed.json:5:14: malformed JSON") != std::string::npos);
  CHECK(message("missing_hidden.json").find("'hidden_size': missing") != std::string::npos);
  CHECK(message("negative_layers.json").find("'num_hidden_layers': expected a positive integer, got -4") != std::string::npos);
  CHECK(message("zero_heads.json").find("'num_attention_heads': expected a positive integer, got 0") != std::string::npos);
  CHECK(message("heads_not_dividing_hidden.json").find("30 heads do not divide hidden_size 4096") != std::string::npos);
  CHECK(message("kv_not_dividing_heads.json").find("num_kv_heads (5) must divide num_heads (32)") != std::string::npos);
  CHECK(message("unsupported_type.json").find("unsupported model type \"t5\"") != std::string::npos);
  CHECK(message("overflow.json").find("overflows 64 bits") != std::string::npos);
  CHECK(message("string_size.json").find("'vocab_size': expected a positive integer, got \"32000\"") != std::string::npos);
}
