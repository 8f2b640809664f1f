// The kernels of kernels/flash_attention_cuda.h. A warp owns one row (a
// query row, or a key row for dk and dv); lane j holds the elements
// i = j, j + 32, ... of the head (kPerLane of them at most), and a dot
// product is each lane's partial sum added across the warp with shuffles,
// so every lane has it and the online-softmax state stays uniform.
#include "kernels/flash_attention_cuda.h"

#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/flash_attention_tc_cuda.h"

namespace zp::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kPerLane = kFlashMaxHeadDim / kWarp;
constexpr unsigned kAll = 0xffffffffu;

__device__ inline float warp_sum(float x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(kAll, x, offset);
  return x;
}

// This warp's row among `rows`, or -1 past the end (whole warps leave together).
__device__ inline long long warp_row(long long rows) {
  const long long r = static_cast<long long>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  return r < rows ? r : -1;
}

// A head row in registers: element i = lane + 32 j in x[j].
template <class D>
__device__ inline void load_row(float* x, const D* p, int hs, int lane) {
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int i = lane + j * kWarp;
    x[j] = i < hs ? to_f(p[i]) : 0.0f;
  }
}
template <class D>
__device__ inline float dot_row(const float* x, const D* p, int hs, int lane) {
  float s = 0;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int i = lane + j * kWarp;
    if (i < hs) s += x[j] * to_f(p[i]);
  }
  return warp_sum(s);
}
// p[i] = x[i], rounded once: each gradient row is summed in full by its
// one owner and stored, so its buffer needs no zeroing first.
template <class D>
__device__ inline void write_row(D* p, const float* x, int hs, int lane) {
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int i = lane + j * kWarp;
    if (i < hs) p[i] = from_f<D>(x[j]);
  }
}

struct Shape {
  int Tn, NH, KVH, hs;
  float scale;
};

// Query row r = (b * NH + h) * T + t.
struct QueryRowIndex {
  int b, h, t;
};
__device__ inline QueryRowIndex query_row(long long r, const Shape& s) {
  return {static_cast<int>(r / (static_cast<long long>(s.NH) * s.Tn)), static_cast<int>((r / s.Tn) % s.NH),
          static_cast<int>(r % s.Tn)};
}

template <class D>
__global__ void flash_forward_kernel(D* out, size_t out_stride, float* lse, const D* q, size_t q_stride, const D* k,
                                     size_t k_stride, const D* v, size_t v_stride, int B, Shape s) {
  const long long r = warp_row(static_cast<long long>(B) * s.NH * s.Tn);
  if (r < 0) return;
  const int lane = threadIdx.x % kWarp;
  const QueryRowIndex w = query_row(r, s);
  const int kh = w.h / (s.NH / s.KVH);
  float qr[kPerLane], acc[kPerLane];
  load_row(qr, row_at(q, q_stride, w.b, s.Tn, w.t, w.h, s.hs), s.hs, lane);
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) acc[j] = 0;
  float m = -INFINITY, l = 0;
  for (int t2 = 0; t2 <= w.t; ++t2) {
    const float sc = dot_row(qr, row_at(k, k_stride, w.b, s.Tn, t2, kh, s.hs), s.hs, lane) * s.scale;
    if (sc > m) {  // rescale what was summed against the old maximum
      const float c = __expf(m - sc);
      l *= c;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) acc[j] *= c;
      m = sc;
    }
    const float p = __expf(sc - m);
    l += p;
    const D* vr = row_at(v, v_stride, w.b, s.Tn, t2, kh, s.hs);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int i = lane + j * kWarp;
      if (i < s.hs) acc[j] += p * to_f(vr[i]);
    }
  }
  D* o = row_at(out, out_stride, w.b, s.Tn, w.t, w.h, s.hs);
  const float inv = 1.0f / l;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int i = lane + j * kWarp;
    if (i < s.hs) o[i] = from_f<D>(acc[j] * inv);
  }
  if (lane == 0) lse[r] = m + logf(l);
}

