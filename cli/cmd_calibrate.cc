// `zeroplan calibrate`: fits the time model's GEMM efficiency curve to
// measured products (--gemm), its attention fields to the attention kernels
// timed alone (--attention), and its attention, HBM and launch fields to
// the compute phases a GPU validate run measured (--validate; the GEMM curve
// held, the one just fitted where --gemm is given too, and the attention
// fields too where --attention is given, and hbm_fraction where
// --elementwise is), its hbm_fraction to the memory-bound kernels timed alone
// (--elementwise), by least squares
// (costmodel/calibration.h); with --out, writes the GPU's efficiency file
// with the fitted fields (the other fields and the file's own notes kept,
// the source extended by what was fitted to what).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "cli/commands.h"
#include "cli/executor_run.h"
#include "cli/format.h"
#include "cli/plan_file.h"
#include "costmodel/attention_calibration.h"
#include "costmodel/calibration.h"
#include "costmodel/compute.h"
#include "costmodel/elementwise_calibration.h"
#include "models/catalog.h"
#include "models/input_error.h"
#include "models/json_file.h"

namespace zp {
namespace {

struct CalibrateOptions {
  std::string gpu, gemm_csv, attention_csv, elementwise_csv, validate, out;
};

// The time the compute fit compares: the rank's forward and backward phases.
constexpr const char* kComputePhase = "compute (forward + backward)";

// The compute phases of a validate.json from the GPU, each with the time
// model's terms for the rank that ran, rebuilt from the case's plan file
// under `curves`.
std::vector<ComputeSample> compute_samples(const std::string& path, const Catalog& catalog, const GpuSpec& gpu,
                                           const EfficiencyCurves& curves, int* skipped) {
  const Json doc = parse_json_file(path);
  JsonFields top(doc, path);
  if (top.string_or("schema", "") != "zeroplan.validate") throw InputError(path + ": expected a validate.json (schema zeroplan.validate)");
  if (top.string_or("backend", "") != "cuda") {
    throw InputError(path + ": field 'backend': measured on the " + top.string_or("backend", "?") +
                     " backend; the time model predicts the GPU (run `zeroplan validate --device cuda`)");
  }
  if (!doc.contains("cases") || !doc.at("cases").is_array()) throw InputError(path + ": field 'cases': expected an array");
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::vector<ComputeSample> out;
  *skipped = 0;
  int i = 0;
  for (const Json& c : doc.at("cases")) {
    const std::string where = path + ": cases[" + std::to_string(i++) + "]";
    if (!c.is_object() || !c.value("run", false) || !c.contains("plan_file") || !c.contains("step_time")) {
      ++*skipped;  // not run, or written before validate kept plan files
      continue;
    }
    if (c.value("gpu", "") != gpu.name) {
      throw InputError(where + ": field 'gpu': ran on " + c.value("gpu", "?") + ", not --gpu " + gpu.name);
    }
    const Json& t = c.at("step_time");
    const Json* measured = nullptr;
    if (t.is_object() && t.value("compared", false) && t.contains("phases") && t.at("phases").contains(kComputePhase)) {
      measured = &t.at("phases").at(kComputePhase);
    }
    if (!measured || !measured->contains("measured_s") || !measured->at("measured_s").is_number()) {
      throw InputError(where + ": field 'step_time': no compute phase measured on the GPU");
    }
    if (!c.at("plan_file").is_string()) throw InputError(where + ": field 'plan_file': expected a file name");
    if (!c.contains("pipeline_stage") || !c.at("pipeline_stage").is_number_unsigned()) {
      throw InputError(where + ": field 'pipeline_stage': expected a stage number");
    }
    const Job job = read_plan_job((dir / c.at("plan_file").get<std::string>()).string(), catalog);
    // As validate ran it: the executor's layout, the most loaded stage's rank.
    const Layout l = runnable_layout("calibrate", {job.model, job.layout}, true);
    const uint32_t stage = c.at("pipeline_stage").get<uint32_t>();
    if (stage >= l.pp) throw InputError(where + ": field 'pipeline_stage': the plan has " + std::to_string(l.pp) + " stages");
    const Network network{job.network.links, curves};
    ComputeSample s;
    s.name = c.value("name", where);
    s.measured_s = measured->at("measured_s").get<double>();
    if (!(s.measured_s > 0)) throw InputError(where + ": the measured compute time is not positive");
    s.terms = compute_terms({job.shape, l, job.cluster.gpu, job.cluster.node, network}, stage);
    out.push_back(s);
  }
  return out;
}

std::string us(double s) { return fixed(s * 1e6, 2) + " us"; }
std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}
std::string ms(double s) { return fixed(s * 1e3, 2); }
std::string signed_percent(double x) { return (x >= 0 ? "+" : "") + fixed(100 * x, 1) + "%"; }

// Fits the attention, HBM and launch fields to a validate run's compute
// phases, holding `curves`' GEMM fields; prints the fit and every case.
ComputeFit fit_compute(const CalibrateOptions& o, const Catalog& catalog, const GpuSpec& gpu, const EfficiencyCurves& curves) {
  int skipped = 0;
  const std::vector<ComputeSample> samples = compute_samples(o.validate, catalog, gpu, curves, &skipped);
  ComputeFit fit;
  try {
    fit = fit_compute_efficiency(samples, curves, {.attention = !o.attention_csv.empty(), .hbm = !o.elementwise_csv.empty()});
  } catch (const std::invalid_argument& e) {
    throw InputError("--validate " + o.validate + ": " + e.what());
  }
  std::cout << "\nAttention, HBM and launch fields of " << gpu.name << " fitted to " << samples.size()
            << " compute phases from " << o.validate << (skipped ? " (skipped " + std::to_string(skipped) + ": not run, or without a plan file)" : "")
            << ", the GEMM curve held at " << fixed(curves.gemm_peak_fraction, 3) << "/" << fixed(curves.gemm_half_dim, 1) << ":\n";
  TextTable t({"", "attention_peak_fraction", "flash_tc_fraction", "hbm_fraction", "kernel_overhead", "rms error", "worst"});
  t.add({"before", fixed(curves.attention_peak_fraction, 3), fixed(curves.flash_tc_fraction, 3),
         fixed(curves.hbm_fraction, 3), us(curves.kernel_overhead_s), fixed(100 * fit.rms_rel_error_before, 1) + "%", ""});
  t.add({"fitted", fixed(fit.curves.attention_peak_fraction, 3), fixed(fit.curves.flash_tc_fraction, 3),
         fixed(fit.curves.hbm_fraction, 3), us(fit.curves.kernel_overhead_s), fixed(100 * fit.rms_rel_error, 1) + "%",
         fixed(100 * fit.worst_rel_error, 1) + "%"});
  t.print(std::cout);
  if (!fit.given.empty()) std::cout << joined(fit.given) << ": held at the kernels measured alone (--attention, --elementwise)\n";
  if (!fit.absent.empty()) {
    std::cout << "no case runs the kernels of " << joined(fit.absent) << ": held at the file's value\n";
  }
  if (!fit.unphysical.empty()) std::cout << "not a GPU's values: " << fit.unphysical << "\n";
  if (!fit.held.empty()) {
    std::cout << "the fit of all fields is not a GPU's (" << fit.free_fit_unphysical << "): " << joined(fit.held)
              << " held at the file's value\n";
  }
  TextTable c({"case", "measured ms", "before ms", "error", "fitted ms", "error"});
  for (const ComputeSample& s : samples) {
    const double before = s.terms.seconds(curves), after = s.terms.seconds(fit.curves);
    c.add({s.name, ms(s.measured_s), ms(before), signed_percent(before / s.measured_s - 1), ms(after),
           signed_percent(after / s.measured_s - 1)});
  }
  c.print(std::cout);
  return fit;
}

std::string read_text(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) throw InputError(std::string(flag) + " " + path + ": cannot be read");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Fits the GEMM curve to --gemm's products; prints the fit and every product.
GemmFit fit_gemm(const CalibrateOptions& o, const GpuSpec& gpu, const EfficiencyCurves& start, const std::string& curves_file,
                 double* before) {
  const std::vector<GemmSample> samples = parse_gemm_samples(read_text(o.gemm_csv, "--gemm"), o.gemm_csv);
  const GemmDevice device{gpu.bf16_dense_flops, gpu.hbm_bytes_per_s, 2};
  const GemmFit fit = fit_gemm_efficiency(samples, device, start);
  *before = gemm_rms_log_error(samples, device, start);
  std::cout << "GEMM efficiency of " << gpu.name << " fitted to " << samples.size() << " bf16 products from "
            << o.gemm_csv << " (" << fit.iterations << " iterations" << (fit.converged ? "" : ", NOT converged")
            << "):\n";
  TextTable t({"", "gemm_peak_fraction", "gemm_half_dim", "rms log error", "worst"});
  t.add({"file (" + std::filesystem::path(curves_file).filename().string() + ")", fixed(start.gemm_peak_fraction, 3),
         fixed(start.gemm_half_dim, 1), fixed(*before, 3), ""});
  t.add({"fitted", fixed(fit.curves.gemm_peak_fraction, 3), fixed(fit.curves.gemm_half_dim, 1),
         fixed(fit.rms_log_error, 3), fixed(100 * fit.worst_rel_error, 1) + "%"});
  t.print(std::cout);
  TextTable s({"M", "N", "K", "measured TFLOP/s", "file's model", "fitted model"});
  const double hbm_before = device.hbm_bytes_per_s * start.hbm_fraction;
  const double hbm_after = device.hbm_bytes_per_s * fit.curves.hbm_fraction;
  for (const GemmSample& x : samples) {
    const double flops = 2 * x.m * x.n * x.k;
    auto rate = [&](double seconds) { return fixed(flops / seconds / 1e12, 0); };
    s.add({fixed(x.m, 0), fixed(x.n, 0), fixed(x.k, 0), rate(x.seconds),
           rate(gemm_seconds(x.m, x.n, x.k, device.peak_flops, hbm_before, 2, start)),
           rate(gemm_seconds(x.m, x.n, x.k, device.peak_flops, hbm_after, 2, fit.curves))});
  }
  s.print(std::cout);
  if (!o.out.empty() && !fit.converged) throw InputError("--gemm " + o.gemm_csv + ": the fit did not converge; nothing written");
  if (!o.out.empty() && fit.curves.gemm_peak_fraction > 1) {
    throw InputError("--gemm " + o.gemm_csv + ": the fitted peak fraction " + fixed(fit.curves.gemm_peak_fraction, 3) +
                     " exceeds 1 (are the rates TFLOP/s of bf16 products?); nothing written");
  }
  return fit;
}

// Fits the attention fields to --attention's kernels timed alone; prints the
// fit and every kernel.
AttentionFit fit_attention(const CalibrateOptions& o, const GpuSpec& gpu, const EfficiencyCurves& start) {
  const std::vector<AttentionSample> samples = parse_attention_samples(read_text(o.attention_csv, "--attention"), o.attention_csv);
  const AttentionFit fit = fit_attention_efficiency(samples, gpu, start);
  std::cout << "\nAttention fields of " << gpu.name << " fitted to " << samples.size() << " kernels from " << o.attention_csv
            << (fit.half_dim_held ? " (the warp kernels at one head size: flash_warp_half_dim held)" : "") << ":\n";
  TextTable t({"", "attention_peak_fraction", "flash_tc_fraction", "flash_warp_fraction", "flash_warp_half_dim",
               "rms error", "worst"});
  t.add({"before", fixed(start.attention_peak_fraction, 3), fixed(start.flash_tc_fraction, 3),
         fixed(start.flash_warp_fraction, 3), fixed(start.flash_warp_half_dim, 1),
         fixed(100 * fit.rms_rel_error_before, 1) + "%", ""});
  t.add({"fitted", fixed(fit.curves.attention_peak_fraction, 3), fixed(fit.curves.flash_tc_fraction, 3),
         fixed(fit.curves.flash_warp_fraction, 3), fixed(fit.curves.flash_warp_half_dim, 1),
         fixed(100 * fit.rms_rel_error, 1) + "%", fixed(100 * fit.worst_rel_error, 1) + "%"});
  t.print(std::cout);
  if (!fit.unphysical.empty()) std::cout << "not a GPU's values: " << fit.unphysical << "\n";
  TextTable c({"model", "path", "dtype", "hs", "measured TFLOP/s", "file's model", "fitted model"});
  for (const AttentionSample& s : samples) {
    auto rate = [&](double seconds) { return fixed(3 * s.forward_flops / seconds / 1e12, 1); };
    c.add({s.model, csv_path(s.kernel), to_string(s.precision), fixed(s.head_dim, 0), rate(s.forward_s + s.backward_s),
           rate(attention_sample_seconds(s, gpu, start)), rate(attention_sample_seconds(s, gpu, fit.curves))});
  }
  c.print(std::cout);
  std::cout << "(TFLOP/s of the counted FLOPs, every position, forward + backward, launches included)\n";
  if (!o.out.empty() && !fit.unphysical.empty()) {
    throw InputError("--attention " + o.attention_csv + ": " + fit.unphysical + "; nothing written");
  }
  return fit;
}

// Fits hbm_fraction to --elementwise's kernels timed alone; prints the fit
// and every kernel.
ElementwiseFit fit_elementwise(const CalibrateOptions& o, const GpuSpec& gpu, const EfficiencyCurves& start) {
  const ElementwiseMeasurement m = parse_elementwise_samples(read_text(o.elementwise_csv, "--elementwise"), o.elementwise_csv);
  ElementwiseFit fit;
  try {
    fit = fit_hbm_fraction(m, gpu.hbm_bytes_per_s, start);
  } catch (const std::invalid_argument& e) {
    throw InputError("--elementwise " + o.elementwise_csv + ": " + e.what());
  }
  std::cout << "\nhbm_fraction of " << gpu.name << " (" << fixed(gpu.hbm_bytes_per_s / 1e9, 0) << " GB/s) fitted to "
            << fit.fitted_rows << " one-launch kernels from " << o.elementwise_csv << " (" << fit.checked_rows
            << " more checked); the device copy there reached " << fixed(fit.copy_fraction, 3) << " of it:\n";
  TextTable t({"", "hbm_fraction", "fixed per call", "rms error", "worst"});
  t.add({"before", fixed(start.hbm_fraction, 3), us(start.kernel_overhead_s) + " (kernel_overhead)",
         fixed(100 * fit.rms_rel_error_before, 1) + "%", ""});
  t.add({"fitted", fixed(fit.hbm_fraction, 3),
         us(fit.fixed_s) + (fit.fixed_held_at_zero ? " (a free fit went negative)" : " (not written)"),
         fixed(100 * fit.rms_rel_error, 1) + "%", fixed(100 * fit.worst_rel_error, 1) + "%"});
  t.print(std::cout);
  if (!fit.unphysical.empty()) std::cout << "not a GPU's value: " << fit.unphysical << "\n";
  TextTable c({"kernel", "dtype", "launches", "measured GB/s", "file's model", "fitted model", ""});
  for (const ElementwiseSample& s : m.samples) {
    auto rate = [&](double seconds) { return fixed(s.bytes / seconds / 1e9, 0); };
    c.add({s.kernel, s.dtype, std::to_string(s.launches), rate(s.seconds),
           rate(elementwise_sample_seconds(s, gpu.hbm_bytes_per_s, start.hbm_fraction, start.kernel_overhead_s)),
           rate(elementwise_sample_seconds(s, gpu.hbm_bytes_per_s, fit.hbm_fraction, fit.fixed_s)),
           s.launches == 1 ? "fitted" : "check"});
  }
  c.print(std::cout);
  std::cout << "(GB/s of the bytes each kernel reads and writes, as the time model counts them)\n";
  if (!o.out.empty() && !fit.unphysical.empty()) {
    throw InputError("--elementwise " + o.elementwise_csv + ": " + fit.unphysical + "; nothing written");
  }
  return fit;
}

void calibrate(const CalibrateOptions& o, const GlobalOptions& global) {
  if (o.gemm_csv.empty() && o.attention_csv.empty() && o.elementwise_csv.empty() && o.validate.empty()) {
    throw InputError("calibrate: give --gemm FILE.csv, --attention FILE.csv, --elementwise FILE.csv, --validate validate.json or several");
  }
  const Catalog catalog = Catalog::load(global.catalog_dirs);
  const GpuSpec& gpu = catalog.gpu(o.gpu);
  if (gpu.bf16_dense_flops <= 0) throw InputError("--gpu " + o.gpu + ": has no bf16 peak to fit bf16 GEMMs against");
  const std::string curves_file = efficiency_file(Catalog::builtin_data_dir(), gpu.name);
  EfficiencyCurves curves = load_efficiency(Catalog::builtin_data_dir(), gpu.name);
  Json j = parse_json_file(curves_file);
  std::string source = j.value("source", std::string());
  if (!o.gemm_csv.empty()) {
    double before = 0;
    const GemmFit fit = fit_gemm(o, gpu, curves, curves_file, &before);
    curves = fit.curves;
    j["gemm_peak_fraction"] = std::round(curves.gemm_peak_fraction * 1e4) / 1e4;
    j["gemm_half_dim"] = std::round(curves.gemm_half_dim * 10) / 10;
    source += " GEMM fields fitted by `zeroplan calibrate` to the products of " +
              std::filesystem::path(o.gemm_csv).filename().string() + " (rms log error of the times " + fixed(before, 3) +
              " -> " + fixed(fit.rms_log_error, 3) + ").";
  }
  if (!o.attention_csv.empty()) {
    const AttentionFit fit = fit_attention(o, gpu, curves);
    curves = fit.curves;
    std::vector<std::string> fields;
    for (const auto& [field, value] : fit.fitted) {
      j[field] = std::round(value * 1e4) / 1e4;
      fields.push_back(field);
    }
    source += " " + joined(fields) + " fitted by `zeroplan calibrate` to the attention kernels of " +
              std::filesystem::path(o.attention_csv).filename().string() + " (rms error " +
              fixed(100 * fit.rms_rel_error_before, 1) + "% -> " + fixed(100 * fit.rms_rel_error, 1) + "%).";
  }
  if (!o.elementwise_csv.empty()) {
    const ElementwiseFit fit = fit_elementwise(o, gpu, curves);
    curves.hbm_fraction = fit.hbm_fraction;
    j["hbm_fraction"] = std::round(fit.hbm_fraction * 1e4) / 1e4;
    source += " hbm_fraction fitted by `zeroplan calibrate` to the memory-bound kernels of " +
              std::filesystem::path(o.elementwise_csv).filename().string() + " (rms error " +
              fixed(100 * fit.rms_rel_error_before, 1) + "% -> " + fixed(100 * fit.rms_rel_error, 1) + "%).";
  }
  if (!o.validate.empty()) {
    const ComputeFit fit = fit_compute(o, catalog, gpu, curves);
    if (!o.out.empty() && !fit.unphysical.empty()) {
      throw InputError("--validate " + o.validate + ": " + fit.unphysical + "; nothing written");
    }
    j["attention_peak_fraction"] = std::round(fit.curves.attention_peak_fraction * 1e4) / 1e4;
    j["flash_tc_fraction"] = std::round(fit.curves.flash_tc_fraction * 1e4) / 1e4;
    j["hbm_fraction"] = std::round(fit.curves.hbm_fraction * 1e4) / 1e4;
    j["kernel_overhead_us"] = std::round(fit.curves.kernel_overhead_s * 1e8) / 1e2;
    std::string held;
    for (const std::string& h : fit.given) held += ", " + h + " held (measured alone)";
    for (const std::string& h : fit.absent) held += ", " + h + " held (no case runs its kernels)";
    for (const std::string& h : fit.held) held += ", " + h + " held";
    source += " Attention, HBM and launch fields fitted by `zeroplan calibrate` to the compute phases of " +
              o.validate + " (rms error " + fixed(100 * fit.rms_rel_error_before, 1) + "% -> " +
              fixed(100 * fit.rms_rel_error, 1) + "%" + held + ").";
  }
  if (o.out.empty()) return;
  j["gpu"] = gpu.name;
  j["source"] = source;
  write_atomically(o.out, j.dump(2) + "\n");
  std::cout << "wrote " << o.out << "\n";
}

}  // namespace

