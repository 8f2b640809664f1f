// The kernels of kernels/attention_cuda.h, the formulas of the CPU reference
// kernels (executor/ops_llama_cpu.h) in fp32. One block per (b, h, t) row for
// the scores, the softmax and the query side; one block per (b, kv head, t2)
// for the key and value gradients, which sum over the query heads of the
// group and the later positions in a fixed order.
#include "kernels/attention_cuda.h"

#include <cmath>

#include "kernels/cuda_common.cuh"

namespace zp::cuda {
namespace {

template <class D>
__global__ void rope_kernel(D* x, int Tn, int H, int hs, float base, float direction, size_t pairs) {
  const int half = hs / 2;
  for (size_t p = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; p < pairs;
       p += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(p % half);
    const size_t row = p / half;  // (b * T + t) * H + h
    const int t = static_cast<int>((row / H) % Tn);
    const float angle = static_cast<float>(t) * powf(base, -2.0f * i / hs);
    const float c = cosf(angle), s = direction * sinf(angle);
    D* v = x + row * hs;
    const float x1 = to_f(v[i]), x2 = to_f(v[i + half]);
    v[i] = from_f<D>(x1 * c - x2 * s);
    v[i + half] = from_f<D>(x2 * c + x1 * s);
  }
}

// The query row (b, h, t) a block of the row kernels works on, and its KV head.
struct QueryRow {
  int b, h, t, kh;
};
__device__ inline QueryRow query_row(int Tn, int NH, int KVH) {
  const int t = blockIdx.x % Tn;
  const int h = (blockIdx.x / Tn) % NH;
  return {static_cast<int>(blockIdx.x / (Tn * NH)), h, t, h / (NH / KVH)};
}

// One block per (b, h, t): scores for t2 <= t, softmax, the row of att, out.
template <class D>
__global__ void attention_forward_kernel(D* out, size_t out_stride, D* att, const D* q, size_t q_stride, const D* k,
                                         size_t k_stride, const D* v, size_t v_stride, int Tn, int NH, int KVH, int hs) {
  float* scores = dynamic_shared<float>();  // Tn floats
  const QueryRow w = query_row(Tn, NH, KVH);
  const int t = w.t, h = w.h, b = w.b, kh = w.kh;
  const float scale = rsqrtf(static_cast<float>(hs));
  const D* qv = q + (static_cast<size_t>(b) * Tn + t) * q_stride + h * hs;
  float local_max = -1e30f;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) {
    const D* kv = k + (static_cast<size_t>(b) * Tn + t2) * k_stride + kh * hs;
    float dot = 0;
    for (int i = 0; i < hs; ++i) dot += to_f(qv[i]) * to_f(kv[i]);
    scores[t2] = dot * scale;
    local_max = fmaxf(local_max, scores[t2]);
  }
  const float m = block_max(local_max);
  float local_sum = 0;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) {
    scores[t2] = expf(scores[t2] - m);
    local_sum += scores[t2];
  }
  const float inv = 1.0f / block_sum(local_sum);
  D* a = att + ((static_cast<size_t>(b) * NH + h) * Tn + t) * Tn;
  for (int t2 = threadIdx.x; t2 < Tn; t2 += blockDim.x) {
    const float p = t2 <= t ? scores[t2] * inv : 0.0f;
    a[t2] = from_f<D>(p);
    if (t2 <= t) scores[t2] = to_f(a[t2]);  // out uses the stored probabilities, as backward does
  }
  __syncthreads();
  D* o = out + (static_cast<size_t>(b) * Tn + t) * out_stride + h * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float acc = 0;
    for (int t2 = 0; t2 <= t; ++t2) acc += scores[t2] * to_f(v[(static_cast<size_t>(b) * Tn + t2) * v_stride + kh * hs + i]);
    o[i] = from_f<D>(acc);
  }
}

// One block per (b, h, t): the score gradients of the row (fp32, to the
// workspace) and the query gradient dq[t] += sum_t2 dscores[t2] k[t2].
template <class D>
__global__ void attention_backward_query_kernel(D* dq, size_t dq_stride, float* dscores, const D* dout, size_t dout_stride,
                                                const D* k, size_t k_stride, const D* v, size_t v_stride, const D* att,
                                                int Tn, int NH, int KVH, int hs) {
  float* da = dynamic_shared<float>();  // Tn floats
  const QueryRow w = query_row(Tn, NH, KVH);
  const int t = w.t, h = w.h, b = w.b, kh = w.kh;
  const float scale = rsqrtf(static_cast<float>(hs));
  const size_t row = (static_cast<size_t>(b) * NH + h) * Tn + t;
  const D* a = att + row * Tn;
  const D* d = dout + (static_cast<size_t>(b) * Tn + t) * dout_stride + h * hs;
  float local = 0;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) {
    const D* vv = v + (static_cast<size_t>(b) * Tn + t2) * v_stride + kh * hs;
    float acc = 0;
    for (int i = 0; i < hs; ++i) acc += to_f(vv[i]) * to_f(d[i]);
    da[t2] = acc;
    local += to_f(a[t2]) * acc;
  }
  const float dot = block_sum(local);
  float* ds = dscores + row * Tn;
  for (int t2 = threadIdx.x; t2 < Tn; t2 += blockDim.x) {
    const float g = t2 <= t ? to_f(a[t2]) * (da[t2] - dot) * scale : 0.0f;
    ds[t2] = g;
    if (t2 <= t) da[t2] = g;
  }
  __syncthreads();
  D* dqv = dq + (static_cast<size_t>(b) * Tn + t) * dq_stride + h * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float acc = 0;
    for (int t2 = 0; t2 <= t; ++t2) acc += da[t2] * to_f(k[(static_cast<size_t>(b) * Tn + t2) * k_stride + kh * hs + i]);
    dqv[i] = from_f<D>(to_f(dqv[i]) + acc);
  }
}

