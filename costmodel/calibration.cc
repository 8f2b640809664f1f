#include "costmodel/calibration.h"

#include <Eigen/Dense>

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>
#include <stdexcept>

#include "costmodel/compute.h"
#include "costmodel/csv_rows.h"
#include "models/input_error.h"

namespace zp {
namespace {

EfficiencyCurves with_gemm(EfficiencyCurves c, const Eigen::Vector2d& theta) {
  c.gemm_peak_fraction = std::exp(theta(0));
  c.gemm_half_dim = std::exp(theta(1));
  return c;
}

// log(measured) - log(model) per sample.
Eigen::VectorXd residuals(const std::vector<GemmSample>& s, const GemmDevice& d, const EfficiencyCurves& c) {
  Eigen::VectorXd r(static_cast<Eigen::Index>(s.size()));
  const double hbm = d.hbm_bytes_per_s * c.hbm_fraction;
  for (size_t i = 0; i < s.size(); ++i) {
    r(static_cast<Eigen::Index>(i)) =
        std::log(s[i].seconds) - std::log(gemm_seconds(s[i].m, s[i].n, s[i].k, d.peak_flops, hbm, d.element_bytes, c));
  }
  return r;
}

}  // namespace

double gemm_rms_log_error(const std::vector<GemmSample>& samples, const GemmDevice& device, const EfficiencyCurves& curves) {
  const Eigen::VectorXd r = residuals(samples, device, curves);
  return std::sqrt(r.squaredNorm() / static_cast<double>(r.size()));
}

GemmFit fit_gemm_efficiency(const std::vector<GemmSample>& samples, const GemmDevice& device, const EfficiencyCurves& start) {
  if (samples.size() < 2) throw std::invalid_argument("fit_gemm_efficiency: at least two samples are needed");
  if (!(device.peak_flops > 0 && device.hbm_bytes_per_s > 0 && device.element_bytes > 0)) {
    throw std::invalid_argument("fit_gemm_efficiency: the device's peak, bandwidth and element size must be positive");
  }
  for (const GemmSample& s : samples) {
    if (!(s.m > 0 && s.n > 0 && s.k > 0 && s.seconds > 0)) {
      throw std::invalid_argument("fit_gemm_efficiency: every dimension and time must be positive");
    }
  }
  const auto n = static_cast<Eigen::Index>(samples.size());
  Eigen::Vector2d theta(std::log(start.gemm_peak_fraction), std::log(start.gemm_half_dim));
  Eigen::VectorXd r = residuals(samples, device, with_gemm(start, theta));
  double cost = r.squaredNorm();
  // The Jacobian by central differences: gemm_seconds is the time model's
  // own code (a roofline, so piecewise smooth), not a copy of its formula.
  auto jacobian = [&](const Eigen::Vector2d& at) {
    Eigen::MatrixXd J(n, 2);
    for (int p = 0; p < 2; ++p) {
      Eigen::Vector2d up = at, down = at;
      up(p) += 1e-6;
      down(p) -= 1e-6;
      J.col(p) = (residuals(samples, device, with_gemm(start, up)) - residuals(samples, device, with_gemm(start, down))) / 2e-6;
    }
    return J;
  };
  Eigen::MatrixXd J = jacobian(theta);
  double lambda = 1e-3;
  GemmFit fit;
  for (fit.iterations = 1; fit.iterations <= 200; ++fit.iterations) {
    const Eigen::Matrix2d A = J.transpose() * J;
    const Eigen::Vector2d g = J.transpose() * r;
    Eigen::Matrix2d damped = A;
    damped.diagonal() += lambda * A.diagonal() + Eigen::Vector2d::Constant(1e-12);
    const Eigen::Vector2d step = damped.ldlt().solve(-g);
    const Eigen::Vector2d trial = theta + step;
    const Eigen::VectorXd trial_r = residuals(samples, device, with_gemm(start, trial));
    const double trial_cost = trial_r.squaredNorm();
    if (trial_cost < cost) {
      const bool small = step.norm() < 1e-9 || cost - trial_cost < 1e-12 * cost;
      theta = trial;
      r = trial_r;
      cost = trial_cost;
      J = jacobian(theta);
      lambda = std::max(lambda / 10, 1e-12);
      if (small) {
        fit.converged = true;
        break;
      }
    } else if ((lambda *= 10) > 1e12) {  // no step lowers the cost: a minimum
      fit.converged = true;
      break;
    }
  }
  fit.curves = with_gemm(start, theta);
  fit.rms_log_error = std::sqrt(cost / static_cast<double>(n));
  for (Eigen::Index i = 0; i < n; ++i) fit.worst_rel_error = std::max(fit.worst_rel_error, std::fabs(std::exp(-r(i)) - 1));
  return fit;
}

std::vector<GemmSample> parse_gemm_samples(const std::string& text, const std::string& where) {
  std::vector<GemmSample> out;
  for (const CsvRow& row : csv_rows(text, where, "m,n,k,tflops")) {
    double v[4];
    for (size_t i = 0; i < 4; ++i) v[i] = positive_field(row, i, "four positive numbers m,n,k,tflops");
    // Dimensions a product can have, and a time the fit can take the log of:
    // 1e308 TFLOP/s parses as a positive number but times nothing.
    const double seconds = 2 * v[0] * v[1] * v[2] / (v[3] * 1e12);
    const bool dims_ok = v[0] < 2147483648.0 && v[1] < 2147483648.0 && v[2] < 2147483648.0;
    if (!dims_ok || !(seconds > 0 && std::isfinite(seconds))) {
      throw InputError(row.at + ": '" + row.line + "': expected dimensions below 2^31 and a rate that gives a time");
    }
    out.push_back({v[0], v[1], v[2], seconds});
  }
  if (out.size() < 2) throw InputError(where + ": at least two measured products are needed for a fit");
  return out;
}

double rank_compute_s(const TimeInputs& in, const EfficiencyCurves& curves, uint32_t stage) {
  const Network network{in.network.links, curves};
  const TimeInputs with{in.model, in.layout, in.gpu, in.node, network};
  TimeEvaluator fresh;  // its caches hold prepared compute of one set of curves
  return fresh.emulated_rank(with, stage).compute_s;
}

ComputeTerms compute_terms(const TimeInputs& in, uint32_t stage) {
  const EfficiencyCurves& e = in.network.eff;
  const double base = rank_compute_s(in, e, stage);
  // Halving a fraction adds exactly one more of its term (1/(f/2) - 1/f = 1/f).
  EfficiencyCurves attention = e, flash = e, memory = e, overhead = e;
  attention.attention_peak_fraction /= 2;
  flash.flash_tc_fraction /= 2;
  memory.hbm_fraction /= 2;
  overhead.kernel_overhead_s += 1e-6;
  ComputeTerms t;
  t.attention_s = (rank_compute_s(in, attention, stage) - base) * e.attention_peak_fraction;
  t.flash_tc_s = (rank_compute_s(in, flash, stage) - base) * e.flash_tc_fraction;
  t.elementwise_s = (rank_compute_s(in, memory, stage) - base) * e.hbm_fraction;
  t.kernels = (rank_compute_s(in, overhead, stage) - base) / 1e-6;
  t.fixed_s = base - t.attention_s / e.attention_peak_fraction - t.flash_tc_s / e.flash_tc_fraction -
              t.elementwise_s / e.hbm_fraction - t.kernels * e.kernel_overhead_s;
  return t;
}

namespace {

// The compute fit's unknowns: the inverse fractions, and the launch overhead
// in microseconds (columns of like size).
constexpr int kComputeFields = 4;
constexpr const char* kComputeFieldNames[kComputeFields] = {"attention_peak_fraction", "flash_tc_fraction",
                                                            "hbm_fraction", "kernel_overhead_us"};

Eigen::Vector4d compute_unknowns(const EfficiencyCurves& c) {
  return {1 / c.attention_peak_fraction, 1 / c.flash_tc_fraction, 1 / c.hbm_fraction, c.kernel_overhead_s * 1e6};
}

EfficiencyCurves with_compute_unknowns(EfficiencyCurves c, const Eigen::Vector4d& x) {
  c.attention_peak_fraction = 1 / x(0);
  c.flash_tc_fraction = 1 / x(1);
  c.hbm_fraction = 1 / x(2);
  c.kernel_overhead_s = x(3) * 1e-6;
  return c;
}

// Why x is no GPU's, or "": fractions from 2% to all of the peak, a launch
// from 0 to 100 us (past those the fit explains something other than the
// device's rates, as on the host emulator).
std::string unphysical(const Eigen::Vector4d& x) {
  for (int j = 0; j < 3; ++j) {
    if (!(x(j) >= 1 && x(j) <= 50)) {
      return std::string(kComputeFieldNames[j]) + " " + std::to_string(1 / x(j)) + " is not in [0.02, 1]";
    }
  }
  if (!(x(3) >= 0 && x(3) <= 100)) return "kernel_overhead_us " + std::to_string(x(3)) + " is not in [0, 100]";
  return "";
}

}  // namespace

ComputeFit fit_compute_efficiency(const std::vector<ComputeSample>& samples, const EfficiencyCurves& start,
                                  MeasuredAlone measured_alone) {
  const auto n = static_cast<Eigen::Index>(samples.size());
  // Each row divided by its measured time, so the residuals are relative errors.
  Eigen::MatrixXd A(n, kComputeFields);
  Eigen::VectorXd b(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const ComputeSample& s = samples[static_cast<size_t>(i)];
    if (!(s.measured_s > 0) || !std::isfinite(s.measured_s)) {
      throw std::invalid_argument("fit_compute_efficiency: case '" + s.name + "' has no positive measured time");
    }
    A(i, 0) = s.terms.attention_s / s.measured_s;
    A(i, 1) = s.terms.flash_tc_s / s.measured_s;
    A(i, 2) = s.terms.elementwise_s / s.measured_s;
    A(i, 3) = s.terms.kernels * 1e-6 / s.measured_s;
    b(i) = (s.measured_s - s.terms.fixed_s) / s.measured_s;
  }
  // A field no case depends on (its attention kernel runs in none) stays.
  int absent = 0;
  for (int j = 0; j < kComputeFields; ++j) {
    if (n == 0 || A.col(j).cwiseAbs().maxCoeff() == 0) absent |= 1 << j;
  }
  // attention_peak_fraction and flash_tc_fraction; hbm_fraction.
  const int given = ((measured_alone.attention ? 0b0011 : 0) | (measured_alone.hbm ? 0b0100 : 0)) & ~absent;
  absent |= given;
  const int fields = kComputeFields - std::popcount(static_cast<unsigned>(absent));
  if (n < fields + 1) {
    throw std::invalid_argument("fit_compute_efficiency: " + std::to_string(fields) + " fields need at least " +
                                std::to_string(fields + 1) + " cases, got " + std::to_string(n));
  }
  const Eigen::Vector4d at_start = compute_unknowns(start);
  // The fit with the fields of `held` (a bit mask) at the start's values.
  struct Trial {
    Eigen::Vector4d x;
    std::string unphysical;
    double rms = 0;
  };
  auto rms = [&](const EfficiencyCurves& c, double* worst) {
    double sum = 0;
    for (const ComputeSample& s : samples) {
      const double rel = s.terms.seconds(c) / s.measured_s - 1;
      sum += rel * rel;
      if (worst) *worst = std::max(*worst, std::fabs(rel));
    }
    return std::sqrt(sum / static_cast<double>(samples.size()));
  };
  auto free_columns = [&](int held) {
    std::vector<int> free;
    for (int j = 0; j < kComputeFields; ++j) {
      if (!(held & (1 << j))) free.push_back(j);
    }
    Eigen::MatrixXd Af(n, static_cast<Eigen::Index>(free.size()));
    for (size_t k = 0; k < free.size(); ++k) Af.col(static_cast<Eigen::Index>(k)) = A.col(free[k]);
    return std::make_pair(free, Af);
  };
  if (fields > 0 && Eigen::ColPivHouseholderQR<Eigen::MatrixXd>(free_columns(absent).second).rank() < fields) {
    throw std::invalid_argument("fit_compute_efficiency: the cases cannot tell attention, elementwise and launch time apart "
                                "(add cases of other shapes or attention)");
  }
  auto solve = [&](int held) {
    Trial t;
    t.x = at_start;
    Eigen::VectorXd rhs = b;
    for (int j = 0; j < kComputeFields; ++j) {
      if (held & (1 << j)) rhs -= A.col(j) * at_start(j);
    }
    const auto [free, Af] = free_columns(held);
    if (free.empty()) {  // everything held: the start's values, checked
      t.unphysical = unphysical(t.x);
      return t;
    }
    const Eigen::VectorXd xf = Af.colPivHouseholderQr().solve(rhs);
    for (size_t k = 0; k < free.size(); ++k) t.x(free[k]) = xf(static_cast<Eigen::Index>(k));
    t.unphysical = unphysical(t.x);
    return t;
  };
  ComputeFit fit;
  for (int j = 0; j < kComputeFields; ++j) {
    if (given & (1 << j)) {
      fit.given.emplace_back(kComputeFieldNames[j]);
    } else if (absent & (1 << j)) {
      fit.absent.emplace_back(kComputeFieldNames[j]);
    }
  }
  fit.rms_rel_error_before = rms(start, nullptr);
  // All free if that is a GPU's answer; else the closest physical fit with
  // one more field held at the start's value, then two, and so on.
  const Trial free_fit = solve(absent);
  Trial best = free_fit;
  if (!free_fit.unphysical.empty()) {
    int chosen = -1;
    for (int extra = 1; extra < fields && chosen < 0; ++extra) {
      for (int held = 0; held < (1 << kComputeFields); ++held) {
        if ((held & absent) || std::popcount(static_cast<unsigned>(held)) != extra) continue;
        Trial t = solve(held | absent);
        if (!t.unphysical.empty()) continue;
        t.rms = rms(with_compute_unknowns(start, t.x), nullptr);
        if (chosen < 0 || t.rms < best.rms) {
          best = t;
          chosen = held;
        }
      }
    }
    if (chosen < 0) {
      fit.unphysical = free_fit.unphysical;  // no fit of these cases is a GPU's
    } else {
      fit.free_fit_unphysical = free_fit.unphysical;
      for (int j = 0; j < kComputeFields; ++j) {
        if (chosen & (1 << j)) fit.held.emplace_back(kComputeFieldNames[j]);
      }
    }
  }
  fit.curves = with_compute_unknowns(start, best.x);
  fit.rms_rel_error = rms(fit.curves, &fit.worst_rel_error);
  return fit;
}

}  // namespace zp
