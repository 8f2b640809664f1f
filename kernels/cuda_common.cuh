// What the CUDA kernel files share: launch checking, the device storage type
// of a host-API type (Bf16 -> __nv_bfloat16), fp32 loads and rounded stores,
// grid sizing and block-wide reductions. Internal to kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/ops_cuda.h"

namespace zp::cuda {

constexpr int kBlock = 256;

// Past 48 KiB of dynamic shared memory a kernel must opt in first
// (cudaFuncSetAttribute), up to the device's limit (227 KiB on sm_90).
constexpr size_t kDefaultDynamicSharedBytes = 48 * 1024;

// Launches kernel(args...) on grid x block threads with shared_bytes of
// dynamic shared memory: CUDA's <<<>>> under nvcc; the host emulator
// (tests/simt/simt.h) where the kernels are compiled as C++ for
// tests/cuda_ops_emulated_test. Opts in for shared_bytes past 48 KiB, so no
// launch site can forget (a row kernel's scores pass 48 KiB at 12,289
// tokens); the caller's check_launch reports a launch the device still
// refuses.
template <class Kernel, class... Args>
inline void launch_kernel(Kernel kernel, dim3 grid, dim3 block, size_t shared_bytes, Args... args) {
  if (shared_bytes > kDefaultDynamicSharedBytes)
    (void)cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes));
#ifdef __CUDACC__
  kernel<<<grid, block, shared_bytes>>>(args...);
#else
  simt::launch(kernel, grid, block, shared_bytes, args...);
#endif
}

// The block's dynamic shared memory (launch_kernel's shared_bytes).
template <class E>
__device__ inline E* dynamic_shared() {
#ifdef __CUDACC__
  extern __shared__ __align__(128) unsigned char zp_dynamic_shared[];
  return reinterpret_cast<E*>(zp_dynamic_shared);
#else
  return reinterpret_cast<E*>(simt::dynamic_shared());
#endif
}

// Throws with the kernel's name and CUDA's message when the last launch failed.
inline void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(kernel) + ": " + cudaGetErrorString(e));
}

// Storage type on the device for T of the host API.
template <class T>
struct Device {
  using type = T;
};
template <>
struct Device<Bf16> {
  using type = __nv_bfloat16;
};
template <class T>
using device_t = typename Device<T>::type;

template <class T>
device_t<T>* dev(T* p) {
  return reinterpret_cast<device_t<T>*>(p);
}
template <class T>
const device_t<T>* dev(const T* p) {
  return reinterpret_cast<const device_t<T>*>(p);
}

__device__ inline float to_f(float x) { return x; }
__device__ inline float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class D>
__device__ inline D from_f(float x);
template <>
__device__ inline float from_f<float>(float x) { return x; }
template <>
__device__ inline __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }  // round to nearest even

// Head `head` of token (b, t) of a tensor of heads (attention_cuda.h's Heads:
// element i at base[(b * T + t) * stride + head * hs + i]); D may be const.
template <class D>
__device__ inline D* row_at(D* base, size_t stride, int b, int Tn, int t, int head, int hs) {
  return base + (static_cast<size_t>(b) * Tn + t) * stride + static_cast<size_t>(head) * hs;
}

// p as a pointer to a pack V (an __align__(n) struct of n bytes), so one
// access moves n bytes (nvcc emits one 16-, 8- or 4-byte load or store for
// it). The GPU faults where p is not aligned to n; the emulator stops there.
template <class V, class E>
__device__ inline V* packed(E* p) {
#ifdef ZP_SIMT_HOST
  simt::check_aligned(p, alignof(V));
#endif
  return reinterpret_cast<V*>(p);
}

// 16 bytes in one access (through packed<>): eight bf16 as four words,
// element 2u in the low half of word u (so built, nvcc moves the pack in one
// 16-byte access; as eight __nv_bfloat16 members it stored them one by one),
// or four floats.
struct __align__(16) Bf16x8 {
  unsigned w[4];
};
struct __align__(16) Float4 {
  float f[4];
};
__device__ inline float element_of(const Bf16x8& x, int u) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(x.w[u / 2] >> (16 * (u % 2)))));
}
__device__ inline unsigned word_of(float low, float high) {
  return static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16(low))) |
         static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16(high))) << 16;
}

