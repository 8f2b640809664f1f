#include "costmodel/attention_calibration.h"

#include <Eigen/Dense>

#include <algorithm>
#include <iterator>
#include <cmath>
#include <set>
#include <stdexcept>

#include "costmodel/csv_rows.h"
#include "models/input_error.h"

namespace zp {
namespace {

constexpr const char* kHeader = "model,path,dtype,B,T,NH,KVH,hs,forward_ms,backward_ms,forward_tflops,backward_tflops";

// The launches the time model adds to one layer's attention core, forward
// and backward (twice the forward's).
double launches_s(const EfficiencyCurves& c) { return 3 * kAttentionLaunchesForward * c.kernel_overhead_s; }

// The sample's forward and backward FLOPs as its kernel runs them.
double pass_flops(const AttentionSample& s) { return (1 + attention_backward_ratio(s.kernel)) * s.forward_flops; }

// Inverse efficiency a sample measured: its kernel's peak times its kernel
// time over its FLOPs (forward + backward, pass_flops). Launch overheads larger
// than the measured time leave a thousandth of it, so the inverse stays
// positive and the fit reports the result as no GPU's.
double measured_inverse_efficiency(const AttentionSample& s, const GpuSpec& gpu, const EfficiencyCurves& c) {
  const double kernels_s = std::max(s.forward_s + s.backward_s - launches_s(c), 1e-3 * (s.forward_s + s.backward_s));
  return attention_peak_flops(s.kernel, s.precision, gpu) * kernels_s / pass_flops(s);
}

// The x minimising sum (x z_i - 1)^2: every row's relative time error alike.
double scale_fit(const std::vector<double>& z) {
  double num = 0, den = 0;
  for (double v : z) {
    num += v;
    den += v * v;
  }
  return num / den;
}

// Why v is no GPU's value of `field`, or "".
std::string out_of_range(const char* field, double v, double lo, double hi, const char* range) {
  if (v >= lo && v <= hi) return "";
  return std::string(field) + " " + std::to_string(v) + " is not in " + range;
}

}  // namespace

const char* csv_path(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::Materialized: return "materialized";
    case AttentionKernel::FlashTensorCores: return "flash-tc";
    case AttentionKernel::FlashWarp: return "flash-warp";
    case AttentionKernel::Flash: break;  // FlashAttention-2: not zeroplan's, not timed by the bench
  }
  return "?";
}

std::vector<AttentionSample> parse_attention_samples(const std::string& text, const std::string& where) {
  constexpr AttentionKernel kTimed[] = {AttentionKernel::Materialized, AttentionKernel::FlashTensorCores,
                                        AttentionKernel::FlashWarp};
  std::vector<AttentionSample> out;
  for (const CsvRow& row : csv_rows(text, where, kHeader)) {
    AttentionSample s;
    s.model = row.fields[0];
    const std::string& path = row.fields[1];
    const auto* kernel = std::find_if(std::begin(kTimed), std::end(kTimed), [&](AttentionKernel k) { return path == csv_path(k); });
    if (kernel == std::end(kTimed)) {
      throw InputError(row.at + ": field 'path': expected materialized, flash-tc or flash-warp, got '" + path + "'");
    }
    s.kernel = *kernel;
    if (row.fields[2] != "bf16" && row.fields[2] != "fp32") {
      throw InputError(row.at + ": field 'dtype': expected bf16 or fp32, got '" + row.fields[2] + "'");
    }
    s.precision = row.fields[2] == "bf16" ? Precision::Bf16 : Precision::Fp32;
    if (s.kernel == AttentionKernel::FlashTensorCores && s.precision != Precision::Bf16) {
      throw InputError(row.at + ": the tensor-core flash kernels run bf16 only, got fp32");
    }
    const char* shape = "positive numbers B,T,NH,KVH,hs,forward_ms,backward_ms";
    double v[7];
    for (size_t i = 0; i < 7; ++i) v[i] = positive_field(row, i + 3, shape);
    const double B = v[0], T = v[1], NH = v[2];
    s.head_dim = v[4];
    s.forward_flops = 4 * B * NH * T * T * s.head_dim;
    s.forward_s = v[5] * 1e-3;
    s.backward_s = v[6] * 1e-3;
    out.push_back(s);
  }
  if (out.empty()) throw InputError(where + ": no measured kernels; expected one row per kernel and shape");
  return out;
}

