// Transcriptions of DeepSpeed's own model-state estimators, so that tests can
// show zeroplan's `deepspeed` accounting next to the numbers DeepSpeed users
// see, and docs/ can say where and why they differ. Source: deepspeedai/DeepSpeed
// deepspeed/runtime/zero/stage_1_and_2.py (estimate_zero2_model_states_mem_needs,
// after PR #5099, 2024) and stage3.py (estimate_zero3_model_states_mem_needs).
// Arithmetic follows the Python: float products truncated by int() at the end,
// int() inside where the Python has it. Results are bytes (DeepSpeed prints
// them divided by 2^30 and labels them "GB").
#pragma once

#include <cstdint>

namespace zp {

struct DeepSpeedEstimate {
  uint64_t cpu_bytes = 0;  // per node
  uint64_t gpu_bytes = 0;  // per GPU
  uint64_t largest_layer_bytes = 0;  // stage 3 only
};

DeepSpeedEstimate deepspeed_zero2_estimate(uint64_t total_params, uint64_t gpus_per_node, uint64_t nodes,
                                           bool cpu_offload, double additional_buffer_factor = 1.5);

DeepSpeedEstimate deepspeed_zero3_estimate(uint64_t total_params, uint64_t largest_layer_params,
                                           uint64_t gpus_per_node, uint64_t nodes, bool cpu_offload,
                                           bool cpu_offload_params, bool zero_init,
                                           double additional_buffer_factor = 1.5);

}  // namespace zp