// D = dout . out per query row.
template <class D>
__global__ void flash_rowdot_kernel(float* rowdot, const D* dout, size_t dout_stride, const D* out, size_t out_stride, int B,
                                    Shape s) {
  const long long r = warp_row(static_cast<long long>(B) * s.NH * s.Tn);
  if (r < 0) return;
  const int lane = threadIdx.x % kWarp;
  const QueryRowIndex w = query_row(r, s);
  float d[kPerLane];
  load_row(d, row_at(dout, dout_stride, w.b, s.Tn, w.t, w.h, s.hs), s.hs, lane);
  const float x = dot_row(d, row_at(out, out_stride, w.b, s.Tn, w.t, w.h, s.hs), s.hs, lane);
  if (lane == 0) rowdot[r] = x;
}

// dq_t = sum_{t2 <= t} dS k_t2, dS = P (dout . v - D) scale, P = exp(s - lse).
template <class D>
__global__ void flash_query_kernel(D* dq, size_t dq_stride, const float* rowdot, const float* lse, const D* dout,
                                   size_t dout_stride, const D* q, size_t q_stride, const D* k, size_t k_stride, const D* v,
                                   size_t v_stride, int B, Shape s) {
  const long long r = warp_row(static_cast<long long>(B) * s.NH * s.Tn);
  if (r < 0) return;
  const int lane = threadIdx.x % kWarp;
  const QueryRowIndex w = query_row(r, s);
  const int kh = w.h / (s.NH / s.KVH);
  float qr[kPerLane], dr[kPerLane], g[kPerLane];
  load_row(qr, row_at(q, q_stride, w.b, s.Tn, w.t, w.h, s.hs), s.hs, lane);
  load_row(dr, row_at(dout, dout_stride, w.b, s.Tn, w.t, w.h, s.hs), s.hs, lane);
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) g[j] = 0;
  const float L = lse[r], Dt = rowdot[r];
  for (int t2 = 0; t2 <= w.t; ++t2) {
    const D* kr = row_at(k, k_stride, w.b, s.Tn, t2, kh, s.hs);
    const float p = __expf(dot_row(qr, kr, s.hs, lane) * s.scale - L);
    const float ds = p * (dot_row(dr, row_at(v, v_stride, w.b, s.Tn, t2, kh, s.hs), s.hs, lane) - Dt) * s.scale;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int i = lane + j * kWarp;
      if (i < s.hs) g[j] += ds * to_f(kr[i]);
    }
  }
  write_row(row_at(dq, dq_stride, w.b, s.Tn, w.t, w.h, s.hs), g, s.hs, lane);
}

// Key row r = (b * KVH + kh) * T + t2: dk = sum dS q_t, dv = sum P dout_t
// over the group's heads h and t >= t2.
template <class D>
__global__ void flash_key_value_kernel(D* dk, size_t dk_stride, D* dv, size_t dv_stride, const float* rowdot,
                                       const float* lse, const D* dout, size_t dout_stride, const D* q, size_t q_stride,
                                       const D* k, size_t k_stride, const D* v, size_t v_stride, int B, Shape s) {
  const long long r = warp_row(static_cast<long long>(B) * s.KVH * s.Tn);
  if (r < 0) return;
  const int lane = threadIdx.x % kWarp;
  const int t2 = static_cast<int>(r % s.Tn), kh = static_cast<int>((r / s.Tn) % s.KVH);
  const int b = static_cast<int>(r / (static_cast<long long>(s.KVH) * s.Tn));
  const int group = s.NH / s.KVH;
  float kr[kPerLane], vr[kPerLane], gk[kPerLane], gv[kPerLane];
  load_row(kr, row_at(k, k_stride, b, s.Tn, t2, kh, s.hs), s.hs, lane);
  load_row(vr, row_at(v, v_stride, b, s.Tn, t2, kh, s.hs), s.hs, lane);
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) gk[j] = gv[j] = 0;
  for (int h = kh * group; h < (kh + 1) * group; ++h) {
    const size_t rows = (static_cast<size_t>(b) * s.NH + h) * s.Tn;
    for (int t = t2; t < s.Tn; ++t) {
      const D* qt = row_at(q, q_stride, b, s.Tn, t, h, s.hs);
      const D* dt = row_at(dout, dout_stride, b, s.Tn, t, h, s.hs);
      const float p = __expf(dot_row(kr, qt, s.hs, lane) * s.scale - lse[rows + t]);
      const float ds = p * (dot_row(vr, dt, s.hs, lane) - rowdot[rows + t]) * s.scale;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int i = lane + j * kWarp;
        if (i < s.hs) {
          gk[j] += ds * to_f(qt[i]);
          gv[j] += p * to_f(dt[i]);
        }
      }
    }
  }
  write_row(row_at(dk, dk_stride, b, s.Tn, t2, kh, s.hs), gk, s.hs, lane);
  write_row(row_at(dv, dv_stride, b, s.Tn, t2, kh, s.hs), gv, s.hs, lane);
}

