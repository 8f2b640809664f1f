// Activation rows against Korthikanti et al. 2022 (arXiv 2205.05198) Table 2,
// for a GPT layer (4h MLP, multi-head attention, dropout, materialised
// attention, 2-byte activations), and the GQA/SwiGLU/flash variants.
#include <doctest/doctest.h>

#include "costmodel/activations.h"

using namespace zp;

namespace {

ActivationShape gpt_layer(uint64_t s, uint64_t b, uint64_t h, uint64_t a, uint64_t t, bool sp) {
  ActivationShape x;
  x.s = s;
  x.b = b;
  x.h = h;
  x.a = a;
  x.kv = a;
  x.d = h / a;
  x.f = 4 * h;
  x.t = t;
  x.sp = sp;
  x.flash = false;
  x.dropout = true;
  x.swiglu = false;
  finish_activation_shape(x);
  return x;
}

}  // namespace

TEST_CASE("Korthikanti Table 2, every row, exactly") {
  // 22B model shapes of Table 3 (s 2048, b 4, h 6144, a 64, t 8).
  const uint64_t s = 2048, b = 4, h = 6144, a = 64, t = 8;
  const uint64_t sbh = s * b * h;
  // No parallelism: sbh(34 + 5as/h).
  CHECK(layer_activation_bytes(gpt_layer(s, b, h, a, 1, false), Recompute::None) == sbh * 34 + 5 * a * s * s * b);
  // Tensor parallel: sbh(10 + 24/t + 5as/(ht)).
  CHECK(layer_activation_bytes(gpt_layer(s, b, h, a, t, false), Recompute::None) ==
        sbh * 10 + sbh * 24 / t + 5 * a * s * s * b / t);
  // Tensor + sequence parallel: sbh/t (34 + 5as/h).
  CHECK(layer_activation_bytes(gpt_layer(s, b, h, a, t, true), Recompute::None) == sbh * 34 / t + 5 * a * s * s * b / t);
  // Tensor parallel + selective recompute: sbh(10 + 24/t).
  CHECK(layer_activation_bytes(gpt_layer(s, b, h, a, t, false), Recompute::Selective) == sbh * 10 + sbh * 24 / t);
  // Tensor + sequence parallel + selective recompute: 34 sbh/t.
  CHECK(layer_activation_bytes(gpt_layer(s, b, h, a, t, true), Recompute::Selective) == sbh * 34 / t);
  // Full recompute: 2sbh per layer.
  TotalsSink sink;
  emit_layer_checkpoints(gpt_layer(s, b, h, a, t, false), false, false, 1, sink);
  CHECK(sink.totals().total(Residence::Gpu) == 2 * sbh);
}

TEST_CASE("Megatron's 18 + 4F/h form is the same count for any F") {
  ActivationShape x = gpt_layer(1024, 2, 2048, 16, 4, true);
  x.f = 5504;
  finish_activation_shape(x);
  const uint64_t sbh = x.s * x.b * x.h;
  CHECK(layer_activation_bytes(x, Recompute::Selective) == sbh * 18 / 4 + 4 * x.s * x.b * x.f / 4);
}

TEST_CASE("GQA, SwiGLU, flash attention and no dropout change exactly their tensors") {
  ActivationShape x = gpt_layer(4096, 1, 4096, 32, 1, false);
  const uint64_t T = x.s * x.b;
  const uint64_t mha = layer_activation_bytes(x, Recompute::Selective);
  x.kv = 8;  // K and V shrink from 2 * T*h*2 bytes to 2 * T*kv*d*2
  finish_activation_shape(x);
  CHECK(mha - layer_activation_bytes(x, Recompute::Selective) == 2 * T * (32 - 8) * 128 * 2);
  ActivationShape g = gpt_layer(4096, 1, 4096, 32, 1, false);
  const uint64_t gelu = layer_activation_bytes(g, Recompute::Selective);
  g.swiglu = true;  // gate and up outputs (2F) instead of the GeLU input (F)
  CHECK(layer_activation_bytes(g, Recompute::Selective) - gelu == T * g.f * 2);
  ActivationShape fl = gpt_layer(4096, 1, 4096, 32, 1, false);
  const uint64_t materialised = layer_activation_bytes(fl, Recompute::None);
  fl.flash = true;  // no s^2 terms; a fp32 log-sum-exp per head and token instead
  CHECK(materialised - layer_activation_bytes(fl, Recompute::None) == 5 * 32 * T * x.s - 4 * 32 * T);
  ActivationShape nd = gpt_layer(4096, 1, 4096, 32, 1, false);
  const uint64_t with_dropout = layer_activation_bytes(nd, Recompute::Selective);
  nd.dropout = false;  // the two residual dropout masks (1 byte each)
  CHECK(with_dropout - layer_activation_bytes(nd, Recompute::Selective) == 2 * T * x.h);
}

TEST_CASE("MoE: routed MLP tensors scale with top-k, plus router probabilities") {
  ActivationShape x = gpt_layer(1024, 1, 1024, 8, 1, false);
  x.flash = true;
  x.dropout = false;
  x.swiglu = true;
  const uint64_t dense = layer_activation_bytes(x, Recompute::None);
  x.experts = 8;
  x.top_k = 2;
  const uint64_t T = x.s;
  const uint64_t mlp_rows = T * x.h * 2 + T * 2 * x.f * 2 + T * x.f * 2;  // fc1 input, gate/up, fc2 input
  CHECK(layer_activation_bytes(x, Recompute::None) - dense == mlp_rows + T * 8 * 4);
}