double attention_sample_seconds(const AttentionSample& s, const GpuSpec& gpu, const EfficiencyCurves& c) {
  return pass_flops(s) / attention_flops_per_s(s.kernel, s.head_dim, s.precision, gpu, c) + launches_s(c);
}

AttentionFit fit_attention_efficiency(const std::vector<AttentionSample>& samples, const GpuSpec& gpu,
                                      const EfficiencyCurves& start) {
  if (samples.empty()) throw std::invalid_argument("fit_attention_efficiency: no samples");
  if (!(gpu.bf16_dense_flops > 0) || !(gpu.fp32_flops > 0)) {
    throw std::invalid_argument("fit_attention_efficiency: the peaks must be positive");
  }
  AttentionFit fit;
  fit.curves = start;
  auto rms = [&](const EfficiencyCurves& c, double* worst) {
    double sum = 0;
    for (const AttentionSample& s : samples) {
      const double rel = attention_sample_seconds(s, gpu, c) / (s.forward_s + s.backward_s) - 1;
      sum += rel * rel;
      if (worst) *worst = std::max(*worst, std::fabs(rel));
    }
    return std::sqrt(sum / static_cast<double>(samples.size()));
  };
  fit.rms_rel_error_before = rms(start, nullptr);
  auto note = [&](const std::string& why) {
    if (fit.unphysical.empty()) fit.unphysical = why;
  };
  // One fraction per tensor-core path.
  struct Field {
    AttentionKernel kernel;
    double EfficiencyCurves::*member;
    const char* name;
  };
  const Field fields[] = {{AttentionKernel::Materialized, &EfficiencyCurves::attention_peak_fraction, "attention_peak_fraction"},
                          {AttentionKernel::FlashTensorCores, &EfficiencyCurves::flash_tc_fraction, "flash_tc_fraction"}};
  for (const auto& [kernel, field, name] : fields) {
    std::vector<double> z;
    for (const AttentionSample& s : samples) {
      if (s.kernel == kernel) z.push_back(1 / measured_inverse_efficiency(s, gpu, start));
    }
    if (z.empty()) continue;
    const double f = 1 / scale_fit(z);
    note(out_of_range(name, f, 0.02, 1, "[0.02, 1]"));
    fit.curves.*field = f;
    fit.fitted.emplace_back(name, f);
  }
  // The warp kernels' line in 1/d.
  std::vector<const AttentionSample*> warp;
  std::set<double> dims;
  for (const AttentionSample& s : samples) {
    if (s.kernel != AttentionKernel::FlashWarp) continue;
    warp.push_back(&s);
    dims.insert(s.head_dim);
  }
  if (!warp.empty()) {
    double a = 0, b = 0;
    if (dims.size() >= 2) {
      Eigen::MatrixXd A(static_cast<Eigen::Index>(warp.size()), 2);
      for (size_t i = 0; i < warp.size(); ++i) {
        const double y = measured_inverse_efficiency(*warp[i], gpu, start);
        A(static_cast<Eigen::Index>(i), 0) = 1 / y;
        A(static_cast<Eigen::Index>(i), 1) = 1 / (warp[i]->head_dim * y);
      }
      const Eigen::Vector2d x = A.colPivHouseholderQr().solve(Eigen::VectorXd::Ones(A.rows()));
      a = x(0);
      b = x(1);
    } else {
      fit.half_dim_held = true;
      std::vector<double> z;
      for (const AttentionSample* s : warp) {
        z.push_back((1 + start.flash_warp_half_dim / s->head_dim) / measured_inverse_efficiency(*s, gpu, start));
      }
      a = scale_fit(z);
      b = a * start.flash_warp_half_dim;
    }
    note(out_of_range("flash_warp_fraction", 1 / a, 0.02, 1, "[0.02, 1]"));
    note(out_of_range("flash_warp_half_dim", b / a, 0, 4096, "[0, 4096]"));
    fit.curves.flash_warp_fraction = 1 / a;
    fit.curves.flash_warp_half_dim = b / a;
    fit.fitted.emplace_back("flash_warp_fraction", 1 / a);
    if (!fit.half_dim_held) fit.fitted.emplace_back("flash_warp_half_dim", b / a);
  }
  fit.rms_rel_error = rms(fit.curves, &fit.worst_rel_error);
  return fit;
}

}  // namespace zp
