#include "costmodel/efficiency.h"

#include <filesystem>

#include "models/input_error.h"
#include "models/json_file.h"
#include "models/name_suggest.h"

namespace zp {

std::string efficiency_file(const std::string& data_dir, const std::string& gpu_name) {
  namespace fs = std::filesystem;
  const fs::path own = fs::path(data_dir) / "efficiency" / (to_lower(gpu_name) + ".json");
  std::error_code ec;
  return (fs::exists(own, ec) ? own : fs::path(data_dir) / "efficiency" / "generic.json").string();
}

EfficiencyCurves load_efficiency(const std::string& data_dir, const std::string& gpu_name) {
  const std::string file = efficiency_file(data_dir, gpu_name);
  const Json j = parse_json_file(file);
  JsonFields f(j, file);
  f.reject_unknown({"gpu", "source", "notes", "gemm_peak_fraction", "gemm_half_dim", "attention_peak_fraction",
                    "flash_tc_fraction", "flash_warp_fraction", "flash_warp_half_dim", "hbm_fraction", "nvlink_busbw_fraction", "nic_busbw_fraction", "pcie_fraction",
                    "nvlink_latency_us", "nic_latency_us", "kernel_overhead_us", "cpu_adam_s_per_billion_params",
                    "cpu_accumulate_s_per_billion_params"});
  EfficiencyCurves e;
  e.gpu = f.string_or("gpu", "");
  e.source = f.string("source");
  auto fraction = [&](const char* name, double fallback) {
    const double v = f.number_or(name, fallback);
    if (v <= 0 || v > 1) throw InputError(f.where(name) + ": expected a fraction in (0, 1], got " + std::to_string(v));
    return v;
  };
  e.gemm_peak_fraction = fraction("gemm_peak_fraction", e.gemm_peak_fraction);
  e.gemm_half_dim = f.number_or("gemm_half_dim", e.gemm_half_dim);
  e.attention_peak_fraction = fraction("attention_peak_fraction", e.attention_peak_fraction);
  e.flash_tc_fraction = fraction("flash_tc_fraction", e.flash_tc_fraction);
  e.flash_warp_fraction = fraction("flash_warp_fraction", e.flash_warp_fraction);
  e.flash_warp_half_dim = f.number_or("flash_warp_half_dim", e.flash_warp_half_dim);
  if (e.flash_warp_half_dim < 0) {
    throw InputError(f.where("flash_warp_half_dim") + ": expected a head size of 0 or more, got " +
                     std::to_string(e.flash_warp_half_dim));
  }
  e.hbm_fraction = fraction("hbm_fraction", e.hbm_fraction);
  e.nvlink_busbw_fraction = fraction("nvlink_busbw_fraction", e.nvlink_busbw_fraction);
  e.nic_busbw_fraction = fraction("nic_busbw_fraction", e.nic_busbw_fraction);
  e.pcie_fraction = fraction("pcie_fraction", e.pcie_fraction);
  e.nvlink_latency_s = f.number_or("nvlink_latency_us", e.nvlink_latency_s * 1e6) * 1e-6;
  e.nic_latency_s = f.number_or("nic_latency_us", e.nic_latency_s * 1e6) * 1e-6;
  e.kernel_overhead_s = f.number_or("kernel_overhead_us", e.kernel_overhead_s * 1e6) * 1e-6;
  e.cpu_adam_s_per_param = f.number_or("cpu_adam_s_per_billion_params", e.cpu_adam_s_per_param * 1e9) * 1e-9;
  e.cpu_accumulate_s_per_param =
      f.number_or("cpu_accumulate_s_per_billion_params", e.cpu_accumulate_s_per_param * 1e9) * 1e-9;
  return e;
}

}  // namespace zp
