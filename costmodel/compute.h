// Compute per transformer layer and micro-batch on one GPU: the matrix
// products (with their shapes after tensor/sequence parallel sharding), the
// attention score and value products, and the memory-bound elementwise work,
// turned into seconds by the GPU's peaks and its efficiency curves.
//
// FLOPs (2 per multiply-add), forward, per layer, T = s*b tokens:
//   QKV 2*T*h*(a+2kv)d, projection 2*T*(a d)*h, MLP 4*T*h*F (GeLU) or 6*T*h*F
//   (SwiGLU), times top_k for MoE; attention 2*b*s^2*(a d) for scores and as
//   much for values (Korthikanti et al. 2022 Sec. 6 counts both in full:
//   24 B s h^2 + 4 B s^2 h per layer for a GPT layer). Backward is twice the
//   forward (a data- and a weight-gradient product per GEMM); the attention
//   core's backward runs at its kernel's attention_backward_ratio; logits
//   2*T*h*V on the last stage (Narayanan et al. 2021 Sec. 5.1).
// Elementwise bytes (read + write) per layer, counted kernel by kernel from
// zeroplan's kernels (compute.cc elementwise_bytes, docs/time-model.md):
// forward two norms 4*To*h*e, two residual adds (with dropout: masks)
// 6*To*h*e (+2*To*h), the activation 2*T*F/t*e (GeLU) or 3*T*F/t*e
// (SwiGLU), rotary 2*T*(a+kv)d/t*e, and for materialised attention the
// softmax (c+e)*S (c: the scores' bytes, 4 in zeroplan, e in the
// frameworks) and its dropout 2*S*e + S, S = b*(a/t)*s^2 scores; backward
// 12*To*h*e for the norms, 10*To*h*e (+2*To*h) for the residuals, 4 (GeLU)
// or 7 (SwiGLU) *T*F/t*e, rotary as forward, the bias gradients' column
// sums T*e per biased output column, the softmax (c+2e)*S and its dropout
// as forward.
#pragma once

#include "costmodel/activations.h"
#include "costmodel/efficiency.h"
#include "costmodel/layout.h"
#include "costmodel/model_shape.h"
#include "models/hardware.h"

