#include "costmodel/compute.h"

#include <algorithm>

namespace zp {

double peak_flops(const GpuSpec& gpu, Precision p) {
  if (p == Precision::Fp32) return gpu.fp32_flops;
  if (p == Precision::Fp16 || gpu.bf16_dense_flops <= 0) return gpu.fp16_dense_flops;
  return gpu.bf16_dense_flops;
}

const char* to_string(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::Materialized: return "materialized (cuBLAS products, fused softmax)";
    case AttentionKernel::Flash: return "flash (FlashAttention-2)";
    case AttentionKernel::FlashTensorCores: return "flash (zeroplan's tensor-core tiles)";
    case AttentionKernel::FlashWarp: return "flash (zeroplan's warp-per-row kernels, CUDA cores)";
  }
  return "?";
}

AttentionKernel attention_kernel(const ModelShape& m, const Layout& l) {
  if (l.attention != Attention::Flash) return AttentionKernel::Materialized;
  if (l.framework != Framework::Zeroplan) return AttentionKernel::Flash;
  return zeroplan_flash_on_tensor_cores(m.head_dim, l.precision) ? AttentionKernel::FlashTensorCores
                                                                 : AttentionKernel::FlashWarp;
}

double attention_peak_flops(AttentionKernel k, Precision p, const GpuSpec& gpu) {
  return k == AttentionKernel::FlashWarp ? gpu.fp32_flops : peak_flops(gpu, p);
}

double attention_efficiency(AttentionKernel k, double head_dim, const EfficiencyCurves& e) {
  switch (k) {
    case AttentionKernel::Materialized:
    case AttentionKernel::Flash: return e.attention_peak_fraction;
    case AttentionKernel::FlashTensorCores: return e.flash_tc_fraction;
    case AttentionKernel::FlashWarp: return e.flash_warp_efficiency(head_dim);
  }
  return 0;
}

double gemm_seconds(double m, double n, double k, double peak, double hbm_bytes_per_s, double element_bytes,
                    const EfficiencyCurves& e) {
  const double f = 2 * m * n * k;
  const double bytes = (m * k + k * n + m * n) * element_bytes;
  return std::max(f / (peak * e.gemm_efficiency(m, n, k)), bytes / hbm_bytes_per_s) + e.kernel_overhead_s;
}

namespace {

// The GEMMs of one layer, each through gemm_seconds.
struct Gemms {
  const EfficiencyCurves& e;
  double peak;
  double hbm_bytes_per_s;
  double element_bytes;
  double flops = 0, seconds = 0;
  void add(double m, double n, double k, double count = 1) {
    if (m <= 0 || n <= 0 || k <= 0) return;
    flops += 2 * m * n * k * count;
    seconds += count * gemm_seconds(m, n, k, peak, hbm_bytes_per_s, element_bytes, e);
  }
};

}  // namespace