// E consecutive elements as floats: E = 1 one scalar access, E = kPack
// (8) 16-byte accesses, one for bf16 and two for fp32 (p then 16-byte
// aligned).
constexpr int kPack = 8;
template <int E>
struct Floats {
  float v[E];
};
template <int E, class D>
__device__ inline Floats<E> load(const D* p) {
  Floats<E> x;
  if constexpr (E == 1) {
    x.v[0] = to_f(*p);
  } else if constexpr (std::is_same_v<D, float>) {
    static_assert(E == kPack, "packs of kPack");
    for (int h = 0; h < E / 4; ++h) {
      const Float4 q = *packed<const Float4>(p + 4 * h);
      for (int j = 0; j < 4; ++j) x.v[4 * h + j] = q.f[j];
    }
  } else {
    static_assert(E == kPack, "packs of kPack");
    const Bf16x8 q = *packed<const Bf16x8>(p);
    for (int u = 0; u < E; ++u) x.v[u] = element_of(q, u);
  }
  return x;
}
template <int E, class D>
__device__ inline void store(D* p, const Floats<E>& x) {
  if constexpr (E == 1) {
    *p = from_f<D>(x.v[0]);
  } else if constexpr (std::is_same_v<D, float>) {
    for (int h = 0; h < E / 4; ++h) {
      Float4 q;
      for (int j = 0; j < 4; ++j) q.f[j] = x.v[4 * h + j];
      *packed<Float4>(p + 4 * h) = q;
    }
  } else {
    Bf16x8 q;
    for (int u = 0; u < E / 2; ++u) q.w[u] = word_of(x.v[2 * u], x.v[2 * u + 1]);
    *packed<Bf16x8>(p) = q;
  }
}

inline unsigned blocks_for(size_t n) { return static_cast<unsigned>(std::min<size_t>((n + kBlock - 1) / kBlock, 65535)); }

// Pointwise work over n elements: f.template step<E>(i) does elements i to
// i + E - 1 (load<E>, arithmetic, store<E>). Where every array is 16-byte
// aligned (`wide`), a thread takes kPack elements a step in 16-byte
// accesses and the n % kPack left over one by one; otherwise all go one by
// one. Scalar bf16 accesses move 64 bytes a warp instruction, packs 512
// (fp32: 128 and 1,024), so far fewer instructions keep HBM busy.
template <class F>
__global__ void pointwise_kernel(F f, size_t n, bool wide) {
  const size_t first = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t packs = wide ? n / kPack : 0;
  for (size_t p = first; p < packs; p += stride) f.template step<kPack>(p * kPack);
  for (size_t i = packs * kPack + first; i < n; i += stride) f.template step<1>(i);
}

// Null arrays (an optional output) do not count.
inline bool aligned16(std::initializer_list<const void*> arrays) {
  for (const void* a : arrays) {
    if (reinterpret_cast<uintptr_t>(a) % 16 != 0) return false;
  }
  return true;
}

template <class F>
void pointwise(const F& f, size_t n, const char* name, std::initializer_list<const void*> arrays) {
  if (n == 0) return;
  const bool wide = aligned16(arrays);
  launch_kernel(pointwise_kernel<F>, blocks_for(wide ? (n + kPack - 1) / kPack : n), kBlock, 0, f, n, wide);
  check_launch(name);
}

// Sum over the block (blockDim.x == kBlock); every thread gets the result.
__device__ inline float block_sum(float x) {
  __shared__ float partial[kBlock];
  __syncthreads();  // the buffer may still be read by a previous call
  partial[threadIdx.x] = x;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  return partial[0];
}

// Maximum over the block (blockDim.x == kBlock); every thread gets the result.
__device__ inline float block_max(float x) {
  __shared__ float partial[kBlock];
  __syncthreads();
  partial[threadIdx.x] = x;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] = fmaxf(partial[threadIdx.x], partial[threadIdx.x + stride]);
    __syncthreads();
  }
  return partial[0];
}

// Column sums over N rows of C columns, deterministic (a fixed order, no
// atomics). F gives K values per element and stores the K sums of a column:
// `static constexpr int K`, `void values(size_t row, int column, float* v)
// const` and `void store(int column, const float* sums) const`, both
// __device__. The weight gradients of the norms and the bias gradient of a
// product are such sums.
//
// A block takes 32 columns of one chunk of rows; its kRowGroups thread rows
// each sum every kRowGroups-th row of the chunk, and the partials are added
// in order in shared memory. With one chunk a block covers all N rows, so
// only C / 32 blocks run: 50 for GPT-2 XL's 1,600 columns on an H200's 132
// SMs, each thread walking 512 rows, too few loads in flight to keep HBM
// busy. So where the caller lends scratch (Scratch, ops_cuda.h) the rows are
// split into chunks (column_split: about kColumnSumBlocks blocks in all),
// each chunk's K x C sums go to the scratch, and a second kernel adds the
// chunks' sums per column in chunk order. The split depends on N, C and K
// alone (and on the scratch being big enough), so the result is the same on
// every run and device.
constexpr int kColumns = 32, kRowGroups = 16;
constexpr int kColumnSumBlocks = 2048;  // about four waves of 512-thread blocks on 132 SMs

