// CUDA kernels of the executor's elementwise and normalisation operations
// (issue 7), the device counterparts of executor/ops_cpu.h and
// ops_llama_cpu.h: LayerNorm and RMSNorm forward and backward, GELU and
// SwiGLU forward and backward, the fp32 <-> bf16 casts and the fused AdamW
// step of mixed precision. Every pointer is device memory; T is float or
// Bf16 (bf16 storage, fp32 arithmetic, one rounding per stored value, as the
// CPU backend's bf16 path). Norm statistics are fp32. The norms' backward
// kernels add to their outputs, the activations' write them, as the CPU
// kernels do; weight gradients are summed over the
// rows as column sums in a fixed order (deterministic). Every launch is checked: a
// failure throws std::runtime_error naming the kernel and CUDA's message.
// Matrix products and attention come with the cuBLASLt backend; these are
// checked against the CPU kernels by tests/cuda_ops_test.cc where a GPU is.
#pragma once

#include <cstddef>
#include <cstdint>

namespace zp::cuda {

// A bf16 value's bits, host side (the kernels read them as __nv_bfloat16).
struct Bf16 {
  uint16_t bits;
};

// Device memory a kernel may use for intermediate sums: the caller's, so it
// comes from the caching allocator under a cost-model tag and the
// measurement shows it (the executor lends the cuBLASLt workspace, which is
// idle between products on the same stream). Empty: the kernel does without.
struct Scratch {
  void* data = nullptr;
  size_t bytes = 0;
};

template <class T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C);
template <class T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const float* mean,
                        const float* rstd, int N, int C, Scratch scratch = {});
template <class T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C);
template <class T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const float* rstd, int N, int C,
                     Scratch scratch = {});
template <class T>
void gelu_forward(T* out, const T* inp, size_t n);
// The activations' backward write their input gradients (one producer each), not add to them.
template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n);
template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t n);
template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n);

void cast(Bf16* out, const float* in, size_t n);
void cast(float* out, const Bf16* in, size_t n);

// AdamW on fp32 master weights from gradients of type G (multiplied by
// grad_scale first); when `low` is not null the updated weights are also
// rounded into it (the bf16 model's copy). Bias correction by `step` (from 1).
template <class G>
void adamw_step(float* master, Bf16* low, const G* grads, float grad_scale, float* m, float* v, size_t n, int step,
                float lr, float beta1, float beta2, float eps, float weight_decay);

}  // namespace zp::cuda
