// Fitting the GEMM efficiency curve (costmodel/calibration.h): a known curve
// is recovered from its own samples (with noise), bad CSV is a one-line
// error naming the line, and on the H200 measurements the least-squares fit
// is at least as close as the hand-set curve it replaces. The compute-phase
// fit: the linearised terms reproduce the time model under other curves, and
// known attention, HBM and launch values are recovered from compute times
// the time model made with them. hbm_fraction from the memory-bound kernels
// timed alone (bench/gpu_elementwise_bench's CSV).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "costmodel/calibration.h"
#include "costmodel/compute.h"
#include "costmodel/efficiency.h"
#include "costmodel/elementwise_calibration.h"
#include "costmodel/layout_check.h"
#include "models/input_error.h"
#include "test_support.h"

using namespace zp;

namespace {

// The one-line message `parse` throws as InputError, or "no error".
template <class Parse>
std::string input_error(Parse parse) {
  try {
    parse();
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

// The H200's numbers for the GEMM model: dense bf16 peak, HBM bandwidth.
GemmDevice h200() {
  const GpuSpec& g = test::catalog().gpu("H200-141GB");
  return {g.bf16_dense_flops, g.hbm_bytes_per_s, 2};
}

// A validate-like matrix on the H200: GPT-2 and Llama shapes, materialised
// and flash attention, recompute, tensor parallelism (its rank's share).
struct RankCase {
  std::string name;
  ModelShape model;
  Layout layout;
  Cluster cluster;
  Network network;
  TimeInputs inputs() const { return {model, layout, cluster.gpu, cluster.node, network}; }
};

std::vector<RankCase> rank_cases() {
  struct Spec {
    const char* model;
    uint32_t mb, tp;
    Attention attention;
    Recompute recompute;
  };
  const Spec specs[] = {{"gpt2-124m", 8, 1, Attention::Materialized, Recompute::None},
                        {"gpt2-355m", 4, 1, Attention::Flash, Recompute::None},
                        {"gpt2-774m", 4, 1, Attention::Materialized, Recompute::Selective},
                        {"gpt2-1.5b", 8, 1, Attention::Materialized, Recompute::None},
                        {"gpt2-1.5b", 2, 1, Attention::Flash, Recompute::Full},
                        {"gpt2-774m", 4, 2, Attention::Materialized, Recompute::None},
                        {"llama-2-7b", 1, 2, Attention::Flash, Recompute::None}};
  std::vector<RankCase> out;
  for (const Spec& s : specs) {
    RankCase c;
    c.name = std::string(s.model) + " mb" + std::to_string(s.mb) + " tp" + std::to_string(s.tp);
    c.model = make_shape(test::catalog().resolve_model(s.model));
    c.layout.tp = s.tp;
    c.layout.micro_batch = s.mb;
    c.layout.seq_len = 1024;
    c.layout.attention = s.attention;
    c.layout.recompute = s.recompute;
    c.cluster = make_cluster(test::catalog(), "H200-141GB", "", s.tp);
    c.network = make_network(c.cluster, Catalog::builtin_data_dir());
    REQUIRE(check_layout(c.model, c.layout, make_cluster_shape(c.cluster), s.tp).empty());
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

TEST_CASE("compute calibration: the linearised terms are the time model's under other curves") {
  for (const RankCase& c : rank_cases()) {
    CAPTURE(c.name);
    const ComputeTerms t = compute_terms(c.inputs(), 0);
    // One attention term, that of the kernel the case runs: cuBLAS's
    // products beside the softmax, or zeroplan's tensor-core flash tiles.
    if (c.layout.attention == Attention::Materialized) {
      CHECK(t.attention_s > 0);
      CHECK(t.flash_tc_s == 0);
    } else {
      CHECK(t.attention_s == 0);
      CHECK(t.flash_tc_s > 0);
    }
    CHECK(t.elementwise_s > 0);
    CHECK(t.kernels > 100);  // several kernels a layer, 12+ layers
    CHECK(t.fixed_s > 0);
    CHECK(t.seconds(c.network.eff) == doctest::Approx(rank_compute_s(c.inputs(), c.network.eff, 0)).epsilon(1e-9));
    EfficiencyCurves other = c.network.eff;
    other.attention_peak_fraction *= 0.7;
    other.flash_tc_fraction *= 0.6;
    other.hbm_fraction *= 0.85;
    other.kernel_overhead_s *= 2;
    // Linear but for thin GEMMs turning memory-bound at the lower bandwidth.
    CHECK(t.seconds(other) == doctest::Approx(rank_compute_s(c.inputs(), other, 0)).epsilon(0.01));
  }
}

TEST_CASE("compute calibration: known attention, HBM and launch values are recovered from the time model's times") {
  const std::vector<RankCase> cases = rank_cases();
  EfficiencyCurves truth = cases[0].network.eff;
  truth.attention_peak_fraction = 0.42;
  truth.flash_tc_fraction = 0.3;
  truth.hbm_fraction = 0.66;
  truth.kernel_overhead_s = 6e-6;
  std::vector<ComputeSample> samples;
  for (const RankCase& c : cases) samples.push_back({c.name, rank_compute_s(c.inputs(), truth, 0), compute_terms(c.inputs(), 0)});
  const ComputeFit f = fit_compute_efficiency(samples, cases[0].network.eff, {});
  CHECK(f.unphysical.empty());
  CHECK(f.absent.empty());
  CHECK(f.curves.attention_peak_fraction == doctest::Approx(0.42).epsilon(0.03));
  CHECK(f.curves.flash_tc_fraction == doctest::Approx(0.3).epsilon(0.03));
  CHECK(f.curves.hbm_fraction == doctest::Approx(0.66).epsilon(0.03));
  CHECK(f.curves.kernel_overhead_s == doctest::Approx(6e-6).epsilon(0.05));
  CHECK(f.curves.gemm_peak_fraction == truth.gemm_peak_fraction);  // held
  CHECK(f.rms_rel_error < 0.005);
  CHECK(f.rms_rel_error < f.rms_rel_error_before);
  // The attention fields measured alone (costmodel/attention_calibration.h):
  // held, and HBM and launch fitted from the same cases.
  EfficiencyCurves measured = cases[0].network.eff;
  measured.attention_peak_fraction = 0.42;
  measured.flash_tc_fraction = 0.3;
  const ComputeFit given = fit_compute_efficiency(samples, measured, {.attention = true});
  CHECK(given.given == std::vector<std::string>{"attention_peak_fraction", "flash_tc_fraction"});
  CHECK(given.curves.attention_peak_fraction == 0.42);
  CHECK(given.curves.flash_tc_fraction == 0.3);
  CHECK(given.curves.hbm_fraction == doctest::Approx(0.66).epsilon(1e-3));
  CHECK(given.curves.kernel_overhead_s == doctest::Approx(6e-6).epsilon(1e-3));
  // hbm_fraction measured alone too (costmodel/elementwise_calibration.h):
  // only the launch overhead is left to fit; with a wrong held value the
  // cases' errors say so.
  measured.hbm_fraction = 0.66;
  const ComputeFit all = fit_compute_efficiency(samples, measured, {.attention = true, .hbm = true});
  CHECK(all.given == std::vector<std::string>{"attention_peak_fraction", "flash_tc_fraction", "hbm_fraction"});
  CHECK(all.curves.hbm_fraction == 0.66);
  CHECK(all.curves.kernel_overhead_s == doctest::Approx(6e-6).epsilon(1e-3));
  measured.hbm_fraction = 0.9;
  CHECK(fit_compute_efficiency(samples, measured, {.attention = true, .hbm = true}).rms_rel_error > 10 * all.rms_rel_error);
  // 3% timing noise: still near, and the errors say how near.
  std::mt19937 rng(5);
  std::normal_distribution<double> noise(0.0, 0.03);
  std::vector<ComputeSample> noisy = samples;
  for (ComputeSample& s : noisy) s.measured_s *= std::exp(noise(rng));
  const ComputeFit g = fit_compute_efficiency(noisy, cases[0].network.eff, {});
  MESSAGE("3% noise: attention " << g.curves.attention_peak_fraction << ", flash tiles " << g.curves.flash_tc_fraction
                                 << (g.held.empty() ? "" : ", held " + g.held[0]) << ", HBM " << g.curves.hbm_fraction << ", launch "
                                 << g.curves.kernel_overhead_s * 1e6 << " us; rms " << g.rms_rel_error << " (before "
                                 << g.rms_rel_error_before << ")");
  CHECK(g.curves.hbm_fraction == doctest::Approx(0.66).epsilon(0.15));
  CHECK(g.rms_rel_error < 0.05);
  // Times no GPU could give: faster than the peaks allow.
  std::vector<ComputeSample> fast = samples;
  for (ComputeSample& s : fast) s.measured_s = s.terms.fixed_s * 1.01;
  CHECK_FALSE(fit_compute_efficiency(fast, truth, {}).unphysical.empty());
  // Attention faster than the peak (1/f below 1) with the rest a GPU's: the
  // free fit is refused, attention is held at the start's value and the
  // other two are fitted.
  std::vector<ComputeSample> quick = samples;
  for (ComputeSample& s : quick) s.measured_s -= s.terms.attention_s * (1 / 0.42 - 0.8);
  const ComputeFit h = fit_compute_efficiency(quick, cases[0].network.eff, {});
  MESSAGE("attention beyond the peak: held " << (h.held.empty() ? "nothing" : h.held[0]) << ", HBM " << h.curves.hbm_fraction
                                            << ", launch " << h.curves.kernel_overhead_s * 1e6 << " us; rms " << h.rms_rel_error);
  CHECK(h.unphysical.empty());
  CHECK_FALSE(h.free_fit_unphysical.empty());
  REQUIRE(h.held.size() == 1);
  CHECK(h.held[0] == "attention_peak_fraction");
  CHECK(h.curves.attention_peak_fraction == cases[0].network.eff.attention_peak_fraction);
  CHECK(h.curves.hbm_fraction <= 1);
  CHECK(h.curves.kernel_overhead_s >= 0);
  // One case five times cannot separate four fields; four cases are too few.
  CHECK_THROWS_AS(fit_compute_efficiency({samples[0], samples[0], samples[0], samples[0], samples[0]}, truth, {}),
                  std::invalid_argument);
  CHECK_THROWS_AS(fit_compute_efficiency({samples[0], samples[1], samples[2], samples[3]}, truth, {}), std::invalid_argument);
  // Without a flash case the tiles' field is no case's: it stays at the
  // start's value, and the other three are fitted from four cases.
  std::vector<ComputeSample> materialized;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].layout.attention == Attention::Materialized) materialized.push_back(samples[i]);
  }
  REQUIRE(materialized.size() == 4);
  const ComputeFit m = fit_compute_efficiency(materialized, cases[0].network.eff, {});
  REQUIRE(m.absent.size() == 1);
  CHECK(m.absent[0] == "flash_tc_fraction");
  CHECK(m.curves.flash_tc_fraction == cases[0].network.eff.flash_tc_fraction);
  CHECK(m.curves.attention_peak_fraction == doctest::Approx(0.42).epsilon(0.03));
  CHECK(m.curves.hbm_fraction == doctest::Approx(0.66).epsilon(0.03));
}

TEST_CASE("calibration: a known GEMM curve is recovered from noisy timings made with it") {
  const GemmDevice d = h200();
  EfficiencyCurves truth = load_efficiency(Catalog::builtin_data_dir(), "H200-141GB");
  truth.gemm_peak_fraction = 0.78;
  truth.gemm_half_dim = 170;
  std::mt19937 rng(3);
  std::normal_distribution<double> noise(0.0, 0.01);  // 1% timing noise
  std::vector<GemmSample> s;
  for (double m : {256.0, 1024.0, 4096.0})
    for (double n : {128.0, 768.0, 4096.0})
      for (double k : {64.0, 1024.0, 8192.0}) {
        const double t = gemm_seconds(m, n, k, d.peak_flops, d.hbm_bytes_per_s * truth.hbm_fraction, 2, truth);
        s.push_back({m, n, k, t * std::exp(noise(rng))});
      }
  EfficiencyCurves start = truth;
  start.gemm_peak_fraction = 0.5;
  start.gemm_half_dim = 500;
  const GemmFit f = fit_gemm_efficiency(s, d, start);
  CHECK(f.converged);
  CHECK(f.curves.gemm_peak_fraction == doctest::Approx(0.78).epsilon(0.02));
  CHECK(f.curves.gemm_half_dim == doctest::Approx(170).epsilon(0.05));
  CHECK(f.rms_log_error < 0.015);
  CHECK(f.curves.kernel_overhead_s == truth.kernel_overhead_s);  // held
  // Without noise, exact.
  for (GemmSample& x : s) x.seconds = gemm_seconds(x.m, x.n, x.k, d.peak_flops, d.hbm_bytes_per_s * truth.hbm_fraction, 2, truth);
  const GemmFit exact = fit_gemm_efficiency(s, d, start);
  CHECK(exact.curves.gemm_peak_fraction == doctest::Approx(0.78).epsilon(1e-5));
  CHECK(exact.curves.gemm_half_dim == doctest::Approx(170).epsilon(1e-5));
  CHECK_THROWS_AS(fit_gemm_efficiency({s[0]}, d, start), std::invalid_argument);
}

TEST_CASE("calibration: GEMM sample CSV, and one-line errors naming the line") {
  const std::vector<GemmSample> s = parse_gemm_samples("# comment\nm,n,k,tflops\n1024, 768, 768, 96\n4096,4096,4096,780 # x\n", "f.csv");
  REQUIRE(s.size() == 2);
  CHECK(s[1].seconds == doctest::Approx(2.0 * 4096 * 4096 * 4096 / 780e12));
  auto error = [](const std::string& text) { return input_error([&] { parse_gemm_samples(text, "f.csv"); }); };
  CHECK(error("m,n,k\n1,2,3\n") == "f.csv:1: expected the header m,n,k,tflops, got 'm,n,k'");
  CHECK(error("m,n,k,tflops\n1,2,3,4\n1,2,x,4\n") == "f.csv:3: expected four positive numbers m,n,k,tflops, got '1,2,x,4'");
  CHECK(error("m,n,k,tflops\n1,2,3,4,5\n1,2,3,4\n").find("f.csv:2:") == 0);
  CHECK(error("m,n,k,tflops\n1,2,3,-4\n1,2,3,4\n").find("f.csv:2:") == 0);
  CHECK(error("m,n,k,tflops\n1,2,3,4\n").find("at least two") != std::string::npos);
  CHECK(error("").find("empty") != std::string::npos);
  // Positive numbers that time nothing (the rate underflows the time) or no product has: the line, not the fit.
  const std::string nothing = "f.csv:3: '8192,14336,4096,1e308': expected dimensions below 2^31 and a rate that gives a time";
  CHECK(error("m,n,k,tflops\n1024,768,768,96\n8192,14336,4096,1e308\n") == nothing);
  CHECK(error("m,n,k,tflops\n1024,768,768,96\n16384,1e308,768,553\n").find("f.csv:3: ") == 0);
}

TEST_CASE("calibration: on the H200's measured cuBLAS GEMMs the fit beats the hand-set curve") {
  const std::string file = std::string(Catalog::builtin_data_dir()) + "/measurements/h200-141gb_gemm.csv";
  std::ifstream in(file);
  REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  const std::vector<GemmSample> s = parse_gemm_samples(text.str(), file);
  CHECK(s.size() == 48);
  const EfficiencyCurves file_curves = load_efficiency(Catalog::builtin_data_dir(), "H200-141GB");
  const GemmFit f = fit_gemm_efficiency(s, h200(), file_curves);
  const double file_error = gemm_rms_log_error(s, h200(), file_curves);
  MESSAGE("H200 GEMMs: fitted peak fraction " << f.curves.gemm_peak_fraction << ", half dim " << f.curves.gemm_half_dim
                                              << ": rms log error of the times " << f.rms_log_error << " (worst "
                                              << f.worst_rel_error << ") against the file's "
                                              << file_curves.gemm_peak_fraction << "/" << file_curves.gemm_half_dim
                                              << ": " << file_error);
  CHECK(f.converged);
  CHECK(f.rms_log_error <= file_error + 1e-12);
  CHECK(f.rms_log_error == doctest::Approx(gemm_rms_log_error(s, h200(), f.curves)));
}

// The host's rates are data like the curves: a file may set them, and a
// field the loader does not know is refused with its name.
TEST_CASE("efficiency files: the host optimizer's rates are read; an unknown field is one line") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "zp_efficiency_test";
  std::filesystem::create_directories(dir / "efficiency");
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "efficiency" / "generic.json") << text;
  };
  write(R"({"source": "test", "cpu_adam_s_per_billion_params": 0.5, "cpu_accumulate_s_per_billion_params": 0.125})");
  const EfficiencyCurves e = load_efficiency(dir.string(), "no-such-gpu");
  CHECK(e.cpu_adam_s_per_param == doctest::Approx(0.5e-9));
  CHECK(e.cpu_accumulate_s_per_param == doctest::Approx(0.125e-9));
  write(R"({"source": "test", "cpu_accumulate_s_per_billion_param": 0.125})");
  try {
    load_efficiency(dir.string(), "no-such-gpu");
    FAIL("an unknown field was accepted");
  } catch (const InputError& err) {
    const std::string what = err.what();
    CHECK(what.find("cpu_accumulate_s_per_billion_param") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

namespace {

// bench/gpu_elementwise_bench's CSV for rows timed as `bytes / (f x HBM) +
// launches x fixed`, the copy first, times in ms.
std::string elementwise_csv(double f, double fixed_s, double noise, double norm_backward_scale = 1) {
  const double hbm = test::catalog().gpu("H200-141GB").hbm_bytes_per_s;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> jitter(1 - noise, 1 + noise);
  std::ostringstream csv;
  csv << "kernel,dtype,elements,bytes,ms,GBps,of_copy\n";
  csv << "copy,bytes,268435456,2147483648," << 2147483648.0 / (0.89 * hbm) * 1e3 << ",4272,1.000\n";
  struct Row {
    const char* kernel;
    double bytes;
    int launches;
  };
  const double rows = 8192.0 * 1600 * 2, wide = 8192.0 * 6400 * 2;
  for (const Row& r : {Row{"layernorm_forward", 2 * rows, 1}, Row{"layernorm_backward", 6 * rows, 3},
                       Row{"residual_add", 3 * rows, 1}, Row{"residual_backward", 5 * rows, 1},
                       Row{"gelu_forward", 2 * wide, 1}, Row{"gelu_backward", 3 * wide, 1},
                       Row{"adamw_bf16_grads", 28.0 * (1 << 28), 1}}) {
    double t = r.bytes / (f * hbm) + r.launches * fixed_s;
    if (r.launches > 1) t *= norm_backward_scale;
    csv << r.kernel << ",bf16,1," << r.bytes << "," << t * jitter(rng) * 1e3 << ",0,0\n";
  }
  return csv.str();
}

}  // namespace

TEST_CASE("hbm_fraction from the memory-bound kernels timed alone: recovered, the norms' backward checked, bad rows refused") {
  const double hbm = test::catalog().gpu("H200-141GB").hbm_bytes_per_s;
  EfficiencyCurves start;
  start.hbm_fraction = 0.85;
  const ElementwiseMeasurement exact = parse_elementwise_samples(elementwise_csv(0.72, 4e-6, 0), "exact.csv");
  REQUIRE(exact.samples.size() == 7);
  CHECK(exact.copy_bytes_per_s == doctest::Approx(0.89 * hbm).epsilon(1e-3));
  CHECK(exact.samples[1].launches == 3);  // layernorm_backward: row kernel + two column-sum passes
  const ElementwiseFit fit = fit_hbm_fraction(exact, hbm, start);
  CHECK(fit.unphysical.empty());
  CHECK(fit.fitted_rows == 6);
  CHECK(fit.checked_rows == 1);
  CHECK(fit.hbm_fraction == doctest::Approx(0.72).epsilon(1e-4));
  CHECK(fit.fixed_s == doctest::Approx(4e-6).epsilon(1e-3));
  CHECK(fit.rms_rel_error < 1e-4);
  CHECK(fit.rms_rel_error < fit.rms_rel_error_before);
  CHECK(fit.copy_fraction == doctest::Approx(0.89).epsilon(1e-3));
  // The norm backward's row is a check, not fitted: a slower one moves nothing.
  const ElementwiseFit slow_norms = fit_hbm_fraction(parse_elementwise_samples(elementwise_csv(0.72, 4e-6, 0, 1.5), "slow.csv"), hbm, start);
  CHECK(slow_norms.hbm_fraction == doctest::Approx(fit.hbm_fraction).epsilon(1e-9));
  // 3% timing noise.
  const ElementwiseFit noisy = fit_hbm_fraction(parse_elementwise_samples(elementwise_csv(0.72, 4e-6, 0.03), "noisy.csv"), hbm, start);
  CHECK(noisy.hbm_fraction == doctest::Approx(0.72).epsilon(0.05));
  CHECK(noisy.rms_rel_error < 0.03);
  // No fixed time in the rows and noise: a negative intercept is held at zero.
  const ElementwiseFit through_zero = fit_hbm_fraction(parse_elementwise_samples(elementwise_csv(0.5, 0, 0.03), "zero.csv"), hbm, start);
  CHECK(through_zero.fixed_s >= 0);
  CHECK(through_zero.hbm_fraction == doctest::Approx(0.5).epsilon(0.05));
  // Rates no GPU has (the host emulator's) are reported as such.
  CHECK_FALSE(fit_hbm_fraction(parse_elementwise_samples(elementwise_csv(0.001, 4e-5, 0), "slow.csv"), hbm, start).unphysical.empty());
  // Bad input: a one-line message naming the file, the line and the field.
  auto message = [](const std::string& text) { return input_error([&] { parse_elementwise_samples(text, "e.csv"); }); };
  const std::string header = "kernel,dtype,elements,bytes,ms,GBps,of_copy\n";
  CHECK(message(header + "fused_mystery,bf16,1,100,0.1,1,0\n").find("e.csv:2: field 'kernel': expected copy or one of") == 0);
  CHECK(message(header + "residual_add,bf16,1,100,-0.1,1,0\n").find("e.csv:2") == 0);
  CHECK(message(header + "copy,bytes,1,100,0.1,1,1\n").find("e.csv: no measured kernels") == 0);
  CHECK(message("m,n,k,tflops\n1,2,3,4\n").find("e.csv") == 0);
  // One kernel size cannot separate the slope from the fixed time.
  CHECK_THROWS_AS(fit_hbm_fraction(parse_elementwise_samples(header + "residual_add,bf16,1,100,0.1,1,0\nresidual_backward,bf16,1,100,0.1,1,0\n", "e.csv"), hbm, start),
                  std::invalid_argument);
}