namespace zp {

// The kernels that run a layer's attention core, each at its own rate
// (issue 7: the cost model's accounting follows whichever runs):
//  - Materialized: batched score and value products through cuBLAS beside a
//    fused softmax (every framework's non-flash path): attention_peak_fraction
//    of the dense peak;
//  - Flash: the frameworks' flash kernels (FlashAttention-2 in Megatron-LM
//    and DeepSpeed): attention_peak_fraction too;
//  - FlashTensorCores: zeroplan's own tiled tensor-core flash kernels
//    (kernels/flash_attention_tc_cuda.h): flash_tc_fraction of the dense peak;
//  - FlashWarp: zeroplan's warp-per-row flash kernels for every other head
//    and precision (kernels/flash_attention_cuda.h): flash_warp_efficiency(d)
//    of the fp32 CUDA-core peak.
enum class AttentionKernel : uint8_t { Materialized, Flash, FlashTensorCores, FlashWarp };
const char* to_string(AttentionKernel k);

// zeroplan's tensor-core flash kernels take bf16 heads of a multiple of 16 up
// to 128 elements (kernels/flash_tiles.h `eligible`, which the CUDA backend
// asserts to agree; they also need sm_80 or later, which every bf16 GPU of
// the catalog is).
constexpr bool zeroplan_flash_on_tensor_cores(uint64_t head_dim, Precision p) {
  return p == Precision::Bf16 && head_dim > 0 && head_dim % 16 == 0 && head_dim <= 128;
}

AttentionKernel attention_kernel(const ModelShape& m, const Layout& l);

// The rates of the table above, counted attention FLOPs (every position) per
// second: kernel `k`'s peak (the dense peak of precision `p`, or the fp32
// CUDA-core peak for the warp kernels), its fraction of it at head size
// `head_dim`, and their product. The time model and the attention
// calibration (attention_calibration.h) both price the attention core
// through these.
double attention_peak_flops(AttentionKernel k, Precision p, const GpuSpec& gpu);
double attention_efficiency(AttentionKernel k, double head_dim, const EfficiencyCurves& e);
inline double attention_flops_per_s(AttentionKernel k, double head_dim, Precision p, const GpuSpec& gpu,
                                    const EfficiencyCurves& e) {
  return attention_peak_flops(k, p, gpu) * attention_efficiency(k, head_dim, e);
}

// The attention core's backward FLOPs per forward FLOP, as the kernel that
// runs it does them. The forward is two products (S = q k^T, then P v);
// backward needs dv = P^T dout, dP = dout v^T, dq = dS k and dk = dS^T q:
//  - Materialized: 2, those four, P kept from forward (Korthikanti et al.
//    2022 Sec. 6: backward twice the forward);
//  - Flash (FlashAttention-2): 2.5, the four and S recomputed (Dao 2023,
//    Algorithm 2; FlashAttention's benchmarks/benchmark_flash_attention.py
//    counts backward as 2.5 x forward);
//  - FlashTensorCores and FlashWarp: 3.5, seven products: the dq pass
//    recomputes S and dP and multiplies dS k, the dk/dv pass recomputes S^T
//    and dP^T and multiplies P^T dout and dS^T q, so no output row needs an
//    atomic (kernels/flash_attention_tc_cuda.cu query_kernel and
//    key_value_kernel; flash_attention_cuda.cu flash_query_kernel and
//    flash_key_value_kernel).
double attention_backward_ratio(AttentionKernel k);

// Kernel launches of one layer's attention core and of its memory-bound
// work, forward (backward launches twice as many, LayerCompute::backward_s).
constexpr int kAttentionLaunchesForward = 2;
constexpr int kElementwiseLaunchesForward = 8;

struct LayerCompute {
  AttentionKernel attention_kernel = AttentionKernel::Flash;
  double gemm_flops = 0;        // forward matrix products of one layer, this GPU
  double attention_flops = 0;   // forward score + value products, this GPU
  double gemm_s = 0;            // forward times
  double attention_s = 0;
  double attention_backward_s = 0;  // attention_backward_ratio x the core, twice the launches
  double elementwise_s = 0;
  double softmax_s = 0;         // the materialised softmax and its dropout (part of elementwise_s)
  double elementwise_backward_s = 0;
  double elementwise_forward_bytes = 0, elementwise_backward_bytes = 0;  // read + written, this GPU
  double zeroed_backward_bytes = 0;  // of the backward's: zeroplan's executor zeroing its gradient buffers
  double forward_s() const { return gemm_s + attention_s + elementwise_s; }
  // A data- and a weight-gradient product per GEMM, the attention core's
  // backward products, and the backward kernels' own bytes.
  double backward_s() const { return 2 * gemm_s + attention_backward_s + elementwise_backward_s; }
};

struct HeadCompute {
  double flops = 0;  // forward logits product, this GPU
  double forward_s = 0;
  double backward_s = 0;  // including the fused softmax cross-entropy
  // Of the backward's: zeroplan's executor zeroing the residual stream's
  // gradient for the final norm's backward to add into (a write of this
  // rank's token rows, one launch).
  double zeroed_backward_bytes = 0;
};

double peak_flops(const GpuSpec& gpu, Precision p);

// One GEMM C(MxN) = A(MxK) B(KxN) through a roofline: the slower of its FLOPs
// at the curve's efficiency and its operands' bytes (element_bytes each) at
// `hbm_bytes_per_s` (thin products are memory-bound), plus the kernel overhead.
double gemm_seconds(double m, double n, double k, double peak, double hbm_bytes_per_s, double element_bytes,
                    const EfficiencyCurves& e);

LayerCompute layer_compute(const ModelShape& m, const Layout& l, const GpuSpec& gpu, const EfficiencyCurves& e);
HeadCompute head_compute(const ModelShape& m, const Layout& l, const GpuSpec& gpu, const EfficiencyCurves& e);

// Whole-model forward FLOPs of one micro-batch, all GPUs together (matrix
// products only, full attention): the basis of model FLOPs (MFU).
double model_forward_flops(const ModelShape& m, uint64_t seq, uint64_t batch);

// Narayanan et al. 2021 Eq. 3: FLOPs per iteration with full recompute
// (hardware FLOPs), 96 B s L h^2 (1 + s/(6h) + V/(16 L h)); and Korthikanti
// et al. 2022 Eq. 7 model FLOPs, 72 B s L h^2 (1 + s/(6h) + V/(12 h L)).
double narayanan_eq3_flops(const ModelShape& m, uint64_t seq, uint64_t batch);
double korthikanti_eq7_flops(const ModelShape& m, uint64_t seq, uint64_t batch);

}  // namespace zp
