// AdamW (Loshchilov & Hutter 2019: decoupled weight decay, bias-corrected
// moments) on flat fp32 parameters and moments. The gradients may be fp32 or
// bf16 (mixed precision: the optimizer reads the bf16 gradient and updates
// the fp32 master copy, Micikevicius et al. 2018 Sec. 3.1); `grad_scale`
// multiplies each gradient first (the mean over ranks and micro-batches).
#pragma once

#include <cmath>
#include <cstddef>

#include "executor/scalar.h"

namespace zp {

struct AdamConfig {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
};

// Element-wise host loops of at least this many elements run on every core
// (OpenMP, where the build has it): an offloaded optimizer's partition
// (ZeRO-Offload's CPU Adam is multi-threaded, DeepSpeed csrc/adam/cpu_adam.cpp).
// Each element's result does not depend on the split, so the result is the
// same bit for bit; smaller loops (the tests' tiny models, many MPI ranks on
// few cores) start no threads.
inline constexpr size_t kHostParallelElems = size_t{1} << 18;

template <class G>
void adamw_step(float* params, const G* grads, float grad_scale, float* m, float* v, size_t n, int step,
                const AdamConfig& a) {
  const float c1 = 1.0f - std::pow(a.beta1, static_cast<float>(step));
  const float c2 = 1.0f - std::pow(a.beta2, static_cast<float>(step));
#pragma omp parallel for simd schedule(static) if (parallel : n >= kHostParallelElems)
  for (size_t i = 0; i < n; ++i) {
    const float g = widen(grads[i]) * grad_scale;
    m[i] = a.beta1 * m[i] + (1 - a.beta1) * g;
    v[i] = a.beta2 * v[i] + (1 - a.beta2) * g * g;
    const float mh = m[i] / c1, vh = v[i] / c2;
    params[i] -= a.lr * (mh / (std::sqrt(vh) + a.eps) + a.weight_decay * params[i]);
  }
}

}  // namespace zp