// One block per (b, kv head, t2): dk[t2] += sum over the group's heads and
// t >= t2 of dscores[t][t2] q[t]; dv[t2] += att[t][t2] dout[t].
template <class D>
__global__ void attention_backward_kv_kernel(D* dk, size_t dk_stride, D* dv, size_t dv_stride, const float* dscores,
                                             const D* dout, size_t dout_stride, const D* q, size_t q_stride, const D* att,
                                             int Tn, int NH, int KVH, int hs) {
  const int t2 = blockIdx.x % Tn;
  const int kh = (blockIdx.x / Tn) % KVH;
  const int b = blockIdx.x / (Tn * KVH);
  const int group = NH / KVH;
  D* dkv = dk + (static_cast<size_t>(b) * Tn + t2) * dk_stride + kh * hs;
  D* dvv = dv + (static_cast<size_t>(b) * Tn + t2) * dv_stride + kh * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float gk = 0, gv = 0;
    for (int h = kh * group; h < (kh + 1) * group; ++h) {
      for (int t = t2; t < Tn; ++t) {
        const size_t row = (static_cast<size_t>(b) * NH + h) * Tn + t;
        const size_t token = static_cast<size_t>(b) * Tn + t;
        gk += dscores[row * Tn + t2] * to_f(q[token * q_stride + h * hs + i]);
        gv += to_f(att[row * Tn + t2]) * to_f(dout[token * dout_stride + h * hs + i]);
      }
    }
    dkv[i] = from_f<D>(to_f(dkv[i]) + gk);
    dvv[i] = from_f<D>(to_f(dvv[i]) + gv);
  }
}

template <class T>
void rope(T* x, int B, int Tn, int H, int hs, float base, float direction, const char* name) {
  const size_t pairs = static_cast<size_t>(B) * Tn * H * (hs / 2);
  launch_kernel(rope_kernel<device_t<T>>, blocks_for(pairs), kBlock, 0, dev(x), Tn, H, hs, base, direction, pairs);
  check_launch(name);
}

// The score rows live in shared memory: one float per position.
size_t row_bytes(int Tn) { return static_cast<size_t>(Tn) * sizeof(float); }

}  // namespace

template <class T>
void rope_forward(T* x, int B, int Tn, int H, int hs, float base) {
  rope(x, B, Tn, H, hs, base, 1.0f, "rope_forward");
}

template <class T>
void rope_backward(T* dx, int B, int Tn, int H, int hs, float base) {
  rope(dx, B, Tn, H, hs, base, -1.0f, "rope_backward");  // the inverse rotation
}

template <class T>
void attention_forward(Heads<T> out, T* att, Heads<const T> q, Heads<const T> k, Heads<const T> v, int B, int Tn, int NH,
                       int KVH, int hs) {
  const unsigned rows = static_cast<unsigned>(B * NH * Tn);
  launch_kernel(attention_forward_kernel<device_t<T>>, rows, kBlock, row_bytes(Tn), dev(out.base), out.token_stride, dev(att), dev(q.base),
                                                            q.token_stride, dev(k.base), k.token_stride, dev(v.base),
                                                            v.token_stride, Tn, NH, KVH, hs);
  check_launch("attention_forward");
}

template <class T>
void attention_backward(Heads<T> dq, Heads<T> dk, Heads<T> dv, float* dscores, Heads<const T> dout, Heads<const T> q,
                        Heads<const T> k, Heads<const T> v, const T* att, int B, int Tn, int NH, int KVH, int hs) {
  launch_kernel(attention_backward_query_kernel<device_t<T>>, static_cast<unsigned>(B * NH * Tn), kBlock, row_bytes(Tn), 
      dev(dq.base), dq.token_stride, dscores, dev(dout.base), dout.token_stride, dev(k.base), k.token_stride, dev(v.base),
      v.token_stride, dev(att), Tn, NH, KVH, hs);
  check_launch("attention_backward (scores, queries)");
  launch_kernel(attention_backward_kv_kernel<device_t<T>>, static_cast<unsigned>(B * KVH * Tn), kBlock, 0, 
      dev(dk.base), dk.token_stride, dev(dv.base), dv.token_stride, dscores, dev(dout.base), dout.token_stride,
      dev(q.base), q.token_stride, dev(att), Tn, NH, KVH, hs);
  check_launch("attention_backward (keys, values)");
}

#define ZP_CUDA_ATTENTION(T)                                                                                         \
  template void rope_forward<T>(T*, int, int, int, int, float);                                                     \
  template void rope_backward<T>(T*, int, int, int, int, float);                                                    \
  template void attention_forward<T>(Heads<T>, T*, Heads<const T>, Heads<const T>, Heads<const T>, int, int, int, int, \
                                     int);                                                                           \
  template void attention_backward<T>(Heads<T>, Heads<T>, Heads<T>, float*, Heads<const T>, Heads<const T>,           \
                                      Heads<const T>, Heads<const T>, const T*, int, int, int, int, int);
ZP_CUDA_ATTENTION(float)
ZP_CUDA_ATTENTION(Bf16)
#undef ZP_CUDA_ATTENTION

}  // namespace zp::cuda
