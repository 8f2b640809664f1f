#include "costmodel/calibration.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "costmodel/compute.h"
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
  std::istringstream in(text);
  std::string line;
  int number = 0;
  bool header = false;
  while (std::getline(in, line)) {
    ++number;
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    line.erase(std::remove_if(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; }),
               line.end());
    const std::string at = where + ":" + std::to_string(number);
    if (!header) {
      if (line != "m,n,k,tflops") throw InputError(at + ": expected the header m,n,k,tflops, got '" + line + "'");
      header = true;
      continue;
    }
    double v[4];
    std::istringstream fields(line);
    std::string field;
    int count = 0;
    while (std::getline(fields, field, ',')) {
      char* end = nullptr;
      const double x = count < 4 ? std::strtod(field.c_str(), &end) : 0;
      if (count >= 4 || field.empty() || *end != '\0' || !(x > 0) || !std::isfinite(x)) {
        throw InputError(at + ": expected four positive numbers m,n,k,tflops, got '" + line + "'");
      }
      v[count++] = x;
    }
    if (count != 4) throw InputError(at + ": expected four positive numbers m,n,k,tflops, got '" + line + "'");
    out.push_back({v[0], v[1], v[2], 2 * v[0] * v[1] * v[2] / (v[3] * 1e12)});
  }
  if (!header) throw InputError(where + ": empty; expected the header m,n,k,tflops and one product per line");
  if (out.size() < 2) throw InputError(where + ": at least two measured products are needed for a fit");
  return out;
}

}  // namespace zp
