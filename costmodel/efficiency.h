// Achieved fractions of a GPU's and its links' peaks: the curves the time
// model multiplies the datasheet numbers by. They are data, one JSON file per
// GPU in models/data/efficiency/ (generic.json for GPUs without one), so a
// calibration (the validate issue fits them from measurements with Eigen
// least squares) replaces a file, never code.
//
// GEMM efficiency of an (M x K) x (K x N) product:
//   gemm_peak_fraction * g(M) * g(N) * g(K),  g(x) = x / (x + gemm_half_dim)
// so large products approach the ceiling and thin ones fall off.
#pragma once

#include <string>

#include "models/catalog.h"

namespace zp {

struct EfficiencyCurves {
  std::string gpu;                    // the GPU this file describes ("" = generic)
  std::string source;
  double gemm_peak_fraction = 0.75;   // large bf16 GEMMs, of the dense peak
  double gemm_half_dim = 64;          // elements; see g(x) above
  // Attention score and value products, of the counted FLOPs (every
  // position, costmodel/compute.cc) over the dense peak: cuBLAS's batched
  // products beside a fused softmax (materialised attention) and the
  // frameworks' flash kernels (FlashAttention-2).
  double attention_peak_fraction = 0.5;
  // zeroplan's own flash kernels (kernels/flash_attention_cuda.h), which the
  // time model follows when the zeroplan executor runs flash attention
  // (attention_kernel in compute.h): the tensor-core tiles for bf16 heads of
  // a multiple of 16 up to 128, of the dense bf16 peak; the warp-per-row
  // kernels otherwise, of the fp32 CUDA-core peak, by the head size d as
  //   flash_warp_fraction * d / (d + flash_warp_half_dim)
  // (a lane's per-key work is a fixed part, the warp's shuffles, exp and
  // guards, plus d/32 loads and FMAs a row; derivation in docs/time-model.md).
  double flash_tc_fraction = 0.5;
  double flash_warp_fraction = 0.33;
  double flash_warp_half_dim = 180;
  double hbm_fraction = 0.8;          // elementwise kernels, of the HBM bandwidth
  double nvlink_busbw_fraction = 0.8; // NCCL bus bandwidth achieved over NVLink/NVSwitch
  double nic_busbw_fraction = 0.85;   // ... over the NICs
  double pcie_fraction = 0.8;         // host <-> device copies
  double nvlink_latency_s = 5e-6;     // per algorithm step
  double nic_latency_s = 12e-6;
  double kernel_overhead_s = 3e-6;    // launch and tail per kernel
  double cpu_adam_s_per_param = 0.22e-9;  // DeepSpeed CPU Adam, ZeRO-Offload Sec. 5 (0.22 s per 1e9 params)
  // Adding reduced bf16 gradients into an fp32 host partition: a memory-bound
  // pass of about 10 bytes a parameter against CPU Adam's 28, on the same
  // host, so 10/28 of its time (an estimate until a machine measures it,
  // bench/host_optimizer_bench.cc).
  double cpu_accumulate_s_per_param = 0.22e-9 * 10 / 28;

  double gemm_efficiency(double m, double n, double k) const {
    auto g = [this](double x) { return x / (x + gemm_half_dim); };
    return gemm_peak_fraction * g(m) * g(n) * g(k);
  }
  // The warp-per-row flash kernels' fraction of the fp32 peak at head size d.
  double flash_warp_efficiency(double d) const { return flash_warp_fraction * d / (d + flash_warp_half_dim); }
};

// The file that holds `gpu_name`'s curves: `data_dir`/efficiency/<lower-case
// name>.json, or generic.json when the GPU has none.
std::string efficiency_file(const std::string& data_dir, const std::string& gpu_name);

// The curves of efficiency_file(data_dir, gpu_name). Throws InputError on a malformed file.
EfficiencyCurves load_efficiency(const std::string& data_dir, const std::string& gpu_name);

}  // namespace zp
