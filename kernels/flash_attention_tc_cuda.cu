// The tensor-core flash-attention kernels of flash_attention_tc_cuda.h.
// Built by nvcc for the GPU, and as C++ against tests/simt's stand-ins for
// CUDA for the host SIMT emulator (tests/cuda_ops_emulated_test).
//
// A block owns flash_tiles::kRows rows (queries for forward and dq, keys for
// dk and dv) of one (batch, head); its warps own 16 rows each and multiply
// them with WMMA bf16 fragments (fp32 accumulators) against tiles of the
// other side loaded into shared memory by the whole block, 16 bytes a load.
// As in FlashAttention-2 (Dao 2023, section 3.3), what only one warp reads
// stays in its registers: its rows of the block's side as operand fragments,
// and the accumulators (the output, dq, dk, dv), each added to its tensor
// once, rounded once, at the end. Shared memory carries what warps exchange
// (the other side's tiles) and what a row's lanes work on element by element
// (scores, P, dS), so a key tile costs a warp its fragment loads of that
// tile, one store of its scores and two reads of them. By count (hs 64, per
// warp and key tile), the forward moves about 33 KB through shared memory,
// where the earlier version, with accumulators in shared memory and an
// operand reload per product, moved about 66 KB, a third of it in scalar row
// accesses with 4-way bank conflicts (docs/design.md; speed not yet measured).
//
// The online softmax rescales the output rows in registers although WMMA
// keeps the element-to-lane mapping of a fragment opaque: the mapping is the
// same for every accumulator fragment (load, mma and store agree on it), so
// a fragment loaded from a tile whose element (r, c) is r tells each lane the
// row of each element it holds. Where a row's elements are worked on one by
// one, lanes l and l + 16 share row l % 16, a half of its columns each, in
// pairs, visited from a column rotated by the row so that a warp's 32
// accesses fall in different shared-memory banks (scores and their bf16
// products both); the two lanes meet through one shuffle. No atomics: every
// output row has one owner, so results do not depend on scheduling. Every
// lane reaches every barrier (no early return). The kernels are compiled for
// each head size hs = 16 D, D = 1..8, so a warp's fragments are arrays of
// fixed size in registers.
#include "kernels/flash_attention_tc_cuda.h"

#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/flash_tiles.h"

