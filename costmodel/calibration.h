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
#pragma once

#include <string>
#include <vector>

#include "costmodel/efficiency.h"

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

}  // namespace zp
