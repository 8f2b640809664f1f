// What zeroplan's executor zeroes of its gradients in a step (the other
// frameworks' costs are theirs: PyTorch's zero_grad(set_to_none=True) frees
// the gradients and the first backward writes them). Its backward kernels
// add into the weight gradients, llm.c's convention, so before a step adds
// anything the buffers it adds into are zeroed:
//  - ZeRO-0/1: the model's whole gradient buffer, once a step
//    (executor/data_parallel.cc begin_step);
//  - ZeRO-2/3: the rank's gradient partition once a step (on the host when
//    the optimizer is offloaded), and each unit's full-size bucket every
//    micro-batch, inside backward, before its first gradient lands; a unit
//    the pipeline holds to the step's end (the tied embedding with pp > 1)
//    is zeroed once (executor/zero_units.cc gradients, zero_gradients).
// (Padded tails of partitions, a few elements a unit, are left out.)
// Byte counts, per rank; each buffer is one memset (a launch on a GPU).
// tests/executor_memory_test.cc holds them to what the executor zeroes.
#pragma once

#include "costmodel/layout.h"

namespace zp {

struct GradientZeroing {
  double step_device_bytes = 0, step_device_launches = 0;        // outside forward and backward
  double backward_device_bytes = 0, backward_device_launches = 0;  // ZeRO-2/3's buckets, inside backward
  double step_host_bytes = 0;                                     // the offloaded fp32 partition (ZeRO-2/3)
};

// `params`: the rank's parameters (its stage's, after tensor parallelism),
// `units` of them (the executor's units: layers, embedding, final); of those
// `held_params` in one unit held to the step's end (0 for none);
// `grad_bytes`: the working gradients' element size.
GradientZeroing gradient_zeroing(const Layout& l, double params, double units, double held_params, double grad_bytes);

}  // namespace zp
