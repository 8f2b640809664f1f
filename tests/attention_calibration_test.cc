// The attention fields fitted to the kernels timed alone
// (costmodel/attention_calibration.h): known fractions come back from times
// made with them, one head size holds the warp curve's half dimension,
// impossible rates are reported, and the bench's CSV is read or refused
// with the line named.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "costmodel/attention_calibration.h"
#include "models/input_error.h"
#include "test_support.h"

using namespace zp;

namespace {

const GpuSpec& h200() { return test::catalog().gpu("H200-141GB"); }

// gpu_attention_bench's shapes at 1,024 tokens, each path it runs them on,
// timed as `truth` prices them.
std::vector<AttentionSample> bench_samples(const EfficiencyCurves& truth) {
  struct Row {
    AttentionKernel kernel;
    Precision precision;
    double B, NH, hs;
  };
  constexpr AttentionKernel kTiles = AttentionKernel::FlashTensorCores, kCuBlas = AttentionKernel::Materialized,
                            kWarp = AttentionKernel::FlashWarp;
  constexpr Precision kBf16 = Precision::Bf16, kFp32 = Precision::Fp32;
  const Row rows[] = {{kTiles, kBf16, 8, 25, 64}, {kCuBlas, kBf16, 8, 25, 64}, {kTiles, kBf16, 4, 24, 128},
                      {kCuBlas, kBf16, 4, 24, 128}, {kWarp, kBf16, 4, 8, 256}, {kCuBlas, kBf16, 4, 8, 256},
                      {kWarp, kFp32, 4, 12, 64},     {kWarp, kFp32, 2, 24, 128}};
  std::vector<AttentionSample> out;
  for (const Row& r : rows) {
    AttentionSample s;
    s.model = "m";
    s.kernel = r.kernel;
    s.precision = r.precision;
    s.head_dim = r.hs;
    s.forward_flops = 4 * r.B * r.NH * 1024.0 * 1024.0 * r.hs;
    const double t = attention_sample_seconds(s, h200(), truth);
    s.forward_s = t / 3;
    s.backward_s = 2 * t / 3;
    out.push_back(s);
  }
  return out;
}

EfficiencyCurves truth_curves() {
  EfficiencyCurves c = load_efficiency(Catalog::builtin_data_dir(), "H200-141GB");
  c.attention_peak_fraction = 0.4;
  c.flash_tc_fraction = 0.3;
  c.flash_warp_fraction = 0.25;
  c.flash_warp_half_dim = 120;
  return c;
}

}  // namespace

TEST_CASE("attention calibration: known fractions are recovered from the kernels' times") {
  const EfficiencyCurves truth = truth_curves();
  const EfficiencyCurves start = load_efficiency(Catalog::builtin_data_dir(), "H200-141GB");
  std::vector<AttentionSample> samples = bench_samples(truth);
  const AttentionFit exact = fit_attention_efficiency(samples, h200(), start);
  CHECK(exact.unphysical.empty());
  CHECK_FALSE(exact.half_dim_held);
  CHECK(exact.fitted.size() == 4);
  CHECK(exact.curves.attention_peak_fraction == doctest::Approx(0.4).epsilon(1e-6));
  CHECK(exact.curves.flash_tc_fraction == doctest::Approx(0.3).epsilon(1e-6));
  CHECK(exact.curves.flash_warp_fraction == doctest::Approx(0.25).epsilon(1e-6));
  CHECK(exact.curves.flash_warp_half_dim == doctest::Approx(120).epsilon(1e-6));
  CHECK(exact.rms_rel_error < 1e-9);
  CHECK(exact.rms_rel_error_before > 0.1);
  CHECK(exact.curves.hbm_fraction == start.hbm_fraction);  // not an attention field
  // 3% timing noise: near, and better than the file's guesses.
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 0.03);
  for (AttentionSample& s : samples) {
    s.forward_s *= std::exp(noise(rng));
    s.backward_s *= std::exp(noise(rng));
  }
  const AttentionFit noisy = fit_attention_efficiency(samples, h200(), start);
  CHECK(noisy.curves.attention_peak_fraction == doctest::Approx(0.4).epsilon(0.05));
  CHECK(noisy.curves.flash_tc_fraction == doctest::Approx(0.3).epsilon(0.05));
  CHECK(noisy.curves.flash_warp_efficiency(64) == doctest::Approx(truth.flash_warp_efficiency(64)).epsilon(0.06));
  CHECK(noisy.curves.flash_warp_efficiency(256) == doctest::Approx(truth.flash_warp_efficiency(256)).epsilon(0.06));
  CHECK(noisy.rms_rel_error < noisy.rms_rel_error_before);
}

