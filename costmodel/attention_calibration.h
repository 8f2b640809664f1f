// The attention fields of the efficiency curves (costmodel/efficiency.h)
// from the attention kernels timed alone (bench/gpu_attention_bench's CSV,
// one row per kernel and shape). The time model prices a layer's attention
// core as its counted FLOPs (4 b a s^2 d forward, every position, and
// attention_backward_ratio times that backward: compute.h) at the rate of
// the kernel that runs it, plus two launches forward and four backward, so
// the rows give the fields directly:
//  - materialized rows: attention_peak_fraction of the dense peak;
//  - flash-tc rows: flash_tc_fraction of the dense peak;
//  - flash-warp rows: flash_warp_fraction d / (d + flash_warp_half_dim) of
//    the fp32 peak. With y = peak x time / FLOPs = 1/f + (d_half / f) / d a
//    line in 1/d, both come from one linear least-squares solve (Eigen);
//    rows of one head size only fit f with d_half held.
// Every fit weighs the rows' relative time errors alike.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "costmodel/compute.h"
#include "costmodel/efficiency.h"

namespace zp {

// One measured kernel, forward and backward. `kernel` is one of the three
// the bench times (Materialized, FlashTensorCores, FlashWarp).
struct AttentionSample {
  std::string model;
  AttentionKernel kernel = AttentionKernel::Materialized;
  Precision precision = Precision::Bf16;  // bf16 or fp32
  double head_dim = 0;
  double forward_flops = 0;  // as the time model counts them: 4 B NH T^2 hs
  double forward_s = 0, backward_s = 0;
};

// The bench's name of a kernel in its CSV's path column: materialized,
// flash-tc or flash-warp.
const char* csv_path(AttentionKernel k);

// Samples from the bench's CSV text (header
// model,path,dtype,B,T,NH,KVH,hs,forward_ms,backward_ms,forward_tflops,backward_tflops;
// path one of csv_path's names; dtype bf16 or fp32).
// Throws InputError naming `where` and the line for anything else.
std::vector<AttentionSample> parse_attention_samples(const std::string& text, const std::string& where);

// The time model's forward + backward time of a sample under `curves`
// (compute.h: attention_flops_per_s and the core's launches).
double attention_sample_seconds(const AttentionSample& s, const GpuSpec& gpu, const EfficiencyCurves& curves);

struct AttentionFit {
  EfficiencyCurves curves;           // the start curves with the paths' fields fitted
  // The fields fitted and their values (a path without rows keeps its fields).
  std::vector<std::pair<std::string, double>> fitted;
  bool half_dim_held = false;        // the warp rows have one head size
  double rms_rel_error_before = 0, rms_rel_error = 0, worst_rel_error = 0;
  std::string unphysical;            // empty, or why a fitted field is no GPU's
};

// Throws std::invalid_argument for no samples or a peak that is not positive.
AttentionFit fit_attention_efficiency(const std::vector<AttentionSample>& samples, const GpuSpec& gpu,
                                      const EfficiencyCurves& start);

}  // namespace zp