namespace zp::cuda {
namespace {

namespace ft = flash_tiles;
namespace wmma = nvcuda::wmma;
using bf = __nv_bfloat16;

constexpr int F = ft::kFragment;
constexpr unsigned kAll = 0xffffffffu;
constexpr int kPartner = 16;  // lanes l and l ^ 16 share a row

using FragA = wmma::fragment<wmma::matrix_a, F, F, F, bf, wmma::row_major>;
using FragBRows = wmma::fragment<wmma::matrix_b, F, F, F, bf, wmma::row_major>;
using FragBColumns = wmma::fragment<wmma::matrix_b, F, F, F, bf, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, F, F, F, float>;

// Rows of tiles move in cuda_common.cuh's 16-byte packs (Bf16x8).
struct __align__(8) Float2 {
  float a, b;
};

struct Shape {
  int Tn, NH, KVH;
  float scale;
  bool wide;  // every tensor's rows take 16-byte accesses
};

template <class E>
__device__ inline E* at(unsigned char* smem, ft::Tile t) {
  return reinterpret_cast<E*>(smem + t.offset);
}

// C (16 x n, fp32) = A B^T: A the warp's 16 rows as D fragments in
// registers, B (n x 16 D) row-major bf16 in shared memory (scores of rows
// against rows).
template <int D>
__device__ inline void rows_dot_tile(float* c, int ldc, const FragA (&a)[D], const bf* b, int ldb, int n) {
  for (int n0 = 0; n0 < n; n0 += F) {
    FragAcc acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int j = 0; j < D; ++j) {
      FragBColumns fb;
      wmma::load_matrix_sync(fb, b + static_cast<size_t>(n0) * ldb + j * F, ldb);
      wmma::mma_sync(acc, a[j], fb, acc);
    }
    wmma::store_matrix_sync(c + n0, acc, ldc, wmma::mem_row_major);
  }
}

// acc (16 x 16 D, D fragments in registers) += A B: A (16 x depth) row-major
// bf16 in shared memory, B (depth x 16 D) row-major bf16 in shared memory.
template <int D>
__device__ inline void add_product(FragAcc (&acc)[D], const bf* a, int lda, const bf* b, int ldb, int depth) {
  for (int kk = 0; kk < depth; kk += F) {
    FragA fa;
    wmma::load_matrix_sync(fa, a + kk, lda);
#pragma unroll
    for (int j = 0; j < D; ++j) {
      FragBRows fb;
      wmma::load_matrix_sync(fb, b + static_cast<size_t>(kk) * ldb + j * F, ldb);
      wmma::mma_sync(acc[j], fa, fb, acc[j]);
    }
  }
}

// A warp's 16 rows of a shared tile as D operand fragments.
template <int D>
__device__ inline void load_operand(FragA (&frag)[D], const bf* tile, int ld) {
#pragma unroll
  for (int j = 0; j < D; ++j) wmma::load_matrix_sync(frag[j], tile + j * F, ld);
}

template <int D>
__device__ inline void zero(FragAcc (&acc)[D]) {
#pragma unroll
  for (int j = 0; j < D; ++j) wmma::fill_fragment(acc[j], 0.0f);
}

// Multiplies row r (0..15) of the D accumulators by factor(r). row_of is an
// accumulator fragment loaded from a tile whose element (r, c) is r: WMMA's
// element-to-lane mapping is opaque but one for every accumulator, so its
// element i names the row of element i of each.
template <int D, class Factor>
__device__ inline void scale_rows(FragAcc (&acc)[D], const FragAcc& row_of, Factor factor) {
#pragma unroll
  for (int i = 0; i < FragAcc::num_elements; ++i) {
    const float f = factor(static_cast<int>(row_of.x[i]));
#pragma unroll
    for (int j = 0; j < D; ++j) acc[j].x[i] *= f;
  }
}

// Tokens [t0, t0 + rows) of head `head` of batch b into a tile (rows x HS),
// zeros past T; the whole block, 16 bytes a load where s.wide.
template <int HS>
__device__ inline void load_rows(bf* tile, int ld, const bf* base, size_t stride, int b, int Tn, int t0, int rows, int head,
                                 bool wide) {
  if (wide) {
    constexpr int packs = HS / ft::kPack;
    for (int e = threadIdx.x; e < rows * packs; e += blockDim.x) {
      const int r = e / packs, i = (e % packs) * ft::kPack, t = t0 + r;
      Bf16x8 x{};
      if (t < Tn) x = *packed<const Bf16x8>(row_at(base, stride, b, Tn, t, head, HS) + i);
      *packed<Bf16x8>(tile + r * ld + i) = x;
    }
    return;
  }
  const bf zero_value = __float2bfloat16(0.0f);
  for (int e = threadIdx.x; e < rows * HS; e += blockDim.x) {
    const int r = e / HS, i = e % HS, t = t0 + r;
    tile[r * ld + i] = t < Tn ? row_at(base, stride, b, Tn, t, head, HS)[i] : zero_value;
  }
}

// Per-row values (lse or D) of rows [t0, t0 + rows) from `row` (T of them),
// zeros past T; the block's first `rows` threads.
__device__ inline void load_values(float* dst, const float* row, int Tn, int t0, int rows) {
  const int x = static_cast<int>(threadIdx.x);
  if (x < rows) dst[x] = t0 + x < Tn ? row[t0 + x] : 0.0f;
}

// Tokens [t0, t0 + 16) of head `head` = a warp's staged fp32 rows, each
// element rounded once; rows past T are padding. One warp. (The gradients
// too are written, not added: each row's sum is complete in its block.)
template <int HS>
__device__ inline void write_rows(bf* base, size_t stride, int b, int Tn, int t0, int head, const float* rows, int ld,
                                  int lane, bool wide) {
  if (wide) {
    constexpr int packs = HS / ft::kPack;
    for (int e = lane; e < F * packs; e += 32) {
      const int r = e / packs, i = (e % packs) * ft::kPack, t = t0 + r;
      if (t >= Tn) continue;
      Bf16x8* p = packed<Bf16x8>(row_at(base, stride, b, Tn, t, head, HS) + i);
      const float* x_rows = rows + r * ld + i;
      Bf16x8 x;
#pragma unroll
      for (int u = 0; u < ft::kPack / 2; ++u) x.w[u] = word_of(x_rows[2 * u], x_rows[2 * u + 1]);
      *p = x;
    }
    return;
  }
  for (int e = lane; e < F * HS; e += 32) {
    const int r = e / HS, i = e % HS, t = t0 + r;
    if (t >= Tn) continue;
    bf* p = row_at(base, stride, b, Tn, t, head, HS) + i;
    *p = __float2bfloat16(rows[r * ld + i]);
  }
}

// A warp's D accumulators through its rows of the staging tile to the tensor.
template <int D>
__device__ inline void write_accumulators(const FragAcc (&acc)[D], float* stage, int ld, bf* base, size_t stride, int b,
                                          int Tn, int t0, int head, int lane, bool wide) {
#pragma unroll
  for (int j = 0; j < D; ++j) wmma::store_matrix_sync(stage + j * F, acc[j], ld, wmma::mem_row_major);
  __syncwarp();
  write_rows<D * F>(base, stride, b, Tn, t0, head, stage, ld, lane, wide);
  __syncwarp();  // the rows are read before the warp stages the next ones
}

// The column pair (of a row's half, `columns` wide) that lane step j visits:
// rotated by `rotation` so that the warp's accesses spread over the banks.
__device__ inline int pair_column(int half, int columns, int j, int rotation) {
  const int pairs = columns / 4;
  return half * (columns / 2) + 2 * ((j + rotation) % pairs);
}

template <int D>
__global__ void __launch_bounds__(ft::kThreads)
    forward_kernel(bf* out, size_t out_stride, float* lse, const bf* q, size_t q_stride, const bf* k, size_t k_stride,
                   const bf* v, size_t v_stride, Shape s, ft::ForwardLayout L) {
  constexpr int HS = D * F;
  unsigned char* smem = dynamic_shared<unsigned char>();
  bf *Qs = at<bf>(smem, L.q), *Ks = at<bf>(smem, L.k), *Vs = at<bf>(smem, L.v), *Ps = at<bf>(smem, L.p);
  float *Ss = at<float>(smem, L.s), *m = at<float>(smem, L.m), *l = at<float>(smem, L.l);
  float *corr = at<float>(smem, L.corr), *row_numbers = at<float>(smem, L.rows);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * F;
  // The longest rows (the last tiles, causal) start first.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * ft::kRows;
  const int b = blockIdx.y / s.NH, h = blockIdx.y % s.NH, kh = h / (s.NH / s.KVH);
  load_rows<HS>(Qs, L.q.ld, q, q_stride, b, s.Tn, q0, ft::kRows, h, s.wide);
  if (threadIdx.x < ft::kRows) {
    m[threadIdx.x] = -INFINITY;
    l[threadIdx.x] = 0.0f;
  }
  for (int e = threadIdx.x; e < F * F; e += blockDim.x) row_numbers[e] = static_cast<float>(e / F);
  __syncthreads();
  FragA qf[D];
  load_operand(qf, Qs + r0 * L.q.ld, L.q.ld);
  FragAcc of[D], row_of;
  zero(of);
  wmma::load_matrix_sync(row_of, row_numbers, F, wmma::mem_row_major);
  // This lane's row and half of the columns in the softmax step.
  const int a = lane % kPartner, half = lane / kPartner, r = r0 + a, t = q0 + r;
  float* srow = Ss + r * L.s.ld;
  bf* prow = Ps + r * L.p.ld;
  for (int k0 = 0; k0 < ft::key_end(q0, s.Tn); k0 += ft::kKeys) {
    __syncthreads();  // every warp is done with the previous tile
    load_rows<HS>(Ks, L.k.ld, k, k_stride, b, s.Tn, k0, ft::kKeys, kh, s.wide);
    load_rows<HS>(Vs, L.v.ld, v, v_stride, b, s.Tn, k0, ft::kKeys, kh, s.wide);
    __syncthreads();
    rows_dot_tile(Ss + r0 * L.s.ld, L.s.ld, qf, Ks, L.k.ld, ft::kKeys);
    __syncwarp();
    const float m_old = m[r];
    float mx = -INFINITY;
    for (int j = 0; j < ft::kKeys / 4; ++j) {
      const int c = pair_column(half, ft::kKeys, j, a);
      const Float2 x = *packed<const Float2>(srow + c);
      if (ft::visible(t, k0 + c, s.Tn)) mx = fmaxf(mx, x.a);
      if (ft::visible(t, k0 + c + 1, s.Tn)) mx = fmaxf(mx, x.b);
    }
    mx = fmaxf(mx, __shfl_xor_sync(kAll, mx, kPartner));
    const float m_new = fmaxf(m_old, mx * s.scale);           // scale > 0 keeps the maximum
    const float base = m_new == -INFINITY ? 0.0f : m_new;      // a padding row: nothing visible yet
    float sum = 0.0f;
    for (int j = 0; j < ft::kKeys / 4; ++j) {
      const int c = pair_column(half, ft::kKeys, j, a);
      const Float2 x = *packed<const Float2>(srow + c);
      const float p0 = ft::visible(t, k0 + c, s.Tn) ? __expf(x.a * s.scale - base) : 0.0f;
      const float p1 = ft::visible(t, k0 + c + 1, s.Tn) ? __expf(x.b * s.scale - base) : 0.0f;
      *packed<unsigned>(prow + c) = word_of(p0, p1);
      sum += p0 + p1;
    }
    sum += __shfl_xor_sync(kAll, sum, kPartner);
    const float correction = __expf(m_old - base);  // what was summed against the old maximum
    __syncwarp();  // both lanes have read m[r]
    if (half == 0) {
      m[r] = m_new;
      l[r] = l[r] * correction + sum;
      corr[r] = correction;
    }
    __syncwarp();  // P and the corrections are written
    scale_rows(of, row_of, [&](int row) { return corr[r0 + row]; });
    add_product(of, Ps + r0 * L.p.ld, L.p.ld, Vs, L.v.ld, ft::kKeys);
  }
  __syncwarp();
  scale_rows(of, row_of, [&](int row) { return 1.0f / l[r0 + row]; });
  __syncthreads();  // every warp is done with K and V: the staging tile lies over them
  write_accumulators<D>(of, at<float>(smem, L.stage) + r0 * L.stage.ld, L.stage.ld, out, out_stride, b, s.Tn, q0 + r0,
                               h, lane, s.wide);
  if (lane < F && q0 + r0 + lane < s.Tn) {
    lse[(static_cast<size_t>(b) * s.NH + h) * s.Tn + q0 + r0 + lane] = m[r0 + lane] + logf(l[r0 + lane]);
  }
}

// dq = sum over keys of dS k, dS = P (dout . v - D) scale, P = exp(s - lse).
template <int D>
__global__ void __launch_bounds__(ft::kThreads)
    query_kernel(bf* dq, size_t dq_stride, const float* rowdot, const float* lse, const bf* dout, size_t dout_stride,
                 const bf* q, size_t q_stride, const bf* k, size_t k_stride, const bf* v, size_t v_stride, Shape s,
                 ft::QueryLayout L) {
  constexpr int HS = D * F;
  unsigned char* smem = dynamic_shared<unsigned char>();
  bf *Qs = at<bf>(smem, L.q), *dOs = at<bf>(smem, L.dout), *Ks = at<bf>(smem, L.k), *Vs = at<bf>(smem, L.v);
  bf* dSs = at<bf>(smem, L.ds);
  float *Ss = at<float>(smem, L.s), *dPs = at<float>(smem, L.dp);
  float *lse_s = at<float>(smem, L.lse), *D_s = at<float>(smem, L.rowdot);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * F;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * ft::kRows;
  const int b = blockIdx.y / s.NH, h = blockIdx.y % s.NH, kh = h / (s.NH / s.KVH);
  const size_t rows = (static_cast<size_t>(b) * s.NH + h) * s.Tn;
  load_rows<HS>(Qs, L.q.ld, q, q_stride, b, s.Tn, q0, ft::kRows, h, s.wide);
  load_rows<HS>(dOs, L.dout.ld, dout, dout_stride, b, s.Tn, q0, ft::kRows, h, s.wide);
  load_values(lse_s, lse + rows, s.Tn, q0, ft::kRows);
  load_values(D_s, rowdot + rows, s.Tn, q0, ft::kRows);
  __syncthreads();
  // Q and dout lie over the score tiles: every warp has its fragments before
  // the loop's first barrier, and scores come after it.
  FragA qf[D], df[D];
  load_operand(qf, Qs + r0 * L.q.ld, L.q.ld);
  load_operand(df, dOs + r0 * L.dout.ld, L.dout.ld);
  FragAcc dqf[D];
  zero(dqf);
  const int a = lane % kPartner, half = lane / kPartner, r = r0 + a, t = q0 + r;
  for (int k0 = 0; k0 < ft::key_end(q0, s.Tn); k0 += ft::kKeys) {
    __syncthreads();
    load_rows<HS>(Ks, L.k.ld, k, k_stride, b, s.Tn, k0, ft::kKeys, kh, s.wide);
    load_rows<HS>(Vs, L.v.ld, v, v_stride, b, s.Tn, k0, ft::kKeys, kh, s.wide);
    __syncthreads();
    rows_dot_tile(Ss + r0 * L.s.ld, L.s.ld, qf, Ks, L.k.ld, ft::kKeys);
    rows_dot_tile(dPs + r0 * L.dp.ld, L.dp.ld, df, Vs, L.v.ld, ft::kKeys);
    __syncwarp();
    for (int j = 0; j < ft::kKeys / 4; ++j) {
      const int c = pair_column(half, ft::kKeys, j, a);
      const Float2 x = *packed<const Float2>(Ss + r * L.s.ld + c), dp = *packed<const Float2>(dPs + r * L.dp.ld + c);
      const float p0 = ft::visible(t, k0 + c, s.Tn) ? __expf(x.a * s.scale - lse_s[r]) : 0.0f;
      const float p1 = ft::visible(t, k0 + c + 1, s.Tn) ? __expf(x.b * s.scale - lse_s[r]) : 0.0f;
      *packed<unsigned>(dSs + r * L.ds.ld + c) = word_of(p0 * (dp.a - D_s[r]) * s.scale, p1 * (dp.b - D_s[r]) * s.scale);
    }
    __syncwarp();
    add_product(dqf, dSs + r0 * L.ds.ld, L.ds.ld, Ks, L.k.ld, ft::kKeys);
  }
  __syncthreads();  // every warp is done with K and V: the staging tile lies over them
  write_accumulators<D>(dqf, at<float>(smem, L.stage) + r0 * L.stage.ld, L.stage.ld, dq, dq_stride, b, s.Tn, q0 + r0, h,
                              lane, s.wide);
}

// dk = sum dS^T q and dv = sum P^T dout over the group's heads and the
// queries t >= t2, a key tile per block.
template <int D>
__global__ void __launch_bounds__(ft::kThreads)
    key_value_kernel(bf* dk, size_t dk_stride, bf* dv, size_t dv_stride, const float* rowdot, const float* lse,
                     const bf* dout, size_t dout_stride, const bf* q, size_t q_stride, const bf* k, size_t k_stride,
                     const bf* v, size_t v_stride, Shape s, ft::KeyValueLayout L) {
  constexpr int HS = D * F;
  constexpr int kQ = ft::kKeyValueQueries;
  unsigned char* smem = dynamic_shared<unsigned char>();
  bf *Ks = at<bf>(smem, L.k), *Vs = at<bf>(smem, L.v), *Qs = at<bf>(smem, L.q), *dOs = at<bf>(smem, L.dout);
  bf *Pt = at<bf>(smem, L.pt), *dSt = at<bf>(smem, L.dst);
  float *St = at<float>(smem, L.st), *dPt = at<float>(smem, L.dpt), *lse_s = at<float>(smem, L.lse);
  float* D_s = at<float>(smem, L.rowdot);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * F;
  // The longest key rows (the first tiles, causal) start first.
  const int k0 = blockIdx.x * ft::kRows;
  const int b = blockIdx.y / s.KVH, kh = blockIdx.y % s.KVH, group = s.NH / s.KVH;
  load_rows<HS>(Ks, L.k.ld, k, k_stride, b, s.Tn, k0, ft::kRows, kh, s.wide);
  load_rows<HS>(Vs, L.v.ld, v, v_stride, b, s.Tn, k0, ft::kRows, kh, s.wide);
  FragAcc dkf[D], dvf[D];
  zero(dkf);
  zero(dvf);
  // Score rows here are 32 queries wide: pairs rotated by a / 8 (not a, as for
  // 64 keys) put a warp's accesses in different banks.
  const int a = lane % kPartner, half = lane / kPartner, r = r0 + a, key = k0 + r;
  for (int h = kh * group; h < (kh + 1) * group; ++h) {
    const size_t rows = (static_cast<size_t>(b) * s.NH + h) * s.Tn;
    for (int q0 = k0; q0 < s.Tn; q0 += kQ) {
      __syncthreads();
      load_rows<HS>(Qs, L.q.ld, q, q_stride, b, s.Tn, q0, kQ, h, s.wide);
      load_rows<HS>(dOs, L.dout.ld, dout, dout_stride, b, s.Tn, q0, kQ, h, s.wide);
      load_values(lse_s, lse + rows, s.Tn, q0, kQ);
      load_values(D_s, rowdot + rows, s.Tn, q0, kQ);
      __syncthreads();
      // S^T = K Q^T and dP^T = V dout^T for the warp's 16 keys: each key
      // fragment once, against both 16-query halves.
      {
        FragAcc st[kQ / F], dpt[kQ / F];
#pragma unroll
        for (int n = 0; n < kQ / F; ++n) {
          wmma::fill_fragment(st[n], 0.0f);
          wmma::fill_fragment(dpt[n], 0.0f);
        }
#pragma unroll
        for (int j = 0; j < D; ++j) {
          FragA kf, vf;
          wmma::load_matrix_sync(kf, Ks + r0 * L.k.ld + j * F, L.k.ld);
          wmma::load_matrix_sync(vf, Vs + r0 * L.v.ld + j * F, L.v.ld);
#pragma unroll
          for (int n = 0; n < kQ / F; ++n) {
            FragBColumns qb, db;
            wmma::load_matrix_sync(qb, Qs + n * F * L.q.ld + j * F, L.q.ld);
            wmma::load_matrix_sync(db, dOs + n * F * L.dout.ld + j * F, L.dout.ld);
            wmma::mma_sync(st[n], kf, qb, st[n]);
            wmma::mma_sync(dpt[n], vf, db, dpt[n]);
          }
        }
#pragma unroll
        for (int n = 0; n < kQ / F; ++n) {
          wmma::store_matrix_sync(St + r0 * L.st.ld + n * F, st[n], L.st.ld, wmma::mem_row_major);
          wmma::store_matrix_sync(dPt + r0 * L.dpt.ld + n * F, dpt[n], L.dpt.ld, wmma::mem_row_major);
        }
      }
      __syncwarp();
      for (int j = 0; j < kQ / 4; ++j) {
        const int c = pair_column(half, kQ, j, a / 8);
        const Float2 x = *packed<const Float2>(St + r * L.st.ld + c), dp = *packed<const Float2>(dPt + r * L.dpt.ld + c);
        const float p0 = ft::visible(q0 + c, key, s.Tn) ? __expf(x.a * s.scale - lse_s[c]) : 0.0f;
        const float p1 = ft::visible(q0 + c + 1, key, s.Tn) ? __expf(x.b * s.scale - lse_s[c + 1]) : 0.0f;
        *packed<unsigned>(Pt + r * L.pt.ld + c) = word_of(p0, p1);
        *packed<unsigned>(dSt + r * L.dst.ld + c) =
            word_of(p0 * (dp.a - D_s[c]) * s.scale, p1 * (dp.b - D_s[c + 1]) * s.scale);
      }
      __syncwarp();
      add_product(dvf, Pt + r0 * L.pt.ld, L.pt.ld, dOs, L.dout.ld, kQ);
      add_product(dkf, dSt + r0 * L.dst.ld, L.dst.ld, Qs, L.q.ld, kQ);
    }
  }
  __syncthreads();  // every warp is done with K and V: the staging tile lies over them
  float* stage = at<float>(smem, L.stage) + r0 * L.stage.ld;
  write_accumulators<D>(dkf, stage, L.stage.ld, dk, dk_stride, b, s.Tn, k0 + r0, kh, lane, s.wide);
  write_accumulators<D>(dvf, stage, L.stage.ld, dv, dv_stride, b, s.Tn, k0 + r0, kh, lane, s.wide);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

inline dim3 grid(int Tn, int heads_of_batch) {
  return dim3(static_cast<unsigned>((Tn + ft::kRows - 1) / ft::kRows), static_cast<unsigned>(heads_of_batch));
}

// A tensor's rows take 16-byte accesses when its base is 16-byte aligned and
// its token stride a multiple of 8 elements (a head's offset, 16 D elements,
// then is too). The executor's tensors are; a view that is not runs the
// element-wise loads.
template <class T>
bool wide_rows(Heads<T> heads) {
  return reinterpret_cast<std::uintptr_t>(heads.base) % sizeof(Bf16x8) == 0 && heads.token_stride % ft::kPack == 0;
}

template <class... H>
Shape shape(int Tn, int NH, int KVH, int hs, H... heads) {
  return {Tn, NH, KVH, 1.0f / std::sqrt(static_cast<float>(hs)), (wide_rows(heads) && ...)};
}

// Calls f(std::integral_constant<int, D>{}) for D = hs / 16, the kernels'
// compiled head size.
template <class Fn>
void with_head_fragments(int hs, Fn&& f) {
  switch (ft::eligible(hs) ? hs / F : 0) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 8: return f(std::integral_constant<int, 8>{});
    default:
      throw std::invalid_argument("flash attention (tensor cores): head size " + std::to_string(hs) +
                                  " is not a multiple of 16 up to 128");
  }
}
static_assert(ft::kMaxHeadDim == 8 * F, "with_head_fragments compiles every head size the path takes");

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
  const Shape s = shape(Tn, NH, KVH, hs, out, q, k, v);
  with_head_fragments(hs, [&](auto d) {
    launch_tiles("flash_attention_forward (tensor cores)", forward_kernel<decltype(d)::value>, grid(Tn, B * NH), L.bytes,
                 dev(out.base), out.token_stride, lse, dev(q.base), q.token_stride, dev(k.base), k.token_stride,
                 dev(v.base), v.token_stride, s, L);
  });
}