TEST_CASE("attention calibration: one head size holds the half dimension; a missing path keeps its field") {
  const EfficiencyCurves truth = truth_curves();
  EfficiencyCurves start = truth;
  start.attention_peak_fraction = 0.6;
  start.flash_warp_fraction = 0.5;
  std::vector<AttentionSample> samples;
  for (const AttentionSample& s : bench_samples(truth)) {
    if (s.head_dim == 256 || s.kernel == AttentionKernel::Materialized) samples.push_back(s);
  }
  const AttentionFit f = fit_attention_efficiency(samples, h200(), start);
  CHECK(f.half_dim_held);
  CHECK(f.curves.flash_warp_half_dim == 120);
  CHECK(f.curves.flash_warp_fraction == doctest::Approx(0.25).epsilon(1e-6));
  CHECK(f.curves.attention_peak_fraction == doctest::Approx(0.4).epsilon(1e-6));
  CHECK(f.curves.flash_tc_fraction == start.flash_tc_fraction);  // no flash-tc rows
  REQUIRE(f.fitted.size() == 2);
  CHECK(f.fitted[0].first == "attention_peak_fraction");
  CHECK(f.fitted[1].first == "flash_warp_fraction");
  // Times faster than the tensor cores allow are no GPU's.
  for (AttentionSample& s : samples) {
    s.forward_s /= 10;
    s.backward_s /= 10;
  }
  CHECK(fit_attention_efficiency(samples, h200(), start).unphysical.find("attention_peak_fraction") == 0);
  CHECK_THROWS_AS(fit_attention_efficiency({}, h200(), start), std::invalid_argument);
}

TEST_CASE("attention calibration: the bench's CSV, and one-line errors naming the line") {
  const std::string header = "model,path,dtype,B,T,NH,KVH,hs,forward_ms,backward_ms,forward_tflops,backward_tflops\n";
  const std::vector<AttentionSample> s = parse_attention_samples(
      "# gpu_attention_bench\n" + header + "gpt2-124m,flash-tc,bf16,8,1024,12,12,64,0.100,0.300,257.7,171.8\n" +
          "gemma-2b,flash-warp,bf16,4,1024,8,1,256,4.0,15.0,8.6,4.6\ngpt2-124m,flash-warp,fp32,4,1024,12,12,64,3,12,1,1\n",
      "a.csv");
  REQUIRE(s.size() == 3);
  CHECK(s[0].kernel == AttentionKernel::FlashTensorCores);
  CHECK(s[0].forward_flops == doctest::Approx(4.0 * 8 * 12 * 1024 * 1024 * 64));
  CHECK(s[0].forward_s == doctest::Approx(1e-4));
  CHECK(s[0].backward_s == doctest::Approx(3e-4));
  CHECK(s[1].head_dim == 256);
  CHECK(s[2].precision == Precision::Fp32);
  CHECK(s[2].kernel == AttentionKernel::FlashWarp);
  auto error = [](const std::string& text) {
    try {
      parse_attention_samples(text, "a.csv");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error(header + "m,flash,bf16,1,2,3,4,5,6,7,8,9\n") ==
        "a.csv:2: field 'path': expected materialized, flash-tc or flash-warp, got 'flash'");
  CHECK(error(header + "m,flash-tc,fp32,1,2,3,4,5,6,7,8,9\n") == "a.csv:2: the tensor-core flash kernels run bf16 only, got fp32");
  CHECK(error(header + "m,flash-tc,fp16,1,2,3,4,5,6,7,8,9\n").find("a.csv:2: field 'dtype'") == 0);
  CHECK(error(header + "m,materialized,bf16,1,2,3,4,5,0,7,8,9\n").find("a.csv:2: expected positive numbers") == 0);
  CHECK(error(header + "m,materialized,bf16,1,2,3,4,5,6\n").find("a.csv:2: expected 12 fields") == 0);
  CHECK(error("model,path,forward_ms\n").find("a.csv:1: expected the header model,path,dtype") == 0);
  CHECK(error(header).find("no measured kernels") != std::string::npos);
  CHECK(error("").find("empty") != std::string::npos);
}
