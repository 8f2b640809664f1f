#include "models/hardware.h"

#include <cmath>

#include "models/input_error.h"

namespace zp {
namespace {

constexpr double kGB = 1e9;      // datasheet GB/s
constexpr double kTFLOPS = 1e12;

uint64_t bytes_field(const JsonFields& f, const char* bytes_field, const char* gib_field,
                     const char* gb_field) {
  // Capacities may be given as exact bytes, GiB (2^30) or GB (1e9): one of them.
  int given = f.has(bytes_field) + f.has(gib_field) + f.has(gb_field);
  if (given != 1) {
    throw InputError(f.where(bytes_field) + ": give exactly one of " + bytes_field + ", " + gib_field +
                     " (2^30 bytes) or " + gb_field + " (1e9 bytes)");
  }
  if (f.has(bytes_field)) return f.positive(bytes_field);
  double v = f.has(gib_field) ? f.positive_number(gib_field) * 1073741824.0
                              : f.positive_number(gb_field) * 1e9;
  if (v >= 1.8e19) throw InputError(f.where(f.has(gib_field) ? gib_field : gb_field) + ": too large for 64-bit bytes");
  return static_cast<uint64_t>(std::llround(v));
}

// Bytes from a number of `unit` bytes, refused past 64 bits.
uint64_t bytes_of(const JsonFields& f, const char* field, double v, double unit) {
  if (v * unit >= 1.8e19) throw InputError(f.where(field) + ": too large for 64-bit bytes");
  return static_cast<uint64_t>(std::llround(v * unit));
}

}  // namespace

GpuSpec gpu_from_json(const Json& j, const std::string& origin) {
  JsonFields f(j, origin);
  f.reject_unknown({"name", "vendor", "memory_bytes", "memory_GiB", "memory_GB", "bf16_dense_tflops",
                    "fp16_dense_tflops", "fp32_tflops", "hbm_GBps", "nvlink_GBps_bidirectional",
                    "pcie_GBps_per_direction", "default_node", "source", "notes"});
  GpuSpec g;
  g.name = f.string("name");
  g.vendor = f.string_or("vendor", "");
  g.memory_bytes = bytes_field(f, "memory_bytes", "memory_GiB", "memory_GB");
  g.bf16_dense_flops = f.number_or("bf16_dense_tflops", 0) * kTFLOPS;
  g.fp16_dense_flops = f.positive_number("fp16_dense_tflops") * kTFLOPS;
  g.fp32_flops = f.positive_number("fp32_tflops") * kTFLOPS;
  g.hbm_bytes_per_s = f.positive_number("hbm_GBps") * kGB;
  g.nvlink_bytes_per_s = f.number_or("nvlink_GBps_bidirectional", 0) * kGB / 2;
  g.pcie_bytes_per_s = f.positive_number("pcie_GBps_per_direction") * kGB;
  g.default_node = f.string_or("default_node", "");
  g.source = f.string("source");
  return g;
}

NodeSpec node_from_json(const Json& j, const std::string& origin) {
  JsonFields f(j, origin);
  f.reject_unknown({"name", "gpu", "gpus_per_node", "nvswitch", "nics_per_node", "nic_Gbps",
                    "host_memory_bytes", "host_memory_GiB", "host_memory_GB", "nvme_bytes", "nvme_GiB",
                    "nvme_TB", "nvme_read_GBps", "nvme_write_GBps", "host_memory_GBps", "cpu_cores",
                    "source", "notes"});
  NodeSpec n;
  n.name = f.string("name");
  n.gpu = f.string("gpu");
  // Counts held to what real machines have (the largest NVLink domain sold
  // holds 576 GPUs), so a typo cannot make a loop over the node's GPUs run for ever.
  n.gpus_per_node = f.positive_at_most("gpus_per_node", 1024);
  n.nvswitch = f.boolean_or("nvswitch", false);
  n.nics_per_node = f.positive_at_most("nics_per_node", 1024);
  n.nic_bytes_per_s = f.positive_number("nic_Gbps") * 1e9 / 8;  // NICs are rated in Gb/s
  n.host_memory_bytes = bytes_field(f, "host_memory_bytes", "host_memory_GiB", "host_memory_GB");
  if (f.has("nvme_TB")) {
    n.nvme_bytes = bytes_of(f, "nvme_TB", f.positive_number("nvme_TB"), 1e12);
  } else {
    n.nvme_bytes = f.has("nvme_bytes") ? f.positive("nvme_bytes")
                                       : bytes_of(f, "nvme_GiB", f.number_or("nvme_GiB", 0), 1073741824.0);
  }
  n.nvme_read_bytes_per_s = f.number_or("nvme_read_GBps", 0) * kGB;
  n.nvme_write_bytes_per_s = f.number_or("nvme_write_GBps", 0) * kGB;
  n.host_memory_bytes_per_s = f.number_or("host_memory_GBps", 0) * kGB;
  n.cpu_cores = f.positive_at_most("cpu_cores", 1 << 20, 1);
  n.source = f.string("source");
  return n;
}

}  // namespace zp