LayerCompute layer_compute(const ModelShape& m, const Layout& l, const GpuSpec& gpu, const EfficiencyCurves& e) {
  const ActivationShape x = activation_shape(m, l);
  const double peak = peak_flops(gpu, l.precision);
  const double T = static_cast<double>(x.s * x.b), h = static_cast<double>(x.h);
  const double routed = m.experts > 0 ? static_cast<double>(m.top_k) : 1.0;
  // MoE: each rank runs its experts on the tokens routed to it; balanced
  // routing gives every rank T * top_k tokens' worth of expert work.
  Gemms g{e, peak, gpu.hbm_bytes_per_s * e.hbm_fraction, static_cast<double>(dtype_bytes(x.dtype))};
  g.add(T, static_cast<double>((x.a + 2 * x.kv) * x.d / x.t), h);
  g.add(T, h, static_cast<double>(x.ad_t));
  const double f_t = static_cast<double>(x.f_t);
  if (x.swiglu) {
    g.add(T * routed, 2 * f_t, h);
  } else {
    g.add(T * routed, f_t, h);
  }
  g.add(T * routed, h, f_t);
  LayerCompute c;
  c.gemm_flops = g.flops;
  c.gemm_s = g.seconds;
  // Score and value products: b * a/t batched (s x d) x (d x s) and (s x s) x (s x d).
  const double s = static_cast<double>(x.s);
  c.attention_flops = 2 * 2 * static_cast<double>(x.b * x.a_t) * s * s * static_cast<double>(x.d);
  // The counted FLOPs (every position, though the kernels skip the masked
  // half) at the rate of the kernel that runs them.
  c.attention_kernel = attention_kernel(m, l);
  c.attention_s = c.attention_flops / attention_flops_per_s(c.attention_kernel, static_cast<double>(x.d), l.precision, gpu, e) +
                  kAttentionLaunchesForward * e.kernel_overhead_s;

  const double eb = static_cast<double>(dtype_bytes(x.dtype));
  const double To = static_cast<double>(x.tokens_outside());
  double bytes = 2 * 2 * To * h * eb;                         // two norms: read + write
  bytes += 2 * (3 * To * h * eb + (x.dropout ? To * h : 0));  // two residual adds (+ dropout masks)
  bytes += (x.swiglu ? 3 : 2) * T * routed * f_t * eb;         // activation function
  if (m.position == PositionKind::Rotary) bytes += 2 * T * static_cast<double>((x.a_t + x.kv_t) * x.d) * eb;
  double softmax_bytes = 0;
  if (!x.flash) {
    const double S = static_cast<double>(x.b * x.a_t) * s * s;
    softmax_bytes += 2 * S * eb;                          // fused scale-mask-softmax
    if (x.dropout) softmax_bytes += 2 * S * eb + S;       // attention dropout and its mask
  }
  if (m.experts > 0) bytes += 4 * T * routed * h * eb;   // token permutation there and back
  const double hbm = gpu.hbm_bytes_per_s * e.hbm_fraction;
  c.softmax_s = softmax_bytes / hbm;
  c.elementwise_s = (bytes + softmax_bytes) / hbm + 8 * e.kernel_overhead_s;
  return c;
}

HeadCompute head_compute(const ModelShape& m, const Layout& l, const GpuSpec& gpu, const EfficiencyCurves& e) {
  const double peak = peak_flops(gpu, l.precision);
  const double T = static_cast<double>(uint64_t{l.seq_len} * l.micro_batch);
  const double v_t = static_cast<double>((m.vocab + l.tp - 1) / l.tp);
  Gemms g{e, peak, gpu.hbm_bytes_per_s * e.hbm_fraction, l.precision == Precision::Fp32 ? 4.0 : 2.0};
  g.add(T, v_t, static_cast<double>(m.hidden));
  HeadCompute h;
  h.flops = g.flops;
  h.forward_s = g.seconds;
  // Softmax cross-entropy over the logits: read them, write the gradient (fp32).
  const double ce_bytes = 3 * T * v_t * 4;
  h.backward_s = 2 * g.seconds + ce_bytes / (gpu.hbm_bytes_per_s * e.hbm_fraction);
  return h;
}

double model_forward_flops(const ModelShape& m, uint64_t seq, uint64_t batch) {
  const double T = static_cast<double>(seq * batch), h = static_cast<double>(m.hidden);
  const double qkv = static_cast<double>((m.heads + 2 * m.kv_heads) * m.head_dim);
  const double ad = static_cast<double>(m.heads * m.head_dim);
  const double routed = m.experts > 0 ? static_cast<double>(m.top_k) : 1.0;
  const double mlp = (m.mlp == MlpKind::SwiGlu ? 3 : 2) * h * static_cast<double>(m.ffn) * routed;
  const double per_layer = 2 * T * (h * qkv + ad * h + mlp) +
                           2 * 2 * static_cast<double>(batch) * static_cast<double>(seq * seq) * ad;
  return per_layer * static_cast<double>(m.layers) + 2 * T * h * static_cast<double>(m.vocab);
}

double narayanan_eq3_flops(const ModelShape& m, uint64_t seq, uint64_t batch) {
  const double s = static_cast<double>(seq), h = static_cast<double>(m.hidden), L = static_cast<double>(m.layers);
  const double V = static_cast<double>(m.vocab), B = static_cast<double>(batch);
  return 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h));
}

double korthikanti_eq7_flops(const ModelShape& m, uint64_t seq, uint64_t batch) {
  const double s = static_cast<double>(seq), h = static_cast<double>(m.hidden), L = static_cast<double>(m.layers);
  const double V = static_cast<double>(m.vocab), B = static_cast<double>(batch);
  return 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * h * L));
}

}  // namespace zp