struct ColumnSplit {
  int chunks = 1, rows_per_chunk = 0;
};

inline ColumnSplit column_split(int N, int C, int K, Scratch scratch) {
  const int column_blocks = (C + kColumns - 1) / kColumns;
  const int by_rows = (N + kRowGroups - 1) / kRowGroups;  // a chunk gives each thread row at least one row
  const size_t chunk_bytes = static_cast<size_t>(K) * static_cast<size_t>(C) * sizeof(float);
  const size_t by_scratch = chunk_bytes == 0 ? 0 : scratch.bytes / chunk_bytes;
  int chunks = std::max(1, kColumnSumBlocks / std::max(column_blocks, 1));
  chunks = static_cast<int>(std::min<size_t>({static_cast<size_t>(chunks), static_cast<size_t>(std::max(by_rows, 1)), by_scratch}));
  if (scratch.data == nullptr || chunks < 2) return {1, N};
  // Whole groups of kRowGroups rows a chunk; the last chunk may be shorter.
  int rows = (N + chunks - 1) / chunks;
  rows = (rows + kRowGroups - 1) / kRowGroups * kRowGroups;
  return {(N + rows - 1) / rows, rows};
}

// One chunk of rows (blockIdx.y) of 32 columns (blockIdx.x): its sums go to
// partial[(chunk * K + k) * C + column], or straight to f.store when
// partial is null (a single chunk).
template <class F>
__global__ void column_sums_kernel(F f, int N, int C, int rows_per_chunk, float* partial) {
  __shared__ float group_sums[F::K][kRowGroups][kColumns];
  const int column = blockIdx.x * kColumns + threadIdx.x, group = threadIdx.y;
  const int first = blockIdx.y * rows_per_chunk, end = N - first < rows_per_chunk ? N : first + rows_per_chunk;
  float sums[F::K] = {};
  if (column < C) {
    float v[F::K];
    for (int row = first + group; row < end; row += kRowGroups) {
      f.values(static_cast<size_t>(row), column, v);
      for (int k = 0; k < F::K; ++k) sums[k] += v[k];
    }
  }
  for (int k = 0; k < F::K; ++k) group_sums[k][group][threadIdx.x] = sums[k];
  __syncthreads();
  if (group != 0 || column >= C) return;
  for (int k = 0; k < F::K; ++k) {
    float total = 0;
    for (int g = 0; g < kRowGroups; ++g) total += group_sums[k][g][threadIdx.x];
    sums[k] = total;
  }
  if (partial == nullptr) {
    f.store(column, sums);
    return;
  }
  for (int k = 0; k < F::K; ++k) partial[(static_cast<size_t>(blockIdx.y) * F::K + k) * C + column] = sums[k];
}

// The chunks' sums of each column, added in chunk order, then stored.
template <class F>
__global__ void column_chunks_sum_kernel(F f, const float* partial, int chunks, int C) {
  const int column = blockIdx.x * blockDim.x + threadIdx.x;
  if (column >= C) return;
  float sums[F::K] = {};
  for (int chunk = 0; chunk < chunks; ++chunk) {
    for (int k = 0; k < F::K; ++k) sums[k] += partial[(static_cast<size_t>(chunk) * F::K + k) * C + column];
  }
  f.store(column, sums);
}

// Both passes run on the caller's stream (the default one), so the scratch
// is free again for whatever the stream runs next.
template <class F>
void column_sums(const F& f, int N, int C, const char* name, Scratch scratch = {}) {
  const ColumnSplit split = column_split(N, C, F::K, scratch);
  const dim3 block(kColumns, kRowGroups);
  const dim3 grid(static_cast<unsigned>((C + kColumns - 1) / kColumns), static_cast<unsigned>(split.chunks));
  float* partial = split.chunks > 1 ? static_cast<float*>(scratch.data) : nullptr;
  launch_kernel(column_sums_kernel<F>, grid, block, 0, f, N, C, split.rows_per_chunk, partial);
  check_launch(name);
  if (partial == nullptr) return;
  launch_kernel(column_chunks_sum_kernel<F>, dim3(static_cast<unsigned>((C + kBlock - 1) / kBlock)), dim3(kBlock), 0, f,
                static_cast<const float*>(partial), split.chunks, C);
  check_launch(name);
}

}  // namespace zp::cuda