unsigned warp_blocks(long long rows) { return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

Shape shape(int Tn, int NH, int KVH, int hs) {
  if (hs > kFlashMaxHeadDim) {
    throw std::runtime_error("flash attention: head size " + std::to_string(hs) + " above " +
                             std::to_string(kFlashMaxHeadDim));
  }
  return {Tn, NH, KVH, hs, rsqrtf(static_cast<float>(hs))};
}

}  // namespace

template <class T>
void flash_attention_forward(Heads<T> out, float* lse, Heads<const T> q, Heads<const T> k, Heads<const T> v, int B, int Tn,
                             int NH, int KVH, int hs) {
  const Shape s = shape(Tn, NH, KVH, hs);
  if constexpr (std::is_same_v<T, Bf16>) {
    if (flash_attention_tc_supported(hs)) return flash_attention_forward_tc(out, lse, q, k, v, B, Tn, NH, KVH, hs);
  }
  const long long rows = static_cast<long long>(B) * NH * Tn;
  launch_kernel(flash_forward_kernel<device_t<T>>, warp_blocks(rows), kWarp * kWarpsPerBlock, 0, dev(out.base), out.token_stride, lse, dev(q.base),
                                                                      q.token_stride, dev(k.base), k.token_stride,
                                                                      dev(v.base), v.token_stride, B, s);
  check_launch("flash_attention_forward");
}

template <class T>
void flash_attention_backward(Heads<T> dq, Heads<T> dk, Heads<T> dv, float* rowdot, Heads<const T> dout, Heads<const T> q,
                              Heads<const T> k, Heads<const T> v, Heads<const T> out, const float* lse, int B, int Tn,
                              int NH, int KVH, int hs) {
  const Shape s = shape(Tn, NH, KVH, hs);
  const long long rows = static_cast<long long>(B) * NH * Tn, key_rows = static_cast<long long>(B) * KVH * Tn;
  const unsigned threads = kWarp * kWarpsPerBlock;
  launch_kernel(flash_rowdot_kernel<device_t<T>>, warp_blocks(rows), threads, 0, rowdot, dev(dout.base), dout.token_stride, dev(out.base),
                                                      out.token_stride, B, s);
  check_launch("flash_attention_backward (row dots)");
  if constexpr (std::is_same_v<T, Bf16>) {
    if (flash_attention_tc_supported(hs)) {
      return flash_attention_backward_tc(dq, dk, dv, rowdot, dout, q, k, v, lse, B, Tn, NH, KVH, hs);
    }
  }
  launch_kernel(flash_query_kernel<device_t<T>>, warp_blocks(rows), threads, 0, dev(dq.base), dq.token_stride, rowdot, lse, dev(dout.base),
                                                     dout.token_stride, dev(q.base), q.token_stride, dev(k.base),
                                                     k.token_stride, dev(v.base), v.token_stride, B, s);
  check_launch("flash_attention_backward (queries)");
  launch_kernel(flash_key_value_kernel<device_t<T>>, warp_blocks(key_rows), threads, 0, dev(dk.base), dk.token_stride, dev(dv.base), dv.token_stride,
                                                             rowdot, lse, dev(dout.base), dout.token_stride, dev(q.base),
                                                             q.token_stride, dev(k.base), k.token_stride, dev(v.base),
                                                             v.token_stride, B, s);
  check_launch("flash_attention_backward (keys, values)");
}

#define ZP_CUDA_FLASH(T)                                                                                               \
  template void flash_attention_forward<T>(Heads<T>, float*, Heads<const T>, Heads<const T>, Heads<const T>, int, int, \
                                           int, int, int);                                                            \
  template void flash_attention_backward<T>(Heads<T>, Heads<T>, Heads<T>, float*, Heads<const T>, Heads<const T>,      \
                                            Heads<const T>, Heads<const T>, Heads<const T>, const float*, int, int, int, \
                                            int, int);
ZP_CUDA_FLASH(float)
ZP_CUDA_FLASH(Bf16)
#undef ZP_CUDA_FLASH

}  // namespace zp::cuda
