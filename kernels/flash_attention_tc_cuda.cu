// The tensor-core flash-attention kernels of flash_attention_tc_cuda.h.
// Built by nvcc for the GPU, and as C++ against tests/simt's stand-ins for
// CUDA for the host SIMT emulator (tests/cuda_ops_emulated_test).
//
// A block owns flash_tiles::kRows rows (queries for forward and dq, keys for
// dk and dv) of one (batch, head); its warps own 16 rows each and multiply
// them with WMMA bf16 fragments (fp32 accumulators) against tiles of the
// other side loaded into shared memory by the whole block. Where a row's
// elements are worked on one by one (the online softmax, P and dS) two
// lanes share a row, half its columns each, and meet through one shuffle.
// Accumulators (the output, dq, dk, dv) stay in shared memory in fp32, so
// rescaling a row of the output needs no knowledge of WMMA's opaque fragment
// layout; each is added to its tensor once, rounded once, at the end. No
// atomics: every output row has one owner, so results do not depend on
// scheduling. Every lane reaches every barrier (no early return).
#include "kernels/flash_attention_tc_cuda.h"

#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/cuda_common.cuh"
#include "kernels/flash_tiles.h"

namespace zp::cuda {
namespace {

namespace ft = flash_tiles;
namespace wmma = nvcuda::wmma;
using bf = __nv_bfloat16;

constexpr int F = ft::kFragment;
constexpr unsigned kAll = 0xffffffffu;

using FragA = wmma::fragment<wmma::matrix_a, F, F, F, bf, wmma::row_major>;
using FragBRows = wmma::fragment<wmma::matrix_b, F, F, F, bf, wmma::row_major>;
using FragBColumns = wmma::fragment<wmma::matrix_b, F, F, F, bf, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, F, F, F, float>;

struct Shape {
  int Tn, NH, KVH, hs;
  float scale;
};

inline Shape shape(int Tn, int NH, int KVH, int hs) { return {Tn, NH, KVH, hs, 1.0f / std::sqrt(static_cast<float>(hs))}; }

inline dim3 grid(int Tn, int heads_of_batch) {
  return dim3(static_cast<unsigned>((Tn + ft::kRows - 1) / ft::kRows), static_cast<unsigned>(heads_of_batch));
}

template <class E>
__device__ inline E* at(unsigned char* smem, ft::Tile t) {
  return reinterpret_cast<E*>(smem + t.offset);
}

// C (16 x n, fp32) = A (16 x depth) B^T with B (n x depth): both row-major
// bf16, so B^T is B read column-major (scores of rows against rows).
__device__ inline void rows_dot_rows(float* c, int ldc, const bf* a, int lda, const bf* b, int ldb, int n, int depth) {
  for (int n0 = 0; n0 < n; n0 += F) {
    FragAcc acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int kk = 0; kk < depth; kk += F) {
      FragA fa;
      FragBColumns fb;
      wmma::load_matrix_sync(fa, a + kk, lda);
      wmma::load_matrix_sync(fb, b + static_cast<size_t>(n0) * ldb + kk, ldb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c + n0, acc, ldc, wmma::mem_row_major);
  }
}

// C (16 x n, fp32) += A (16 x depth) B (depth x n), A and B row-major bf16.
__device__ inline void add_product(float* c, int ldc, const bf* a, int lda, const bf* b, int ldb, int n, int depth) {
  for (int n0 = 0; n0 < n; n0 += F) {
    FragAcc acc;
    wmma::load_matrix_sync(acc, c + n0, ldc, wmma::mem_row_major);
    for (int kk = 0; kk < depth; kk += F) {
      FragA fa;
      FragBRows fb;
      wmma::load_matrix_sync(fa, a + kk, lda);
      wmma::load_matrix_sync(fb, b + static_cast<size_t>(kk) * ldb + n0, ldb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c + n0, acc, ldc, wmma::mem_row_major);
  }
}

// Tokens [t0, t0 + rows) of head `head` of batch b into a tile (rows x hs),
// zeros past T; the whole block.
__device__ inline void load_rows(bf* tile, int ld, const bf* base, size_t stride, int b, int Tn, int t0, int rows, int head,
                                 int hs) {
  const bf zero = __float2bfloat16(0.0f);
  for (int e = threadIdx.x; e < rows * hs; e += blockDim.x) {
    const int r = e / hs, i = e - r * hs, t = t0 + r;
    tile[r * ld + i] = t < Tn ? base[(static_cast<size_t>(b) * Tn + t) * stride + static_cast<size_t>(head) * hs + i] : zero;
  }
}

__device__ inline void zero_rows(float* tile, int ld, int rows, int columns) {
  for (int e = threadIdx.x; e < rows * columns; e += blockDim.x) tile[(e / columns) * ld + e % columns] = 0.0f;
}

// Per-row values (lse or D) of rows [t0, t0 + rows) from `row` (T of them),
// zeros past T; the block's first `rows` threads.
__device__ inline void load_values(float* dst, const float* row, int Tn, int t0, int rows) {
  const int x = static_cast<int>(threadIdx.x);
  if (x < rows) dst[x] = t0 + x < Tn ? row[t0 + x] : 0.0f;
}

// Tokens [t0, t0 + 16) of head `head` += the warp's accumulator rows, each
// element rounded once; rows past T are padding. One warp.
__device__ inline void add_rows(bf* base, size_t stride, int b, int Tn, int t0, int head, int hs, const float* acc, int ld,
                                int lane) {
  for (int e = lane; e < F * hs; e += 32) {
    const int r = e / hs, i = e - r * hs, t = t0 + r;
    if (t >= Tn) continue;
    bf* p = base + (static_cast<size_t>(b) * Tn + t) * stride + static_cast<size_t>(head) * hs + i;
    *p = __float2bfloat16(__bfloat162float(*p) + acc[r * ld + i]);
  }
}

__global__ void __launch_bounds__(ft::kThreads)
    forward_kernel(bf* out, size_t out_stride, float* lse, const bf* q, size_t q_stride, const bf* k, size_t k_stride,
                   const bf* v, size_t v_stride, Shape s, ft::ForwardLayout L) {
  unsigned char* smem = dynamic_shared<unsigned char>();
  bf *Qs = at<bf>(smem, L.q), *Ks = at<bf>(smem, L.k), *Vs = at<bf>(smem, L.v), *Ps = at<bf>(smem, L.p);
  float *Os = at<float>(smem, L.o), *Ss = at<float>(smem, L.s), *m = at<float>(smem, L.m), *l = at<float>(smem, L.l);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * F;
  // The longest rows (the last tiles, causal) start first.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * ft::kRows;
  const int b = blockIdx.y / s.NH, h = blockIdx.y % s.NH, kh = h / (s.NH / s.KVH);
  load_rows(Qs, L.q.ld, q, q_stride, b, s.Tn, q0, ft::kRows, h, s.hs);
  zero_rows(Os, L.o.ld, ft::kRows, s.hs);
  if (threadIdx.x < ft::kRows) {
    m[threadIdx.x] = -INFINITY;
    l[threadIdx.x] = 0.0f;
  }
  // This lane's row and half of the columns in the softmax step.
  const int r = r0 + lane / 2, t = q0 + r, half = lane % 2;
  for (int k0 = 0; k0 < ft::key_end(q0, s.Tn); k0 += ft::kKeys) {
    __syncthreads();  // the previous tile is read; on the first pass, Q, O, m, l are written
    load_rows(Ks, L.k.ld, k, k_stride, b, s.Tn, k0, ft::kKeys, kh, s.hs);
    load_rows(Vs, L.v.ld, v, v_stride, b, s.Tn, k0, ft::kKeys, kh, s.hs);
    __syncthreads();
    rows_dot_rows(Ss + r0 * L.s.ld, L.s.ld, Qs + r0 * L.q.ld, L.q.ld, Ks, L.k.ld, ft::kKeys, s.hs);
    __syncwarp();
    {
      float* srow = Ss + r * L.s.ld;
      bf* prow = Ps + r * L.p.ld;
      const int c0 = half * (ft::kKeys / 2);
      const float m_old = m[r];
      float mx = -INFINITY;
      for (int c = c0; c < c0 + ft::kKeys / 2; ++c) {
        const float x = ft::visible(t, k0 + c, s.Tn) ? srow[c] * s.scale : -INFINITY;
        srow[c] = x;
        mx = fmaxf(mx, x);
      }
      mx = fmaxf(mx, __shfl_xor_sync(kAll, mx, 1));
      const float m_new = fmaxf(m_old, mx);
      const float base = m_new == -INFINITY ? 0.0f : m_new;  // a padding row: nothing visible yet
      float sum = 0.0f;
      for (int c = c0; c < c0 + ft::kKeys / 2; ++c) {
        const float p = __expf(srow[c] - base);
        prow[c] = __float2bfloat16(p);
        sum += p;
      }
      sum += __shfl_xor_sync(kAll, sum, 1);
      const float correction = __expf(m_old - base);  // what was summed against the old maximum
      float* orow = Os + r * L.o.ld;
      for (int i = half * (s.hs / 2); i < (half + 1) * (s.hs / 2); ++i) orow[i] *= correction;
      __syncwarp();  // both lanes have read m[r]
      if (half == 0) {
        m[r] = m_new;
        l[r] = l[r] * correction + sum;
      }
    }
    __syncwarp();
    add_product(Os + r0 * L.o.ld, L.o.ld, Ps + r0 * L.p.ld, L.p.ld, Vs, L.v.ld, s.hs, ft::kKeys);
  }
  __syncwarp();
  for (int e = lane; e < F * s.hs; e += 32) {
    const int rr = r0 + e / s.hs, i = e % s.hs, tt = q0 + rr;
    if (tt < s.Tn) {
      out[(static_cast<size_t>(b) * s.Tn + tt) * out_stride + static_cast<size_t>(h) * s.hs + i] =
          __float2bfloat16(Os[rr * L.o.ld + i] / l[rr]);
    }
  }
  if (lane < F && q0 + r0 + lane < s.Tn) {
    lse[(static_cast<size_t>(b) * s.NH + h) * s.Tn + q0 + r0 + lane] = m[r0 + lane] + logf(l[r0 + lane]);
  }
}

// dq += sum over keys of dS k, dS = P (dout . v - D) scale, P = exp(s - lse).
__global__ void __launch_bounds__(ft::kThreads)
    query_kernel(bf* dq, size_t dq_stride, const float* rowdot, const float* lse, const bf* dout, size_t dout_stride,
                 const bf* q, size_t q_stride, const bf* k, size_t k_stride, const bf* v, size_t v_stride, Shape s,
                 ft::QueryLayout L) {
  unsigned char* smem = dynamic_shared<unsigned char>();
  bf *Qs = at<bf>(smem, L.q), *dOs = at<bf>(smem, L.dout), *Ks = at<bf>(smem, L.k), *Vs = at<bf>(smem, L.v);
  bf* dSs = at<bf>(smem, L.ds);
  float *dQs = at<float>(smem, L.dq), *Ss = at<float>(smem, L.s), *dPs = at<float>(smem, L.dp);
  float *lse_s = at<float>(smem, L.lse), *D_s = at<float>(smem, L.rowdot);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * F;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * ft::kRows;
  const int b = blockIdx.y / s.NH, h = blockIdx.y % s.NH, kh = h / (s.NH / s.KVH);
  const size_t rows = (static_cast<size_t>(b) * s.NH + h) * s.Tn;
  load_rows(Qs, L.q.ld, q, q_stride, b, s.Tn, q0, ft::kRows, h, s.hs);
  load_rows(dOs, L.dout.ld, dout, dout_stride, b, s.Tn, q0, ft::kRows, h, s.hs);
  zero_rows(dQs, L.dq.ld, ft::kRows, s.hs);
  load_values(lse_s, lse + rows, s.Tn, q0, ft::kRows);
  load_values(D_s, rowdot + rows, s.Tn, q0, ft::kRows);
  const int r = r0 + lane / 2, t = q0 + r, c0 = (lane % 2) * (ft::kKeys / 2);
  for (int k0 = 0; k0 < ft::key_end(q0, s.Tn); k0 += ft::kKeys) {
    __syncthreads();
    load_rows(Ks, L.k.ld, k, k_stride, b, s.Tn, k0, ft::kKeys, kh, s.hs);
    load_rows(Vs, L.v.ld, v, v_stride, b, s.Tn, k0, ft::kKeys, kh, s.hs);
    __syncthreads();
    rows_dot_rows(Ss + r0 * L.s.ld, L.s.ld, Qs + r0 * L.q.ld, L.q.ld, Ks, L.k.ld, ft::kKeys, s.hs);
    rows_dot_rows(dPs + r0 * L.dp.ld, L.dp.ld, dOs + r0 * L.dout.ld, L.dout.ld, Vs, L.v.ld, ft::kKeys, s.hs);
    __syncwarp();
    for (int c = c0; c < c0 + ft::kKeys / 2; ++c) {
      const float p = ft::visible(t, k0 + c, s.Tn) ? __expf(Ss[r * L.s.ld + c] * s.scale - lse_s[r]) : 0.0f;
      dSs[r * L.ds.ld + c] = __float2bfloat16(p * (dPs[r * L.dp.ld + c] - D_s[r]) * s.scale);
    }
    __syncwarp();
    add_product(dQs + r0 * L.dq.ld, L.dq.ld, dSs + r0 * L.ds.ld, L.ds.ld, Ks, L.k.ld, s.hs, ft::kKeys);
  }
  __syncwarp();
  add_rows(dq, dq_stride, b, s.Tn, q0 + r0, h, s.hs, dQs + r0 * L.dq.ld, L.dq.ld, lane);
}

// dk += sum dS^T q and dv += sum P^T dout over the group's heads and the
// queries t >= t2, a key tile per block.
__global__ void __launch_bounds__(ft::kThreads)
    key_value_kernel(bf* dk, size_t dk_stride, bf* dv, size_t dv_stride, const float* rowdot, const float* lse,
                     const bf* dout, size_t dout_stride, const bf* q, size_t q_stride, const bf* k, size_t k_stride,
                     const bf* v, size_t v_stride, Shape s, ft::KeyValueLayout L) {
  unsigned char* smem = dynamic_shared<unsigned char>();
  bf *Ks = at<bf>(smem, L.k), *Vs = at<bf>(smem, L.v), *Qs = at<bf>(smem, L.q), *dOs = at<bf>(smem, L.dout);
  bf *Pt = at<bf>(smem, L.pt), *dSt = at<bf>(smem, L.dst);
  float *dKs = at<float>(smem, L.dk), *dVs = at<float>(smem, L.dv), *St = at<float>(smem, L.st);
  float *dPt = at<float>(smem, L.dpt), *lse_s = at<float>(smem, L.lse), *D_s = at<float>(smem, L.rowdot);
  constexpr int kQ = ft::kKeyValueQueries;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * F;
  // The longest key rows (the first tiles, causal) start first.
  const int k0 = blockIdx.x * ft::kRows;
  const int b = blockIdx.y / s.KVH, kh = blockIdx.y % s.KVH, group = s.NH / s.KVH;
  load_rows(Ks, L.k.ld, k, k_stride, b, s.Tn, k0, ft::kRows, kh, s.hs);
  load_rows(Vs, L.v.ld, v, v_stride, b, s.Tn, k0, ft::kRows, kh, s.hs);
  zero_rows(dKs, L.dk.ld, ft::kRows, s.hs);
  zero_rows(dVs, L.dv.ld, ft::kRows, s.hs);
  const int r = r0 + lane / 2, key = k0 + r, c0 = (lane % 2) * (kQ / 2);
  for (int h = kh * group; h < (kh + 1) * group; ++h) {
    const size_t rows = (static_cast<size_t>(b) * s.NH + h) * s.Tn;
    for (int q0 = k0; q0 < s.Tn; q0 += kQ) {
      __syncthreads();
      load_rows(Qs, L.q.ld, q, q_stride, b, s.Tn, q0, kQ, h, s.hs);
      load_rows(dOs, L.dout.ld, dout, dout_stride, b, s.Tn, q0, kQ, h, s.hs);
      load_values(lse_s, lse + rows, s.Tn, q0, kQ);
      load_values(D_s, rowdot + rows, s.Tn, q0, kQ);
      __syncthreads();
      rows_dot_rows(St + r0 * L.st.ld, L.st.ld, Ks + r0 * L.k.ld, L.k.ld, Qs, L.q.ld, kQ, s.hs);
      rows_dot_rows(dPt + r0 * L.dpt.ld, L.dpt.ld, Vs + r0 * L.v.ld, L.v.ld, dOs, L.dout.ld, kQ, s.hs);
      __syncwarp();
      for (int c = c0; c < c0 + kQ / 2; ++c) {
        const float p = ft::visible(q0 + c, key, s.Tn) ? __expf(St[r * L.st.ld + c] * s.scale - lse_s[c]) : 0.0f;
        Pt[r * L.pt.ld + c] = __float2bfloat16(p);
        dSt[r * L.dst.ld + c] = __float2bfloat16(p * (dPt[r * L.dpt.ld + c] - D_s[c]) * s.scale);
      }
      __syncwarp();
      add_product(dVs + r0 * L.dv.ld, L.dv.ld, Pt + r0 * L.pt.ld, L.pt.ld, dOs, L.dout.ld, s.hs, kQ);
      add_product(dKs + r0 * L.dk.ld, L.dk.ld, dSt + r0 * L.dst.ld, L.dst.ld, Qs, L.q.ld, s.hs, kQ);
    }
  }
  __syncwarp();
  add_rows(dk, dk_stride, b, s.Tn, k0 + r0, kh, s.hs, dKs + r0 * L.dk.ld, L.dk.ld, lane);
  add_rows(dv, dv_stride, b, s.Tn, k0 + r0, kh, s.hs, dVs + r0 * L.dv.ld, L.dv.ld, lane);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A checked launch of a block of ft::kThreads (launch_kernel opts in for
// the tiles' shared memory past 48 KiB).
template <class Kernel, class... Args>
void launch_tiles(const char* what, Kernel kernel, dim3 grid, size_t shared_bytes, Args... args) {
  launch_kernel(kernel, grid, ft::kThreads, shared_bytes, args...);
  check_launch(what);
}

}  // namespace

bool flash_attention_tc_supported(int hs) {
  if (!ft::eligible(hs)) return false;
  // Asked twice a layer a step: the device's answers are kept per thread
  // for the device it last asked about.
  thread_local int asked = -1, major = 0, optin = 0;
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  if (device != asked) {
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
    check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
    asked = device;
  }
  const size_t most = std::max({ft::forward_layout(hs).bytes, ft::query_layout(hs).bytes, ft::key_value_layout(hs).bytes});
  return major >= 8 && most <= static_cast<size_t>(optin);
}

void flash_attention_forward_tc(Heads<Bf16> out, float* lse, Heads<const Bf16> q, Heads<const Bf16> k,
                                Heads<const Bf16> v, int B, int Tn, int NH, int KVH, int hs) {
  const ft::ForwardLayout L = ft::forward_layout(hs);
  launch_tiles("flash_attention_forward (tensor cores)", forward_kernel, grid(Tn, B * NH), L.bytes, dev(out.base),
               out.token_stride, lse, dev(q.base), q.token_stride, dev(k.base), k.token_stride, dev(v.base),
               v.token_stride, shape(Tn, NH, KVH, hs), L);
}

// dq, then dk and dv; rowdot holds D = dout . out.
void flash_attention_backward_tc(Heads<Bf16> dq, Heads<Bf16> dk, Heads<Bf16> dv, const float* rowdot,
                                 Heads<const Bf16> dout, Heads<const Bf16> q, Heads<const Bf16> k, Heads<const Bf16> v,
                                 const float* lse, int B, int Tn, int NH, int KVH, int hs) {
  const Shape s = shape(Tn, NH, KVH, hs);
  const ft::QueryLayout LQ = ft::query_layout(hs);
  launch_tiles("flash_attention_backward (tensor cores, queries)", query_kernel, grid(Tn, B * NH), LQ.bytes,
               dev(dq.base), dq.token_stride, rowdot, lse, dev(dout.base), dout.token_stride, dev(q.base), q.token_stride,
               dev(k.base), k.token_stride, dev(v.base), v.token_stride, s, LQ);
  const ft::KeyValueLayout LK = ft::key_value_layout(hs);
  launch_tiles("flash_attention_backward (tensor cores, keys, values)", key_value_kernel, grid(Tn, B * KVH), LK.bytes,
               dev(dk.base), dk.token_stride, dev(dv.base), dv.token_stride, rowdot, lse, dev(dout.base),
               dout.token_stride, dev(q.base), q.token_stride, dev(k.base), k.token_stride, dev(v.base), v.token_stride, s,
               LK);
}

}  // namespace zp::cuda
