#include "costmodel/activations.h"

namespace zp {

ActivationShape activation_shape(const ModelShape& m, const Layout& l) {
  ActivationShape x;
  x.s = l.seq_len;
  x.b = l.micro_batch;
  x.h = m.hidden;
  x.a = m.heads;
  x.kv = m.kv_heads;
  x.d = m.head_dim;
  x.f = m.ffn;
  x.t = l.tp;
  x.experts = m.experts;
  x.top_k = m.top_k;
  x.sp = l.sequence_parallel && l.tp > 1;
  x.flash = l.attention == Attention::Flash;
  x.dropout = l.dropout == Dropout::ModelDefault ? m.dropout : l.dropout == Dropout::On;
  x.swiglu = m.mlp == MlpKind::SwiGlu;
  if (l.framework == Framework::Zeroplan) x.norm_stats = m.norm == NormKind::RMSNorm ? 1 : 2;
  finish_activation_shape(x);
  x.dtype = l.precision == Precision::Fp32 ? Dtype::Fp32 : l.precision == Precision::Fp16 ? Dtype::Fp16 : Dtype::Bf16;
  return x;
}

void finish_activation_shape(ActivationShape& x) {
  x.a_t = x.a / x.t;
  x.kv_t = x.kv / x.t;
  x.f_t = x.f / x.t;
  x.ad_t = x.a * x.d / x.t;
  x.tokens_out = x.sp ? x.s * x.b / x.t : x.s * x.b;
}

uint64_t layer_activation_bytes(const ActivationShape& x, Recompute mode) {
  ByteCountSink sink;
  emit_layer_activations(x, mode, 1, sink);
  return sink.bytes();
}

}  // namespace zp
