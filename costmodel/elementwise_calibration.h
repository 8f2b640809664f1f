// hbm_fraction (costmodel/efficiency.h) from the memory-bound kernels timed
// alone (bench/gpu_elementwise_bench's CSV, one row per kernel). The time
// model prices this work as its bytes (read + written; compute.cc
// elementwise_bytes, the same counts the bench divides by) at hbm_fraction
// of the catalog's HBM bandwidth, plus a fixed time per kernel. Each
// one-launch row gives
//   time = bytes / (hbm_fraction x HBM) + fixed
// and one linear least-squares solve (Eigen) over the rows' relative errors
// gives the slope, 1 / (hbm_fraction x HBM), and the fixed time of a call
// timed alone between two events. Only the slope is the device's
// bandwidth; the fixed part includes the launch a stream of back-to-back
// kernels hides, so it is reported, not written (the compute fit of a
// validate run, calibration.h, fits kernel_overhead_s in a real step).
// The norms' backward rows (a row kernel and column sums: 2 or 3 launches)
// are predicted with the fitted fields as a check, not fitted.
#pragma once

#include <string>
#include <vector>

#include "costmodel/efficiency.h"

namespace zp {

struct ElementwiseSample {
  std::string kernel, dtype;
  double bytes = 0;      // read + written, as the bench counts them
  double seconds = 0;    // one call, the median of the bench's rounds
  int launches = 1;      // kernels the call runs
};

struct ElementwiseMeasurement {
  double copy_bytes_per_s = 0;              // the device copy the bench times first (bytes read + written)
  std::vector<ElementwiseSample> samples;   // every other row
};

// The bench's CSV text (header kernel,dtype,elements,bytes,ms,GBps,of_copy;
// the copy first, then kernels the bench times, each known by name).
// Throws InputError naming `where` and the line for anything else.
ElementwiseMeasurement parse_elementwise_samples(const std::string& text, const std::string& where);

struct ElementwiseFit {
  double hbm_fraction = 0;        // fitted
  double fixed_s = 0;             // per timed call, fitted (0 where a free fit went negative)
  bool fixed_held_at_zero = false;
  int fitted_rows = 0, checked_rows = 0;
  double rms_rel_error = 0, worst_rel_error = 0;          // of the fitted rows
  double rms_rel_error_before = 0;                         // of the fitted rows under the start curves (hbm_fraction, kernel_overhead_s per launch)
  double copy_fraction = 0;                                // the copy's bandwidth over the catalog's
  std::string unphysical;                                  // empty, or why the fitted fraction is no GPU's
};

// The model's time of a sample: bytes at `hbm_fraction` of `hbm_bytes_per_s`
// plus `fixed_s` per launch.
double elementwise_sample_seconds(const ElementwiseSample& s, double hbm_bytes_per_s, double hbm_fraction, double fixed_s);

// Throws std::invalid_argument for fewer than two one-launch rows of
// different sizes or a bandwidth that is not positive.
ElementwiseFit fit_hbm_fraction(const ElementwiseMeasurement& m, double hbm_bytes_per_s, const EfficiencyCurves& start);

}  // namespace zp
