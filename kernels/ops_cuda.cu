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

// The row kernels take E consecutive elements of a row a step: E = kPack
// (16-byte accesses) where the row's width is a multiple of it and every
// array is aligned (row_packs), else 1. A row is read again in each pass,
// from L1: 3.2 KB at GPT-2 XL's 1,600 columns in bf16.
template <int E, class D>
__global__ void layernorm_forward_kernel(D* out, float* mean, float* rstd, const D* inp, const D* w, const D* b, int C) {
  const size_t row = blockIdx.x;
  const D* x = inp + row * C;
  const int first = static_cast<int>(threadIdx.x) * E, step = kBlock * E;
  float s = 0;
  for (int c = first; c < C; c += step) {
    const Floats<E> xv = load<E>(x + c);
    for (int e = 0; e < E; ++e) s += xv.v[e];
  }
  const float m = block_sum(s) / C;
  float v = 0;
  for (int c = first; c < C; c += step) {
    const Floats<E> xv = load<E>(x + c);
    for (int e = 0; e < E; ++e) v += (xv.v[e] - m) * (xv.v[e] - m);
  }
  const float r = 1.0f / sqrtf(block_sum(v) / C + 1e-5f);
  for (int c = first; c < C; c += step) {
    Floats<E> y = load<E>(x + c);
    const Floats<E> wv = load<E>(w + c), bv = load<E>(b + c);
    for (int e = 0; e < E; ++e) y.v[e] = (r * (y.v[e] - m)) * wv.v[e] + bv.v[e];
    store<E>(out + row * C + c, y);
  }
  if (threadIdx.x == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

template <int E, class D>
__global__ void layernorm_backward_input_kernel(D* dinp, const D* dout, const D* inp, const D* w, const float* mean,
                                                const float* rstd, int C) {
  const size_t row = blockIdx.x;
  const D* x = inp + row * C;
  const D* d = dout + row * C;
  const float m = mean[row], r = rstd[row];
  const int first = static_cast<int>(threadIdx.x) * E, step = kBlock * E;
  float a = 0, b = 0;
  for (int c = first; c < C; c += step) {
    const Floats<E> xv = load<E>(x + c), wv = load<E>(w + c), dv = load<E>(d + c);
    for (int e = 0; e < E; ++e) {
      const float dnorm = wv.v[e] * dv.v[e];
      a += dnorm;
      b += dnorm * (xv.v[e] - m) * r;
    }
  }
  const float dnorm_mean = block_sum(a) / C, dnorm_norm_mean = block_sum(b) / C;
  for (int c = first; c < C; c += step) {
    const Floats<E> xv = load<E>(x + c), wv = load<E>(w + c), dv = load<E>(d + c);
    Floats<E> dx = load<E>(dinp + row * C + c);
    for (int e = 0; e < E; ++e) {
      const float norm = (xv.v[e] - m) * r, dnorm = wv.v[e] * dv.v[e];
      dx.v[e] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * r;
    }
    store<E>(dinp + row * C + c, dx);
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

template <int E, class D>
__global__ void rmsnorm_forward_kernel(D* out, float* rstd, const D* inp, const D* w, int C) {
  const size_t row = blockIdx.x;
  const D* x = inp + row * C;
  const int first = static_cast<int>(threadIdx.x) * E, step = kBlock * E;
  float ss = 0;
  for (int c = first; c < C; c += step) {
    const Floats<E> xv = load<E>(x + c);
    for (int e = 0; e < E; ++e) ss += xv.v[e] * xv.v[e];
  }
  const float r = 1.0f / sqrtf(block_sum(ss) / C + 1e-5f);
  for (int c = first; c < C; c += step) {
    Floats<E> y = load<E>(x + c);
    const Floats<E> wv = load<E>(w + c);
    for (int e = 0; e < E; ++e) y.v[e] = y.v[e] * r * wv.v[e];
    store<E>(out + row * C + c, y);
  }
  if (threadIdx.x == 0) rstd[row] = r;
}

template <int E, class D>
__global__ void rmsnorm_backward_input_kernel(D* dinp, const D* dout, const D* inp, const D* w, const float* rstd, int C) {
  const size_t row = blockIdx.x;
  const D* x = inp + row * C;
  const D* d = dout + row * C;
  const int first = static_cast<int>(threadIdx.x) * E, step = kBlock * E;
  float dot = 0;
  for (int c = first; c < C; c += step) {
    const Floats<E> xv = load<E>(x + c), wv = load<E>(w + c), dv = load<E>(d + c);
    for (int e = 0; e < E; ++e) dot += wv.v[e] * dv.v[e] * xv.v[e];
  }
  dot = block_sum(dot);
  const float r = rstd[row];
  for (int c = first; c < C; c += step) {
    const Floats<E> xv = load<E>(x + c), wv = load<E>(w + c), dv = load<E>(d + c);
    Floats<E> dx = load<E>(dinp + row * C + c);
    for (int e = 0; e < E; ++e) dx.v[e] += r * wv.v[e] * dv.v[e] - xv.v[e] * r * r * r * dot / C;
    store<E>(dinp + row * C + c, dx);
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

// The pointwise kernels as steps of E elements (cuda_common.cuh's
// pointwise: 16-byte packs where every array is aligned).
template <class D>
struct GeluForward {
  D* out;
  const D* inp;
  template <int E>
  __device__ void step(size_t i) const {
    Floats<E> x = load<E>(inp + i);
    for (int e = 0; e < E; ++e) {
      const float v = x.v[e];
      x.v[e] = 0.5f * v * (1.0f + tanhf(kGeluScale * (v + 0.044715f * v * v * v)));
    }
    store<E>(out + i, x);
  }
};

template <class D>
struct GeluBackward {
  D* dinp;
  const D *inp, *dout;
  template <int E>
  __device__ void step(size_t i) const {
    const Floats<E> x = load<E>(inp + i), d = load<E>(dout + i);
    Floats<E> dx;  // written, not added to (the input gradient has one producer)
    for (int e = 0; e < E; ++e) {
      const float v = x.v[e];
      const float th = tanhf(kGeluScale * (v + 0.044715f * v * v * v));
      const float sech2 = 1.0f - th * th;
      const float grad = 0.5f * (1.0f + th) + v * 0.5f * sech2 * kGeluScale * (1.0f + 3.0f * 0.044715f * v * v);
      dx.v[e] = grad * d.v[e];
    }
    store<E>(dinp + i, dx);
  }
};

template <class D>
struct SwigluForward {
  D* out;
  const D *gate, *up;
  template <int E>
  __device__ void step(size_t i) const {
    const Floats<E> g = load<E>(gate + i), u = load<E>(up + i);
    Floats<E> r;
    for (int e = 0; e < E; ++e) r.v[e] = g.v[e] / (1.0f + expf(-g.v[e])) * u.v[e];
    store<E>(out + i, r);
  }
};

template <class D>
struct SwigluBackward {
  D *dgate, *dup;
  const D *dout, *gate, *up;
  template <int E>
  __device__ void step(size_t i) const {
    const Floats<E> g = load<E>(gate + i), u = load<E>(up + i), d = load<E>(dout + i);
    Floats<E> dg, du;  // written, not added to (each has one producer)
    for (int e = 0; e < E; ++e) {
      const float s = 1.0f / (1.0f + expf(-g.v[e]));
      du.v[e] = d.v[e] * g.v[e] * s;
      dg.v[e] = d.v[e] * u.v[e] * s * (1.0f + g.v[e] * (1.0f - s));
    }
    store<E>(dup + i, du);
    store<E>(dgate + i, dg);
  }
};

template <class From, class To>
struct Cast {
  To* out;
  const From* in;
  template <int E>
  __device__ void step(size_t i) const {
    store<E>(out + i, load<E>(in + i));
  }
};

// ZeRO's mixed-precision step on fp32 master weights (adamw.h's formula).
template <class G>
struct AdamW {
  float* master;
  __nv_bfloat16* low;  // may be null
  const G* grads;
  float scale;
  float *m, *v;
  float c1, c2, lr, beta1, beta2, eps, wd;
  template <int E>
  __device__ void step(size_t i) const {
    const Floats<E> g = load<E>(grads + i);
    Floats<E> mm = load<E>(m + i), vv = load<E>(v + i), w = load<E>(master + i);
    for (int e = 0; e < E; ++e) {
      const float gs = g.v[e] * scale;
      mm.v[e] = beta1 * mm.v[e] + (1 - beta1) * gs;
      vv.v[e] = beta2 * vv.v[e] + (1 - beta2) * gs * gs;
      const float mh = mm.v[e] / c1, vh = vv.v[e] / c2;
      w.v[e] -= lr * (mh / (sqrtf(vh) + eps) + wd * w.v[e]);
    }
    store<E>(m + i, mm);
    store<E>(v + i, vv);
    store<E>(master + i, w);
    if (low) store<E>(low + i, w);
  }
};

// Rows of C elements go in packs where C is a multiple of kPack and every
// array is 16-byte aligned (then so is every row).
inline bool row_packs(int C, std::initializer_list<const void*> arrays) { return C % kPack == 0 && aligned16(arrays); }

}  // namespace

template <class T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C) {
  auto kernel = row_packs(C, {out, inp, weight, bias}) ? layernorm_forward_kernel<kPack, device_t<T>>
                                                         : layernorm_forward_kernel<1, device_t<T>>;
  launch_kernel(kernel, N, kBlock, 0, dev(out), mean, rstd, dev(inp), dev(weight), dev(bias), C);
  check_launch("layernorm_forward");
}

template <class T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const float* mean,
                        const float* rstd, int N, int C, Scratch scratch) {
  auto kernel = row_packs(C, {dinp, dout, inp, weight}) ? layernorm_backward_input_kernel<kPack, device_t<T>>
                                                         : layernorm_backward_input_kernel<1, device_t<T>>;
  launch_kernel(kernel, N, kBlock, 0, dev(dinp), dev(dout), dev(inp), dev(weight), mean, rstd, C);
  check_launch("layernorm_backward (input)");
  column_sums(LayerNormParamGradients<device_t<T>>{dev(dweight), dev(dbias), dev(dout), dev(inp), mean, rstd, C}, N, C,
              "layernorm_backward (weights)", scratch);
}

template <class T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C) {
  auto kernel = row_packs(C, {out, inp, weight}) ? rmsnorm_forward_kernel<kPack, device_t<T>> : rmsnorm_forward_kernel<1, device_t<T>>;
  launch_kernel(kernel, N, kBlock, 0, dev(out), rstd, dev(inp), dev(weight), C);
  check_launch("rmsnorm_forward");
}

template <class T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const float* rstd, int N, int C,
                     Scratch scratch) {
  auto kernel = row_packs(C, {dinp, dout, inp, weight}) ? rmsnorm_backward_input_kernel<kPack, device_t<T>>
                                                         : rmsnorm_backward_input_kernel<1, device_t<T>>;
  launch_kernel(kernel, N, kBlock, 0, dev(dinp), dev(dout), dev(inp), dev(weight), rstd, C);
  check_launch("rmsnorm_backward (input)");
  column_sums(RmsNormParamGradients<device_t<T>>{dev(dweight), dev(dout), dev(inp), rstd, C}, N, C,
              "rmsnorm_backward (weights)", scratch);
}

template <class T>
void gelu_forward(T* out, const T* inp, size_t n) {
  pointwise(GeluForward<device_t<T>>{dev(out), dev(inp)}, n, "gelu_forward", {out, inp});
}

template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n) {
  pointwise(GeluBackward<device_t<T>>{dev(dinp), dev(inp), dev(dout)}, n, "gelu_backward", {dinp, inp, dout});
}

template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t n) {
  pointwise(SwigluForward<device_t<T>>{dev(out), dev(gate), dev(up)}, n, "swiglu_forward", {out, gate, up});
}

template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n) {
  pointwise(SwigluBackward<device_t<T>>{dev(dgate), dev(dup), dev(dout), dev(gate), dev(up)}, n, "swiglu_backward",
            {dgate, dup, dout, gate, up});
}

void cast(Bf16* out, const float* in, size_t n) {
  pointwise(Cast<float, __nv_bfloat16>{dev(out), in}, n, "cast fp32 -> bf16", {out, in});
}

void cast(float* out, const Bf16* in, size_t n) {
  pointwise(Cast<__nv_bfloat16, float>{out, dev(in)}, n, "cast bf16 -> fp32", {out, in});
}

template <class G>
void adamw_step(float* master, Bf16* low, const G* grads, float grad_scale, float* m, float* v, size_t n, int step, float lr,
                float beta1, float beta2, float eps, float weight_decay) {
  const float c1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float c2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  pointwise(AdamW<device_t<G>>{master, dev(low), dev(grads), grad_scale, m, v, c1, c2, lr, beta1, beta2, eps, weight_decay}, n,
            "adamw_step", {master, low, grads, m, v});
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