// dq, then dk and dv; rowdot holds D = dout . out.
void flash_attention_backward_tc(Heads<Bf16> dq, Heads<Bf16> dk, Heads<Bf16> dv, const float* rowdot,
                                 Heads<const Bf16> dout, Heads<const Bf16> q, Heads<const Bf16> k, Heads<const Bf16> v,
                                 const float* lse, int B, int Tn, int NH, int KVH, int hs) {
  const Shape s = shape(Tn, NH, KVH, hs, dq, dk, dv, dout, q, k, v);
  const ft::QueryLayout LQ = ft::query_layout(hs);
  const ft::KeyValueLayout LK = ft::key_value_layout(hs);
  with_head_fragments(hs, [&](auto d) {
    constexpr int D = decltype(d)::value;
    launch_tiles("flash_attention_backward (tensor cores, queries)", query_kernel<D>, grid(Tn, B * NH), LQ.bytes,
                 dev(dq.base), dq.token_stride, rowdot, lse, dev(dout.base), dout.token_stride, dev(q.base),
                 q.token_stride, dev(k.base), k.token_stride, dev(v.base), v.token_stride, s, LQ);
    launch_tiles("flash_attention_backward (tensor cores, keys, values)", key_value_kernel<D>, grid(Tn, B * KVH),
                 LK.bytes, dev(dk.base), dk.token_stride, dev(dv.base), dv.token_stride, rowdot, lse, dev(dout.base),
                 dout.token_stride, dev(q.base), q.token_stride, dev(k.base), k.token_stride, dev(v.base),
                 v.token_stride, s, LK);
  });
}

}  // namespace zp::cuda
