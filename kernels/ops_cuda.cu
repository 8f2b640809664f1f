// The kernels of kernels/ops_cuda.h. The formulas are those of the CPU
// reference kernels (executor/ops_cpu.h, ops_llama_cpu.h), in fp32 whatever
// the storage type. Row kernels use one block per row with a shared-memory
// reduction; weight gradients as deterministic column sums (cuda_common.cuh).
#include "kernels/ops_cuda.h"

#include "kernels/cuda_common.cuh"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace zp::cuda {
namespace {

template <class D>
__global__ void layernorm_forward_kernel(D* out, float* mean, float* rstd, const D* inp, const D* w, const D* b, int C) {
  const size_t row = blockIdx.x;
  const D* x = inp + row * C;
  float s = 0;
  for (int c = threadIdx.x; c < C; c += kBlock) s += to_f(x[c]);
  const float m = block_sum(s) / C;
  float v = 0;
  for (int c = threadIdx.x; c < C; c += kBlock) v += (to_f(x[c]) - m) * (to_f(x[c]) - m);
  const float r = 1.0f / sqrtf(block_sum(v) / C + 1e-5f);
  for (int c = threadIdx.x; c < C; c += kBlock) {
    out[row * C + c] = from_f<D>((r * (to_f(x[c]) - m)) * to_f(w[c]) + to_f(b[c]));
  }
  if (threadIdx.x == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

template <class D>
__global__ void layernorm_backward_input_kernel(D* dinp, const D* dout, const D* inp, const D* w, const float* mean,
                                                const float* rstd, int C) {
  const size_t row = blockIdx.x;
  const D* x = inp + row * C;
  const D* d = dout + row * C;
  float a = 0, b = 0;
  for (int c = threadIdx.x; c < C; c += kBlock) {
    const float norm = (to_f(x[c]) - mean[row]) * rstd[row];
    const float dnorm = to_f(w[c]) * to_f(d[c]);
    a += dnorm;
    b += dnorm * norm;
  }
  const float dnorm_mean = block_sum(a) / C, dnorm_norm_mean = block_sum(b) / C;
  for (int c = threadIdx.x; c < C; c += kBlock) {
    const float norm = (to_f(x[c]) - mean[row]) * rstd[row];
    const float dnorm = to_f(w[c]) * to_f(d[c]);
    D& dx = dinp[row * C + c];
    dx = from_f<D>(to_f(dx) + (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rstd[row]);
  }
}

// The norms' weight (and bias) gradients: sums over the rows (column_sums).
template <class D>
struct LayerNormParamGradients {
  static constexpr int K = 2;
  D *dweight, *dbias;
  const D *dout, *inp;
  const float *mean, *rstd;
  int C;
  __device__ void values(size_t i, int c, float* v) const {
    const size_t k = i * C + c;
    const float g = to_f(dout[k]);
    v[0] = (to_f(inp[k]) - mean[i]) * rstd[i] * g;
    v[1] = g;
  }
  __device__ void store(int c, const float* sums) const {
    dweight[c] = from_f<D>(to_f(dweight[c]) + sums[0]);
    dbias[c] = from_f<D>(to_f(dbias[c]) + sums[1]);
  }
};

template <class D>
__global__ void rmsnorm_forward_kernel(D* out, float* rstd, const D* inp, const D* w, int C) {
  const size_t row = blockIdx.x;
  const D* x = inp + row * C;
  float ss = 0;
  for (int c = threadIdx.x; c < C; c += kBlock) ss += to_f(x[c]) * to_f(x[c]);
  const float r = 1.0f / sqrtf(block_sum(ss) / C + 1e-5f);
  for (int c = threadIdx.x; c < C; c += kBlock) out[row * C + c] = from_f<D>(to_f(x[c]) * r * to_f(w[c]));
  if (threadIdx.x == 0) rstd[row] = r;
}

template <class D>
__global__ void rmsnorm_backward_input_kernel(D* dinp, const D* dout, const D* inp, const D* w, const float* rstd, int C) {
  const size_t row = blockIdx.x;
  const D* x = inp + row * C;
  const D* d = dout + row * C;
  float dot = 0;
  for (int c = threadIdx.x; c < C; c += kBlock) dot += to_f(w[c]) * to_f(d[c]) * to_f(x[c]);
  dot = block_sum(dot);
  const float r = rstd[row];
  for (int c = threadIdx.x; c < C; c += kBlock) {
    D& dx = dinp[row * C + c];
    dx = from_f<D>(to_f(dx) + r * to_f(w[c]) * to_f(d[c]) - to_f(x[c]) * r * r * r * dot / C);
  }
}

template <class D>
struct RmsNormParamGradients {
  static constexpr int K = 1;
  D* dweight;
  const D *dout, *inp;
  const float* rstd;
  int C;
  __device__ void values(size_t i, int c, float* v) const {
    const size_t k = i * C + c;
    v[0] = to_f(inp[k]) * rstd[i] * to_f(dout[k]);
  }
  __device__ void store(int c, const float* sums) const { dweight[c] = from_f<D>(to_f(dweight[c]) + sums[0]); }
};

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)

template <class D>
__global__ void gelu_forward_kernel(D* out, const D* inp, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = to_f(inp[i]);
    out[i] = from_f<D>(0.5f * x * (1.0f + tanhf(kGeluScale * (x + 0.044715f * x * x * x))));
  }
}

template <class D>
__global__ void gelu_backward_kernel(D* dinp, const D* inp, const D* dout, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = to_f(inp[i]);
    const float th = tanhf(kGeluScale * (x + 0.044715f * x * x * x));
    const float sech2 = 1.0f - th * th;
    const float grad = 0.5f * (1.0f + th) + x * 0.5f * sech2 * kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = from_f<D>(to_f(dinp[i]) + grad * to_f(dout[i]));
  }
}

template <class D>
__global__ void swiglu_forward_kernel(D* out, const D* gate, const D* up, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = to_f(gate[i]);
    out[i] = from_f<D>(g / (1.0f + expf(-g)) * to_f(up[i]));
  }
}

