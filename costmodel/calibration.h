// Calibration of the time model's efficiency curves from measurements
// (issue 7: "calibrated from the measurements, fitting the efficiency curves
// with Eigen least squares"). The GEMM curve of costmodel/efficiency.h,
//   e(M,N,K) = gemm_peak_fraction * g(M) g(N) g(K),  g(x) = x / (x + gemm_half_dim),
// is fitted so that the time model's own GEMM time (gemm_seconds: the
// roofline with the kernel overhead, costmodel/compute.h) matches measured
// products: Levenberg-Marquardt on the logarithms of the times (every shape
// weighs alike, whether it runs at 10% or 80% of peak), with the logarithms
// of the peak fraction and the half dimension as the unknowns (both stay
// positive) and the normal equations solved with Eigen. The other curve
// fields (HBM fraction, kernel overhead) are held at the file's values.
//
// The fields the GEMM sweep leaves open (attention_peak_fraction,
// flash_tc_fraction, hbm_fraction, kernel_overhead_s) are fitted to
// measured compute phases, forward + backward of a validate run's rank on
// the GPU. The time model's compute of a rank is linear in the inverse
// fractions and in kernel_overhead_s (compute.cc: attention FLOPs at the
// fraction of peak of the kernel that runs them, elementwise bytes at the
// fraction of HBM bandwidth, a launch overhead per kernel; thin GEMMs'
// memory-bound side is the one bend), so each phase is linearised once, by
// differences of the time model's own evaluation, and the unknowns come from
// one weighted linear least-squares solve (Eigen's column-pivoting QR),
// relative errors weighing every case alike.
//
// The attention kernels alone (bench/gpu_attention_bench's CSV) give the
// attention fields directly: each path's counted FLOPs over its measured
// forward + backward time, and for the warp-per-row kernels the curve
// f d / (d + d_half) of the fp32 peak, which is a line in 1/d
// (peak x time / FLOPs = 1/f + (d_half / f) / d), fitted by least squares.
#pragma once

#include <string>
#include <vector>

#include "costmodel/efficiency.h"
#include "costmodel/time_model.h"

namespace zp {

// One measured product C = A (M x K) B (K x N).
struct GemmSample {
  double m = 0, n = 0, k = 0;
  double seconds = 0;
};

// What the model needs besides the curve: the dense peak, the HBM bandwidth
// and the element size of the samples' precision.
struct GemmDevice {
  double peak_flops = 0, hbm_bytes_per_s = 0, element_bytes = 2;
};

struct GemmFit {
  EfficiencyCurves curves;      // the start curves with the two GEMM fields fitted
  double rms_log_error = 0;     // of the times, after the fit
  double worst_rel_error = 0;   // |predicted / measured - 1|, worst sample
  int iterations = 0;
  bool converged = false;
};

// The time model's GEMM time under `curves` for each sample, against the
// measurement: the root mean square of log(predicted / measured).
double gemm_rms_log_error(const std::vector<GemmSample>& samples, const GemmDevice& device, const EfficiencyCurves& curves);

// Throws std::invalid_argument for fewer than two samples or a non-positive value.
GemmFit fit_gemm_efficiency(const std::vector<GemmSample>& samples, const GemmDevice& device, const EfficiencyCurves& start);

// Samples from CSV text: a header line `m,n,k,tflops` (TFLOP/s measured, 2MNK
// per second), then one product per line; `#` starts a comment. Throws
// InputError naming `where` and the line for anything else.
std::vector<GemmSample> parse_gemm_samples(const std::string& text, const std::string& where);

// A rank's compute time (TimeEvaluator::emulated_rank's compute_s) as the
// time model's curves enter it:
//   fixed_s + attention_s / attention_peak_fraction + flash_tc_s / flash_tc_fraction
//           + elementwise_s / hbm_fraction + kernels * kernel_overhead_s
// attention_s (cuBLAS products or the frameworks' flash kernels) and
// flash_tc_s (zeroplan's tensor-core flash kernels) at the full dense peak,
// elementwise_s at the full HBM bandwidth; fixed_s holds the GEMMs at their
// curve and the warp-per-row flash kernels at theirs (a case runs one
// attention kernel, so one of the two attention terms is 0).
struct ComputeTerms {
  double fixed_s = 0, attention_s = 0, flash_tc_s = 0, elementwise_s = 0, kernels = 0;
  double seconds(const EfficiencyCurves& c) const {
    return fixed_s + attention_s / c.attention_peak_fraction + flash_tc_s / c.flash_tc_fraction +
           elementwise_s / c.hbm_fraction + kernels * c.kernel_overhead_s;
  }
};

// `stage`'s rank's compute time (TimeEvaluator::emulated_rank) under
// `curves` in place of in.network's.
double rank_compute_s(const TimeInputs& in, const EfficiencyCurves& curves, uint32_t stage);

// The terms of `stage`'s rank under in.network's curves (the GEMM fields
// stay as they are there), by differences of the time model's evaluation.
ComputeTerms compute_terms(const TimeInputs& in, uint32_t stage);

// One measured compute phase and its terms.
struct ComputeSample {
  std::string name;
  double measured_s = 0;
  ComputeTerms terms;
};

struct ComputeFit {
  EfficiencyCurves curves;             // the start curves with the four fields fitted
  double rms_rel_error_before = 0;     // of the compute times, under the start curves
  double rms_rel_error = 0;            // ... under the fitted ones
  double worst_rel_error = 0;          // |predicted / measured - 1|, worst case, fitted
  std::string unphysical;              // empty, or why no fit of these cases is a GPU's
  // A field no case's time depends on (no case runs materialised attention,
  // or none zeroplan's tensor-core flash kernels) stays at the start's value:
  // its name.
  std::vector<std::string> absent;
  // The fields held because their kernels were measured alone
  // (MeasuredAlone; costmodel/attention_calibration.h,
  // elementwise_calibration.h).
  std::vector<std::string> given;
  // Where the fit of the others is not a GPU's (a fraction outside [0.02, 1],
  // a launch overhead outside [0, 100] us) but one with one field held at the start's value (or
  // more) is: the held fields, and why the free fit was refused.
  std::vector<std::string> held;
  std::string free_fit_unphysical;
};

// The fields `start` already has from kernels timed alone, which the
// compute fit holds: the two attention fields (bench/gpu_attention_bench),
// hbm_fraction (bench/gpu_elementwise_bench).
struct MeasuredAlone {
  bool attention = false;
  bool hbm = false;
};

// Throws std::invalid_argument for fewer samples than fields to fit plus one,
// a non-positive time, or cases whose terms cannot tell the fields apart. The
// fields: attention_peak_fraction, flash_tc_fraction, hbm_fraction,
// kernel_overhead_s, less those no case depends on and those `given`. The
// closest fit (relative errors) of them; where that is no GPU's, the closest
// physical one with fewest fields held at `start`'s values. With every field
// given or absent nothing is fitted and the cases check `start`.
ComputeFit fit_compute_efficiency(const std::vector<ComputeSample>& samples, const EfficiencyCurves& start,
                                  MeasuredAlone given);

}  // namespace zp
