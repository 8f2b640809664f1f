// Exact parameter counts against the published numbers (issue 2's list, each
// catalog file's published_params with its source).
#include <doctest/doctest.h>

#include "models/input_error.h"
#include "models/param_count.h"
#include "test_support.h"

using namespace zp;

TEST_CASE("every catalog model with a published count matches it exactly") {
  int checked = 0;
  for (const ModelSpec& m : test::catalog().models()) {
    if (m.published_params == 0) continue;
    CAPTURE(m.name);
    CHECK(count_params(m).total == m.published_params);
    ++checked;
  }
  CHECK(checked >= 14);
}

TEST_CASE("the counts issue 2 lists") {
  auto total = [](const char* name) { return count_params(test::catalog().resolve_model(name)).total; };
  CHECK(total("gpt2-124m") == 124439808ull);
  CHECK(total("gpt2-355m") == 354823168ull);
  CHECK(total("gpt2-774m") == 774030080ull);
  CHECK(total("gpt2-1.5b") == 1557611200ull);
  CHECK(total("llama-2-7b") == 6738415616ull);
  CHECK(total("llama-2-13b") == 13015864320ull);
  CHECK(total("llama-2-70b") == 68976648192ull);
  CHECK(total("llama-3.1-8b") == 8030261248ull);
  CHECK(total("llama-3.1-70b") == 70553706496ull);
  CHECK(total("llama-3.1-405b") == 405853388800ull);
  CHECK(total("mixtral-8x7b") == 46702792704ull);
  CHECK(total("bloom-176b") == 176247271424ull);
}

TEST_CASE("components add up and MoE active parameters count top-k experts") {
  ParamCounts p = count_params(test::catalog().resolve_model("mixtral-8x7b"));
  CHECK(p.layer == p.attention + p.mlp + p.router + p.layer_norms);
  CHECK(p.total == p.embedding + p.head + p.final_norm + p.num_layers * p.layer);
  CHECK(p.mlp == 4 * p.mlp_active);  // 8 experts, top-2
  CHECK(p.active == 12879925248ull);  // Mixtral paper (arXiv 2401.04088): 13B active
  ParamCounts g = count_params(test::catalog().resolve_model("gpt2-124m"));
  CHECK(g.head == 0);  // tied
  CHECK(g.position == 1024 * 768);
  CHECK(g.largest_module == 50257ull * 768);
}

TEST_CASE("a count that overflows 64 bits is an InputError, not a wrapped number") {
  ModelSpec m = test::catalog().resolve_model("gpt2-124m");
  m.hidden_size = 4000000000ull;
  m.ffn_hidden_size = 4000000000ull;
  m.vocab_size = 4000000000ull;
  CHECK_THROWS_AS(count_params(m), InputError);
}