template <class D>
__global__ void swiglu_backward_kernel(D* dgate, D* dup, const D* dout, const D* gate, const D* up, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = to_f(gate[i]), u = to_f(up[i]), d = to_f(dout[i]);
    const float s = 1.0f / (1.0f + expf(-g));
    dup[i] = from_f<D>(to_f(dup[i]) + d * g * s);
    dgate[i] = from_f<D>(to_f(dgate[i]) + d * u * s * (1.0f + g * (1.0f - s)));
  }
}

template <class From, class To>
__global__ void cast_kernel(To* out, const From* in, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = from_f<To>(to_f(in[i]));
  }
}

template <class G>
__global__ void adamw_kernel(float* master, __nv_bfloat16* low, const G* grads, float scale, float* m, float* v, size_t n,
                             float c1, float c2, float lr, float beta1, float beta2, float eps, float wd) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = to_f(grads[i]) * scale;
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    const float mh = m[i] / c1, vh = v[i] / c2;
    master[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * master[i]);
    if (low) low[i] = __float2bfloat16(master[i]);
  }
}


}  // namespace

template <class T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C) {
  launch_kernel(layernorm_forward_kernel<device_t<T>>, N, kBlock, 0, dev(out), mean, rstd, dev(inp), dev(weight), dev(bias), C);
  check_launch("layernorm_forward");
}

template <class T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const float* mean,
                        const float* rstd, int N, int C, Scratch scratch) {
  launch_kernel(layernorm_backward_input_kernel<device_t<T>>, N, kBlock, 0, dev(dinp), dev(dout), dev(inp), dev(weight), mean, rstd, C);
  check_launch("layernorm_backward (input)");
  column_sums(LayerNormParamGradients<device_t<T>>{dev(dweight), dev(dbias), dev(dout), dev(inp), mean, rstd, C}, N, C,
              "layernorm_backward (weights)", scratch);
}

