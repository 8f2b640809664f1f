// Activation memory: the tensors each transformer layer saves for backward,
// one row per tensor, derived from what the layer computes (so grouped-query
// attention, SwiGLU, MoE, flash attention and dropout change exactly the rows
// they change). For a GPT layer with 4h MLP, full multi-head attention,
// dropout and materialised attention in 2-byte activations, the rows add up to
// Korthikanti et al. 2022 (arXiv 2205.05198) Table 2:
//   sbh(34 + 5as/h) without parallelism, sbh(10 + 24/t + 5as/(ht)) with tensor
//   parallelism, sbh/t (34 + 5as/h) with sequence parallelism, the s^2 terms
//   dropped by selective recompute, and 2sbh per layer with full recompute.
// Breakdown (Sec. 4.1): attention 11sbh + 5as^2 b (QKV input 2, Q and K 4,
// softmax 2as^2b, its dropout mask as^2b and output 2as^2b, V 2, projection
// input 2, dropout mask 1), MLP 19sbh (input 2, GeLU input 8, fc2 input 8,
// dropout mask 1), two LayerNorm inputs 4sbh. The zeroplan accounting adds
// the norms' fp32 statistics (LayerNorm's mean and rstd, RMSNorm's rstd, per
// token: what apex's fused norms and the executor save), which the papers'
// formulas leave out as small; the framework accountings do not.
#pragma once

#include <cstdint>

#include "costmodel/layout.h"
#include "costmodel/memory_rows.h"
#include "costmodel/model_shape.h"

namespace zp {

struct ActivationShape {
  uint64_t s = 0, b = 0, h = 0, a = 0, kv = 0, d = 0, f = 0, t = 1;
  uint64_t experts = 0, top_k = 0;
  bool sp = false, flash = true, dropout = false, swiglu = false;
  Dtype dtype = Dtype::Bf16;  // activation dtype
  // fp32 statistics saved per token by each norm (2 LayerNorm, 1 RMSNorm)
  // under zeroplan accounting; 0 under the frameworks' formulas.
  uint64_t norm_stats = 0;
  // Quotients by t, computed once by activation_shape() (64-bit division is
  // the most expensive instruction on the planner's hot path).
  uint64_t a_t = 0, kv_t = 0, f_t = 0, ad_t = 0;
  uint64_t tokens_out = 0;  // token rows outside the TP region: s*b, or s*b/t with SP
  uint64_t tokens_outside() const { return tokens_out; }
};

ActivationShape activation_shape(const ModelShape& m, const Layout& l);
// Fills the cached quotients (a_t, kv_t, f_t, ad_t, tokens_out) from the sizes.
void finish_activation_shape(ActivationShape& x);

// Rows for `copies` saved layers with recompute mode `mode` (None or Selective).
template <class Sink>
void emit_layer_activations(const ActivationShape& x, Recompute mode, uint64_t copies, Sink& sink) {
  if (copies == 0) return;
  const Component A = Component::Activations;
  const Residence G = Residence::Gpu;
  const uint64_t T = x.s * x.b;
  const uint64_t To = x.tokens_outside();
  const Dtype dt = x.dtype;
  auto row = [&](Dtype d, const char* name, uint64_t d0, uint64_t d1, uint64_t d2 = 1, uint64_t d3 = 1) {
    sink.add(tensor_row(A, G, d, name, d0, d1, d2, d3, copies));
  };
  // Attention block.
  row(dt, "attn_norm_input [To,h]", To, x.h);
  if (x.norm_stats) row(Dtype::Fp32, "attn_norm_stats [To,n]", To, x.norm_stats);
  row(dt, "qkv_input [To,h]", To, x.h);
  row(dt, "q [T,a/t,d]", T, x.a_t, x.d);
  row(dt, "k [T,kv/t,d]", T, x.kv_t, x.d);
  row(dt, "v [T,kv/t,d]", T, x.kv_t, x.d);
  if (x.flash) {
    row(Dtype::Fp32, "attn_logsumexp [b,a/t,s]", x.b, x.a_t, x.s);
  } else if (mode != Recompute::Selective) {
    row(dt, "softmax_out [b,a/t,s,s]", x.b, x.a_t, x.s, x.s);
    if (x.dropout) {
      row(Dtype::Uint8, "attn_dropout_mask [b,a/t,s,s]", x.b, x.a_t, x.s, x.s);
      row(dt, "attn_dropout_out [b,a/t,s,s]", x.b, x.a_t, x.s, x.s);
    }
  }
  row(dt, "proj_input [T,a*d/t]", T, x.ad_t);
  if (x.dropout) row(Dtype::Uint8, "attn_residual_dropout_mask [To,h]", To, x.h);
  // MLP block (per routed token copy for MoE).
  row(dt, "mlp_norm_input [To,h]", To, x.h);
  if (x.norm_stats) row(Dtype::Fp32, "mlp_norm_stats [To,n]", To, x.norm_stats);
  const uint64_t routed = x.experts > 0 ? x.top_k : 1;
  row(dt, "fc1_input [T*k,h]", To * routed, x.h);
  if (x.swiglu) {
    row(dt, "gate_up_out [T*k,2f/t]", T * routed, 2 * x.f_t);
  } else {
    row(dt, "gelu_input [T*k,f/t]", T * routed, x.f_t);
  }
  row(dt, "fc2_input [T*k,f/t]", T * routed, x.f_t);
  if (x.experts > 0) row(Dtype::Fp32, "router_probs [T,E]", T, x.experts);
  if (x.dropout) row(Dtype::Uint8, "mlp_residual_dropout_mask [To,h]", To, x.h);
}

// Full recompute keeps only each layer's input (Korthikanti Table 2: 2sbh),
// split across the tp group with sequence parallelism or ZeRO-R's partitioned
// activation checkpoints, and in host memory with ZeRO-R's CPU checkpointing.
template <class Sink>
void emit_layer_checkpoints(const ActivationShape& x, bool partitioned, bool to_cpu, uint64_t copies, Sink& sink) {
  if (copies == 0) return;
  const uint64_t rows = (x.sp || partitioned) ? x.s * x.b / x.t : x.s * x.b;
  sink.add(tensor_row(Component::Activations, to_cpu ? Residence::Host : Residence::Gpu, x.dtype,
                      "layer_input_checkpoint [T,h]", rows, x.h, 1, 1, copies));
}

// Bytes of one layer's saved activations for one micro-batch.
uint64_t layer_activation_bytes(const ActivationShape& x, Recompute mode);

}  // namespace zp
