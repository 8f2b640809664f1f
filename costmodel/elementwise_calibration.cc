#include "costmodel/elementwise_calibration.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string_view>

#include "costmodel/csv_rows.h"
#include "models/input_error.h"

namespace zp {
namespace {

constexpr const char* kHeader = "kernel,dtype,elements,bytes,ms,GBps,of_copy";

// The kernels bench/gpu_elementwise_bench times and the launches of each
// (kernels/ops_cuda.cu, cuda_common.cuh column_sums: a norm's backward runs
// its row kernel, then the column sums in chunks and their in-order sum, or
// in one pass).
struct KnownKernel {
  std::string_view name;
  int launches;
};
constexpr KnownKernel kKernels[] = {
    {"layernorm_forward", 1},   {"layernorm_backward", 3}, {"layernorm_backward_one_pass_sums", 2},
    {"rmsnorm_backward", 3},    {"residual_add", 1},       {"residual_backward", 1},
    {"gelu_forward", 1},        {"gelu_backward", 1},      {"swiglu_backward", 1},
    {"adamw_bf16_grads", 1},    {"adamw_fp32_grads", 1},   {"cast_fp32_to_bf16", 1},
    {"add_into_fp32", 1},
};

std::string known_names() {
  std::string out;
  for (const KnownKernel& k : kKernels) out += (out.empty() ? "" : ", ") + std::string(k.name);
  return out;
}

}  // namespace

ElementwiseMeasurement parse_elementwise_samples(const std::string& text, const std::string& where) {
  ElementwiseMeasurement m;
  const std::vector<CsvRow> rows = csv_rows(text, where, kHeader);
  for (const CsvRow& row : rows) {
    const double bytes = positive_field(row, 3, "positive numbers elements,bytes,ms");
    const double seconds = positive_field(row, 4, "positive numbers elements,bytes,ms") * 1e-3;
    if (row.fields[0] == "copy") {
      if (m.copy_bytes_per_s > 0) throw InputError(row.at + ": a second copy row; the bench times one copy, first");
      m.copy_bytes_per_s = bytes / seconds;
      continue;
    }
    const auto* k = std::find_if(std::begin(kKernels), std::end(kKernels),
                                 [&](const KnownKernel& known) { return row.fields[0] == known.name; });
    if (k == std::end(kKernels)) {
      throw InputError(row.at + ": field 'kernel': expected copy or one of " + known_names() + ", got '" + row.fields[0] + "'");
    }
    m.samples.push_back({row.fields[0], row.fields[1], bytes, seconds, k->launches});
  }
  if (m.samples.empty()) throw InputError(where + ": no measured kernels; expected one row per kernel");
  return m;
}

double elementwise_sample_seconds(const ElementwiseSample& s, double hbm_bytes_per_s, double hbm_fraction, double fixed_s) {
  return s.bytes / (hbm_bytes_per_s * hbm_fraction) + s.launches * fixed_s;
}

ElementwiseFit fit_hbm_fraction(const ElementwiseMeasurement& m, double hbm_bytes_per_s, const EfficiencyCurves& start) {
  if (!(hbm_bytes_per_s > 0)) throw std::invalid_argument("fit_hbm_fraction: the HBM bandwidth must be positive");
  std::vector<const ElementwiseSample*> one;
  for (const ElementwiseSample& s : m.samples) {
    if (s.launches == 1) one.push_back(&s);
  }
  const auto n = static_cast<Eigen::Index>(one.size());
  double smallest = 0, largest = 0;
  for (const ElementwiseSample* s : one) {
    smallest = smallest == 0 ? s->bytes : std::min(smallest, s->bytes);
    largest = std::max(largest, s->bytes);
  }
  if (n < 2 || !(largest > smallest)) {
    throw std::invalid_argument("fit_hbm_fraction: the slope needs two or more one-launch kernels of different sizes");
  }
  // time_i = bytes_i x slope + fixed, each row divided by its time so that
  // the residuals are relative errors.
  Eigen::MatrixXd A(n, 2);
  Eigen::VectorXd b = Eigen::VectorXd::Ones(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const ElementwiseSample& s = *one[static_cast<size_t>(i)];
    A(i, 0) = s.bytes / s.seconds;
    A(i, 1) = 1 / s.seconds;
  }
  Eigen::Vector2d x = A.colPivHouseholderQr().solve(b);
  ElementwiseFit fit;
  if (!(x(1) >= 0)) {
    // A negative fixed time is noise, no device's: the slope through zero.
    fit.fixed_held_at_zero = true;
    x(1) = 0;
    x(0) = A.col(0).dot(b) / A.col(0).squaredNorm();
  }
  fit.hbm_fraction = 1 / (x(0) * hbm_bytes_per_s);
  fit.fixed_s = x(1);
  fit.fitted_rows = static_cast<int>(n);
  fit.checked_rows = static_cast<int>(m.samples.size()) - fit.fitted_rows;
  double sum = 0, before = 0;
  for (const ElementwiseSample* s : one) {
    const double rel = elementwise_sample_seconds(*s, hbm_bytes_per_s, fit.hbm_fraction, fit.fixed_s) / s->seconds - 1;
    const double rel0 = elementwise_sample_seconds(*s, hbm_bytes_per_s, start.hbm_fraction, start.kernel_overhead_s) / s->seconds - 1;
    sum += rel * rel;
    before += rel0 * rel0;
    fit.worst_rel_error = std::max(fit.worst_rel_error, std::fabs(rel));
  }
  fit.rms_rel_error = std::sqrt(sum / static_cast<double>(n));
  fit.rms_rel_error_before = std::sqrt(before / static_cast<double>(n));
  fit.copy_fraction = m.copy_bytes_per_s / hbm_bytes_per_s;
  if (!(fit.hbm_fraction >= 0.02 && fit.hbm_fraction <= 1)) {
    fit.unphysical = "hbm_fraction " + std::to_string(fit.hbm_fraction) + " is not in [0.02, 1]";
  }
  return fit;
}

}  // namespace zp