template <class T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C) {
  launch_kernel(rmsnorm_forward_kernel<device_t<T>>, N, kBlock, 0, dev(out), rstd, dev(inp), dev(weight), C);
  check_launch("rmsnorm_forward");
}

template <class T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const float* rstd, int N, int C,
                     Scratch scratch) {
  launch_kernel(rmsnorm_backward_input_kernel<device_t<T>>, N, kBlock, 0, dev(dinp), dev(dout), dev(inp), dev(weight), rstd, C);
  check_launch("rmsnorm_backward (input)");
  column_sums(RmsNormParamGradients<device_t<T>>{dev(dweight), dev(dout), dev(inp), rstd, C}, N, C,
              "rmsnorm_backward (weights)", scratch);
}

template <class T>
void gelu_forward(T* out, const T* inp, size_t n) {
  launch_kernel(gelu_forward_kernel<device_t<T>>, blocks_for(n), kBlock, 0, dev(out), dev(inp), n);
  check_launch("gelu_forward");
}

template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n) {
  launch_kernel(gelu_backward_kernel<device_t<T>>, blocks_for(n), kBlock, 0, dev(dinp), dev(inp), dev(dout), n);
  check_launch("gelu_backward");
}

template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t n) {
  launch_kernel(swiglu_forward_kernel<device_t<T>>, blocks_for(n), kBlock, 0, dev(out), dev(gate), dev(up), n);
  check_launch("swiglu_forward");
}

template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n) {
  launch_kernel(swiglu_backward_kernel<device_t<T>>, blocks_for(n), kBlock, 0, dev(dgate), dev(dup), dev(dout), dev(gate), dev(up), n);
  check_launch("swiglu_backward");
}

void cast(Bf16* out, const float* in, size_t n) {
  launch_kernel(cast_kernel<float, __nv_bfloat16>, blocks_for(n), kBlock, 0, dev(out), in, n);
  check_launch("cast fp32 -> bf16");
}

void cast(float* out, const Bf16* in, size_t n) {
  launch_kernel(cast_kernel<__nv_bfloat16, float>, blocks_for(n), kBlock, 0, out, dev(in), n);
  check_launch("cast bf16 -> fp32");
}

template <class G>
void adamw_step(float* master, Bf16* low, const G* grads, float grad_scale, float* m, float* v, size_t n, int step, float lr,
                float beta1, float beta2, float eps, float weight_decay) {
  const float c1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float c2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  launch_kernel(adamw_kernel<device_t<G>>, blocks_for(n), kBlock, 0, master, dev(low), dev(grads), grad_scale, m, v, n, c1, c2, lr, beta1, beta2, eps,
                                          weight_decay);
  check_launch("adamw_step");
}

#define ZP_CUDA_OPS(T)                                                                                                  \
  template void layernorm_forward<T>(T*, float*, float*, const T*, const T*, const T*, int, int);                       \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const float*, const float*, int, int,  \
                                      Scratch);                                                                    \
  template void rmsnorm_forward<T>(T*, float*, const T*, const T*, int, int);                                           \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const float*, int, int, Scratch);              \
  template void gelu_forward<T>(T*, const T*, size_t);                                                                  \
  template void gelu_backward<T>(T*, const T*, const T*, size_t);                                                       \
  template void swiglu_forward<T>(T*, const T*, const T*, size_t);                                                      \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, size_t);                                       \
  template void adamw_step<T>(float*, Bf16*, const T*, float, float*, float*, size_t, int, float, float, float, float, float);
ZP_CUDA_OPS(float)
ZP_CUDA_OPS(Bf16)
#undef ZP_CUDA_OPS

}  // namespace zp::cuda