void add_calibrate_command(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("calibrate", "Fit the time model's efficiency curves to measured products and compute phases");
  cmd->footer(
      "Example: zeroplan calibrate --gpu H200-141GB --gemm models/data/measurements/h200-141gb_gemm.csv\n"
      "         zeroplan calibrate --gpu H200-141GB --gemm sweep.csv --attention attention.csv --elementwise elementwise.csv \\\n"
      "           --validate gpu_validate/validate.json --out h200.json\n"
      "--gemm's CSV holds m,n,k,tflops per bf16 product (bench/gpu_gemm_sweep writes it on a GPU), --attention's\n"
      "one row per attention kernel and shape (bench/gpu_attention_bench writes it), --elementwise's one row per\n"
      "memory-bound kernel (bench/gpu_elementwise_bench writes it).");
  auto o = std::make_shared<CalibrateOptions>();
  cmd->add_option("--gpu", o->gpu, "GPU name from `zeroplan gpus`")->required();
  cmd->add_option("--gemm", o->gemm_csv, "CSV of measured products: m,n,k,tflops");
  cmd->add_option("--attention", o->attention_csv,
                  "CSV of the attention kernels timed alone (bench/gpu_attention_bench): fit the attention fields to it");
  cmd->add_option("--elementwise", o->elementwise_csv,
                  "CSV of the memory-bound kernels timed alone (bench/gpu_elementwise_bench): fit hbm_fraction to it");
  cmd->add_option("--validate", o->validate,
                  "validate.json of a GPU run (`validate --device cuda`): fit attention, HBM and launch fields to its compute phases");
  cmd->add_option("--out", o->out, "Write the efficiency file with the fitted GEMM fields here");
  cmd->callback([o, &global]() { calibrate(*o, global); });
}

}  // namespace zp
