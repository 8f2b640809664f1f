// `zeroplan calibrate`: fits the time model's GEMM efficiency curve to
// measured products (costmodel/calibration.h) and, with --out, writes the
// GPU's efficiency file with the two fitted fields (the other fields and the
// file's own notes kept, the source extended by what was fitted to what).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/executor_run.h"
#include "cli/format.h"
#include "costmodel/calibration.h"
#include "costmodel/compute.h"
#include "models/catalog.h"
#include "models/input_error.h"
#include "models/json_file.h"

namespace zp {
namespace {

struct CalibrateOptions {
  std::string gpu, gemm_csv, out;
};

std::string read_text(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) throw InputError(std::string(flag) + " " + path + ": cannot be read");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void calibrate(const CalibrateOptions& o, const GlobalOptions& global) {
  const Catalog catalog = Catalog::load(global.catalog_dirs);
  const GpuSpec& gpu = catalog.gpu(o.gpu);
  if (gpu.bf16_dense_flops <= 0) throw InputError("--gpu " + o.gpu + ": has no bf16 peak to fit bf16 GEMMs against");
  const std::vector<GemmSample> samples = parse_gemm_samples(read_text(o.gemm_csv, "--gemm"), o.gemm_csv);
  const std::string curves_file = efficiency_file(Catalog::builtin_data_dir(), gpu.name);
  const EfficiencyCurves start = load_efficiency(Catalog::builtin_data_dir(), gpu.name);
  const GemmDevice device{gpu.bf16_dense_flops, gpu.hbm_bytes_per_s, 2};
  const GemmFit fit = fit_gemm_efficiency(samples, device, start);
  const double before = gemm_rms_log_error(samples, device, start);

  std::cout << "GEMM efficiency of " << gpu.name << " fitted to " << samples.size() << " bf16 products from "
            << o.gemm_csv << " (" << fit.iterations << " iterations" << (fit.converged ? "" : ", NOT converged")
            << "):\n";
  TextTable t({"", "gemm_peak_fraction", "gemm_half_dim", "rms log error", "worst"});
  t.add({"file (" + std::filesystem::path(curves_file).filename().string() + ")", fixed(start.gemm_peak_fraction, 3),
         fixed(start.gemm_half_dim, 1), fixed(before, 3), ""});
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
  if (o.out.empty()) return;
  if (!fit.converged) throw InputError("--gemm " + o.gemm_csv + ": the fit did not converge; nothing written");
  if (fit.curves.gemm_peak_fraction > 1) {
    throw InputError("--gemm " + o.gemm_csv + ": the fitted peak fraction " + fixed(fit.curves.gemm_peak_fraction, 3) +
                     " exceeds 1 (are the rates TFLOP/s of bf16 products?); nothing written");
  }
  Json j = parse_json_file(curves_file);
  j["gpu"] = gpu.name;
  j["gemm_peak_fraction"] = std::round(fit.curves.gemm_peak_fraction * 1e4) / 1e4;
  j["gemm_half_dim"] = std::round(fit.curves.gemm_half_dim * 10) / 10;
  j["source"] = j.value("source", std::string()) + " GEMM fields fitted by `zeroplan calibrate` to the " +
                std::to_string(samples.size()) + " products of " + std::filesystem::path(o.gemm_csv).filename().string() +
                " (rms log error of the times " + fixed(before, 3) + " -> " + fixed(fit.rms_log_error, 3) + ").";
  write_atomically(o.out, j.dump(2) + "\n");
  std::cout << "wrote " << o.out << "\n";
}

}  // namespace

void add_calibrate_command(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("calibrate", "Fit the time model's GEMM efficiency curve to measured products");
  cmd->footer(
      "Example: zeroplan calibrate --gpu H200-141GB --gemm models/data/measurements/h200-141gb_gemm.csv\n"
      "The CSV holds m,n,k,tflops per bf16 product (bench/gpu_gemm_sweep writes it on a GPU).");
  auto o = std::make_shared<CalibrateOptions>();
  cmd->add_option("--gpu", o->gpu, "GPU name from `zeroplan gpus`")->required();
  cmd->add_option("--gemm", o->gemm_csv, "CSV of measured products: m,n,k,tflops")->required();
  cmd->add_option("--out", o->out, "Write the efficiency file with the fitted GEMM fields here");
  cmd->callback([o, &global]() { calibrate(*o, global); });
}

}  // namespace zp
