// GPU and node specifications (the hardware catalog), loaded from JSON files
// in models/data/gpus and models/data/nodes or from a user's own files.
// Bandwidths are stored per direction in bytes per second; the JSON files keep
// the datasheet's own numbers and units (GB/s = 1e9 bytes/s, bidirectional
// where the datasheet says so) and the loader converts, so each number can be
// checked against its cited source.
#pragma once

#include <cstdint>
#include <string>

#include "models/json_file.h"

namespace zp {

struct GpuSpec {
  std::string name;
  std::string vendor;
  uint64_t memory_bytes = 0;         // device memory capacity
  double bf16_dense_flops = 0;       // per second, dense tensor-core peak; 0 = unsupported
  double fp16_dense_flops = 0;
  double fp32_flops = 0;             // non-tensor FP32 peak
  double hbm_bytes_per_s = 0;
  double nvlink_bytes_per_s = 0;     // per direction, per GPU; 0 = none
  double pcie_bytes_per_s = 0;       // per direction
  std::string default_node;          // node preset used when none is given
  std::string source;
};

struct NodeSpec {
  std::string name;
  std::string gpu;                   // GpuSpec name
  uint64_t gpus_per_node = 0;
  bool nvswitch = false;             // all-to-all NVLink at full per-GPU bandwidth
  uint64_t nics_per_node = 0;
  double nic_bytes_per_s = 0;        // per NIC, per direction
  uint64_t host_memory_bytes = 0;
  uint64_t nvme_bytes = 0;
  double nvme_read_bytes_per_s = 0;  // aggregate per node
  double nvme_write_bytes_per_s = 0;
  double host_memory_bytes_per_s = 0;
  uint64_t cpu_cores = 0;
  std::string source;
};

GpuSpec gpu_from_json(const Json& j, const std::string& origin);
NodeSpec node_from_json(const Json& j, const std::string& origin);

}  // namespace zp
