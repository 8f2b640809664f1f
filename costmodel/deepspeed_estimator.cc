#include "costmodel/deepspeed_estimator.h"

#include <algorithm>

namespace zp {
namespace {

// Python int() of a non-negative float.
uint64_t py_int(double v) { return static_cast<uint64_t>(v); }

}  // namespace

DeepSpeedEstimate deepspeed_zero2_estimate(uint64_t total_params, uint64_t gpus_per_node, uint64_t nodes,
                                           bool cpu_offload, double factor) {
  const double p = static_cast<double>(total_params);
  const uint64_t total_gpus = nodes * gpus_per_node;
  DeepSpeedEstimate e;
  if (cpu_offload) {
    e.gpu_bytes = 2 * total_params;
    // max(4 * total_gpus, 16): grows with the total GPU count, not the node's
    // (a known mistake, see docs/memory-model.md).
    e.cpu_bytes = py_int(p * static_cast<double>(std::max<uint64_t>(4 * total_gpus, 16)) * factor);
  } else {
    e.gpu_bytes = 2 * total_params + py_int(18.0 * p / static_cast<double>(total_gpus));
    e.cpu_bytes = py_int(p * 4.0 * static_cast<double>(gpus_per_node) * factor);
  }
  return e;
}

DeepSpeedEstimate deepspeed_zero3_estimate(uint64_t total_params, uint64_t largest_layer_params,
                                           uint64_t gpus_per_node, uint64_t nodes, bool cpu_offload,
                                           bool cpu_offload_params, bool zero_init, double factor) {
  const double p = static_cast<double>(total_params);
  const double g = static_cast<double>(gpus_per_node);
  const double total_gpus = static_cast<double>(nodes * gpus_per_node);
  const double gpus_factor = 1.0 / static_cast<double>(nodes);
  DeepSpeedEstimate e;
  e.largest_layer_bytes = 4 * largest_layer_params;
  if (cpu_offload) {
    if (cpu_offload_params) {
      e.gpu_bytes = e.largest_layer_bytes;
      e.cpu_bytes = zero_init ? py_int(p * 18.0 * gpus_factor * factor)
                              : py_int(p * std::max(4.0 * g, 18.0 * gpus_factor) * factor);
    } else {
      e.gpu_bytes = e.largest_layer_bytes + py_int(2.0 * p / total_gpus);
      e.cpu_bytes = zero_init ? py_int(p * 16.0 * gpus_factor * factor)
                              : py_int(p * std::max(4.0 * g, 16.0 * gpus_factor) * factor);
    }
  } else {
    e.gpu_bytes = e.largest_layer_bytes + py_int(18.0 * p / total_gpus);
    e.cpu_bytes = zero_init ? py_int(static_cast<double>(largest_layer_params) * 4.0 * g * factor)
                            : py_int(p * 4.0 * g * factor);
  }
  return e;
}

}  // namespace zp
