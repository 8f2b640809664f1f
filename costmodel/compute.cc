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

double attention_backward_ratio(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::Materialized: return 2.0;
    case AttentionKernel::Flash: return 2.5;
    case AttentionKernel::FlashTensorCores:
    case AttentionKernel::FlashWarp: return 3.5;
  }
  return 2.0;
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

// The bytes each memory-bound kernel of a layer reads and writes, counted
// from zeroplan's kernels (kernels/ops_cuda.cu, elementwise_cuda.cu,
// matmul_cublaslt.cu, attention_gemm_cuda.cu), the same counts
// bench/gpu_elementwise_bench times them by. The norms' backward passes add
// into the gradient they write (llm.c's convention), so each reads it too;
// the activations' write theirs. Megatron-LM's fused kernels (Apex's layer
// norm, the bias-GeLU and bias-dropout-add fusions) move within a row of
// these; the large differences, the materialised scores' dtype and
// zeroplan's residual pass-through and zeroing, follow the framework.
struct ElementwiseBytes {
  double forward = 0, backward = 0, softmax_forward = 0, softmax_backward = 0;
  double zeroed_backward = 0;  // zeroplan's executor: the layer's gradient buffers zeroed (a write each)
  int backward_launches = 2 * kElementwiseLaunchesForward;
};

ElementwiseBytes elementwise_bytes(const ModelShape& m, const Layout& l, const ActivationShape& x) {
  const double eb = static_cast<double>(dtype_bytes(x.dtype));
  const double T = static_cast<double>(x.s * x.b), h = static_cast<double>(x.h);
  const double To = static_cast<double>(x.tokens_outside());
  const double routed = m.experts > 0 ? static_cast<double>(m.top_k) : 1.0;
  const double f_t = static_cast<double>(x.f_t);
  const double rows = To * h * eb, mask = x.dropout ? To * h : 0;
  ElementwiseBytes b;
  // Two norms. Forward: read the input, write the output. Backward: read
  // the output gradient, the input and the input gradient (added into),
  // write it; the weight (and bias) gradients' column sums read the output
  // gradient and the input again: 6 rows.
  b.forward += 2 * 2 * rows;
  b.backward += 2 * 6 * rows;
  // Two residual adds (with dropout, their masks). Backward adds the
  // gradient into both branches' gradients: read 3, write 2. zeroplan's
  // executor hands the one gradient to both branches (the norms add into it
  // in place: executor/gpt_model.cc, llama_model.cc), no kernel.
  const bool ours = l.framework == Framework::Zeroplan;
  b.forward += 2 * (3 * rows + mask);
  b.backward += 2 * ((ours ? 0 : 5 * rows) + mask);
  // The activation: GeLU reads 1 and writes 1, SwiGLU reads 2 and writes 1;
  // backward reads the inputs and the output gradient and writes the input
  // gradients (each has one producer, so it is written, not added to):
  // GeLU 3, SwiGLU 5.
  const double wide = T * routed * f_t * eb;
  b.forward += (x.swiglu ? 3 : 2) * wide;
  b.backward += (x.swiglu ? 5 : 3) * wide;
  // Rotary positions on q and k, in place both ways.
  if (m.position == PositionKind::Rotary) {
    const double qk = 2 * T * static_cast<double>((x.a_t + x.kv_t) * x.d) * eb;
    b.forward += qk;
    b.backward += qk;
  }
  // Bias gradients: a column sum over each biased product's output gradient.
  double biased = 0;
  if (m.qkv_bias) biased += static_cast<double>((x.a_t + 2 * x.kv_t) * x.d);
  if (m.attn_out_bias) biased += h;
  if (m.mlp_bias) biased += routed * ((x.swiglu ? 2 : 1) * f_t + h);
  b.backward += T * biased * eb;
  // Token permutation to the experts and back, both ways.
  if (m.experts > 0) {
    b.forward += 4 * T * routed * h * eb;
    b.backward += 4 * T * routed * h * eb;
  }
  if (ours) {
    // zeroplan's executor zeroes a layer's activation-gradient buffers that
    // its backward kernels add into (executor/gpt_model.cc and
    // llama_model.cc stage_backward; the frameworks' autograd has each
    // gradient written by the kernel that makes it). The products' input
    // gradients are written by their first product (overwrite) and the
    // activations' by their kernels, so what is zeroed is q, k and v's
    // gradients, which the materialised attention's backward adds into
    // (GPT-2's one packed buffer, Llama's three); the flash kernels sum
    // each row in full and write it. The executor's model follows the MLP:
    // SwiGLU is its Llama model (cli/executor_run.cc).
    const int memsets = x.flash ? 0 : (x.swiglu ? 3 : 1);
    if (!x.flash) b.zeroed_backward = eb * T * static_cast<double>((x.a_t + 2 * x.kv_t) * x.d);
    b.backward_launches += memsets - 2;  // the memsets, not the two residual kernels
  }
  if (!x.flash) {
    // The causal softmax reads the scores the products wrote (fp32 in
    // zeroplan's executor, the activation dtype in the frameworks' fused
    // scale-mask-softmax) and writes the probabilities; backward reads the
    // probabilities' gradient (the scores' dtype) and the probabilities and
    // writes the scores' gradient. Dropout reads and writes each score and
    // its mask, both ways.
    const double S = static_cast<double>(x.b * x.a_t) * static_cast<double>(x.s) * static_cast<double>(x.s);
    const double score_bytes = l.framework == Framework::Zeroplan ? 4.0 : eb;
    b.softmax_forward = (score_bytes + eb) * S;
    b.softmax_backward = (score_bytes + 2 * eb) * S;
    if (x.dropout) {
      b.softmax_forward += 2 * S * eb + S;
      b.softmax_backward += 2 * S * eb + S;
    }
  }
  return b;
}

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
  const double core_s =
      c.attention_flops / attention_flops_per_s(c.attention_kernel, static_cast<double>(x.d), l.precision, gpu, e);
  c.attention_s = core_s + kAttentionLaunchesForward * e.kernel_overhead_s;
  c.attention_backward_s =
      attention_backward_ratio(c.attention_kernel) * core_s + 2 * kAttentionLaunchesForward * e.kernel_overhead_s;

  const double hbm = gpu.hbm_bytes_per_s * e.hbm_fraction;
  const ElementwiseBytes bytes = elementwise_bytes(m, l, x);
  c.elementwise_forward_bytes = bytes.forward + bytes.softmax_forward;
  c.elementwise_backward_bytes = bytes.backward + bytes.softmax_backward + bytes.zeroed_backward;
  c.zeroed_backward_bytes = bytes.zeroed_backward;
  c.softmax_s = bytes.softmax_forward / hbm;
  c.elementwise_s = c.elementwise_forward_bytes / hbm + kElementwiseLaunchesForward * e.kernel_overhead_s;
  c.elementwise_backward_s = c.elementwise_backward_bytes / hbm +
                             bytes.backward_launches * e.kernel_overhead_s;
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
  // zeroplan's executor zeroes the residual stream's gradient, which the
  // final norm's backward adds into (executor/gpt_model.cc, llama_model.cc
  // stage_backward): this rank's rows, 1/t of them under sequence parallelism.
  if (l.framework == Framework::Zeroplan) {
    const ActivationShape x = activation_shape(m, l);
    h.zeroed_backward_bytes =
        static_cast<double>(x.tokens_outside()) * static_cast<double>(m.hidden) * static_cast<double>(dtype_bytes(x.dtype));
    h.backward_s += h.zeroed_backward_bytes / (gpu.hbm_bytes_per_s * e.hbm_fraction) + e.kernel_overhead_s;
  }
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
