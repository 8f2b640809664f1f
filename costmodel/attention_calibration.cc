#include "costmodel/attention_calibration.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "costmodel/csv_rows.h"
#include "models/input_error.h"

namespace zp {
namespace {

constexpr const char* kHeader = "model,path,dtype,B,T,NH,KVH,hs,forward_ms,backward_ms,forward_tflops,backward_tflops";

// The peak a path's FLOPs are counted against.
double path_peak(const AttentionSample& s, const AttentionPeaks& p) {
  return s.path == AttentionPath::FlashWarp || !s.bf16 ? p.fp32_flops : p.bf16_flops;
}

// The time model's launches of one layer's attention core: two forward, and
// backward twice the forward (compute.cc), so six a step.
double launches_s(const EfficiencyCurves& c) { return 6 * c.kernel_overhead_s; }

// Inverse efficiency a sample measured: its peak times its kernel time over
// its counted FLOPs (forward + backward).
double measured_inverse_efficiency(const AttentionSample& s, const AttentionPeaks& p, const EfficiencyCurves& c) {
  const double kernels_s = std::max(s.forward_s + s.backward_s - launches_s(c), 1e-3 * (s.forward_s + s.backward_s));
  return path_peak(s, p) * kernels_s / (3 * s.forward_flops);
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

std::vector<AttentionSample> parse_attention_samples(const std::string& text, const std::string& where) {
  std::vector<AttentionSample> out;
  for (const CsvRow& row : csv_rows(text, where, kHeader)) {
    AttentionSample s;
    s.model = row.fields[0];
    const std::string& path = row.fields[1];
    if (path == "materialized") {
      s.path = AttentionPath::Materialized;
    } else if (path == "flash-tc") {
      s.path = AttentionPath::FlashTensorCores;
    } else if (path == "flash-warp") {
      s.path = AttentionPath::FlashWarp;
    } else {
      throw InputError(row.at + ": field 'path': expected materialized, flash-tc or flash-warp, got '" + path + "'");
    }
    if (row.fields[2] != "bf16" && row.fields[2] != "fp32") {
      throw InputError(row.at + ": field 'dtype': expected bf16 or fp32, got '" + row.fields[2] + "'");
    }
    s.bf16 = row.fields[2] == "bf16";
    if (s.path == AttentionPath::FlashTensorCores && !s.bf16) {
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

double attention_sample_seconds(const AttentionSample& s, const AttentionPeaks& peaks, const EfficiencyCurves& c) {
  double rate = path_peak(s, peaks);
  switch (s.path) {
    case AttentionPath::Materialized: rate *= c.attention_peak_fraction; break;
    case AttentionPath::FlashTensorCores: rate *= c.flash_tc_fraction; break;
    case AttentionPath::FlashWarp: rate *= c.flash_warp_efficiency(s.head_dim); break;
  }
  return 3 * s.forward_flops / rate + launches_s(c);
}

AttentionFit fit_attention_efficiency(const std::vector<AttentionSample>& samples, const AttentionPeaks& peaks,
                                      const EfficiencyCurves& start) {
  if (samples.empty()) throw std::invalid_argument("fit_attention_efficiency: no samples");
  if (!(peaks.bf16_flops > 0) || !(peaks.fp32_flops > 0)) {
    throw std::invalid_argument("fit_attention_efficiency: the peaks must be positive");
  }
  AttentionFit fit;
  fit.curves = start;
  auto rms = [&](const EfficiencyCurves& c, double* worst) {
    double sum = 0;
    for (const AttentionSample& s : samples) {
      const double rel = attention_sample_seconds(s, peaks, c) / (s.forward_s + s.backward_s) - 1;
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
  for (const auto& [path, field] : {std::pair{AttentionPath::Materialized, &EfficiencyCurves::attention_peak_fraction},
                                    std::pair{AttentionPath::FlashTensorCores, &EfficiencyCurves::flash_tc_fraction}}) {
    std::vector<double> z;
    for (const AttentionSample& s : samples) {
      if (s.path == path) z.push_back(1 / measured_inverse_efficiency(s, peaks, start));
    }
    if (z.empty()) continue;
    const double f = 1 / scale_fit(z);
    const char* name = path == AttentionPath::Materialized ? "attention_peak_fraction" : "flash_tc_fraction";
    note(out_of_range(name, f, 0.02, 1, "[0.02, 1]"));
    fit.curves.*field = f;
    fit.fitted.emplace_back(name, f);
  }
  // The warp kernels' line in 1/d.
  std::vector<const AttentionSample*> warp;
  std::set<double> dims;
  for (const AttentionSample& s : samples) {
    if (s.path != AttentionPath::FlashWarp) continue;
    warp.push_back(&s);
    dims.insert(s.head_dim);
  }
  if (!warp.empty()) {
    double a = 0, b = 0;
    if (dims.size() >= 2) {
      Eigen::MatrixXd A(static_cast<Eigen::Index>(warp.size()), 2);
      for (size_t i = 0; i < warp.size(); ++i) {
        const double y = measured_inverse_efficiency(*warp[i], peaks, start);
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
        z.push_back((1 + start.flash_warp_half_dim / s->head_dim) / measured_inverse_efficiency(*s, peaks, start));
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
