// A host emulator of the few CUDA features the tensor-core flash kernels use
// (kernels/flash_attention_tc_kernels.cuh), so their own source runs on a
// CPU in tests: every CUDA thread of a block is a std::thread with its own
// threadIdx, blockIdx, gridDim and blockDim; __syncthreads and __syncwarp
// are barriers of the block and of the thread's warp; __shfl_xor_sync
// passes values through the warp's slots between two barriers; dynamic
// shared memory is one buffer per block; blocks run one after another.
// WMMA fragments hold the whole 16 x 16 tile in every lane: loads read it,
// mma computes it (fp32 sums of exact bf16 products), and a store is one
// lane's write between two warp barriers, so no lane reads a tile another is
// writing. What this cannot show: the hardware's fragment layouts, timing,
// and memory ordering the kernels would get wrong without their barriers
// (the emulator's barriers order memory, as CUDA's do).
//
// Test-only, one translation unit: the CUDA names are global, as in CUDA.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __launch_bounds__(threads)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace simt {

// A reusable barrier for `count` threads.
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const unsigned long long generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      wake_.notify_all();
      return;
    }
    wake_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  int count_, arrived_ = 0;
  unsigned long long generation_ = 0;
};

constexpr int kWarp = 32;

struct Block {
  explicit Block(int threads, size_t shared_bytes)
      : block_barrier(threads), shared(shared_bytes + 128), slots(static_cast<size_t>(threads)) {
    for (int w = 0; w < (threads + kWarp - 1) / kWarp; ++w) warp_barriers.emplace_back(new Barrier(kWarp));
  }
  ~Block() {
    for (Barrier* b : warp_barriers) delete b;
  }
  Barrier block_barrier;
  std::vector<Barrier*> warp_barriers;
  std::vector<unsigned char> shared;
  std::vector<float> slots;  // one per thread, for shuffles
  unsigned char* shared_base() {
    const auto p = reinterpret_cast<std::uintptr_t>(shared.data());
    return shared.data() + ((128 - p % 128) % 128);  // aligned as CUDA's dynamic shared memory
  }
};

inline thread_local Block* current = nullptr;

}  // namespace simt

inline thread_local dim3 threadIdx, blockIdx, gridDim, blockDim;

inline void __syncthreads() { simt::current->block_barrier.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { simt::current->warp_barriers[threadIdx.x / simt::kWarp]->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float value, int lane_mask) {
  simt::Block& b = *simt::current;
  const unsigned self = threadIdx.x, warp_base = self / simt::kWarp * simt::kWarp;
  b.slots[self] = value;
  __syncwarp();
  const float other = b.slots[warp_base + ((self - warp_base) ^ static_cast<unsigned>(lane_mask))];
  __syncwarp();
  return other;
}
inline float __expf(float x) { return std::exp(x); }

namespace simt {

// Runs kernel(args...) on every thread of every block of `grid`, a block at a time.
template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, int threads, size_t shared_bytes, Args... args) {
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      Block block(threads, shared_bytes);
      std::vector<std::thread> pool;
      pool.reserve(static_cast<size_t>(threads));
      for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
          current = &block;
          threadIdx = dim3(static_cast<unsigned>(t));
          blockIdx = dim3(bx, by);
          gridDim = grid;
          blockDim = dim3(static_cast<unsigned>(threads));
          kernel(args...);
        });
      }
      for (std::thread& th : pool) th.join();
    }
  }
}

// bf16 storage as the device holds it: round to nearest even on the way in.
struct Bf16 {
  uint16_t bits;
};
inline Bf16 to_bf16(float x) {
  uint32_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  if (std::isnan(x)) return Bf16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  return Bf16{static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}
inline float to_float(Bf16 x) {
  const uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// WMMA (nvcuda::wmma) with every lane holding the whole tile.
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  float x[rows * cols];  // row-major, whatever the memory layout
};

template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float value) {
  for (float& e : f.x) e = value;
}

template <class Use, int M, int N, int K, class T, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const Bf16* p, unsigned ld) {
  using F = fragment<Use, M, N, K, T, Layout>;
  for (int r = 0; r < F::rows; ++r) {
    for (int c = 0; c < F::cols; ++c) {
      const size_t at = std::is_same_v<Layout, row_major> ? static_cast<size_t>(r) * ld + c : static_cast<size_t>(c) * ld + r;
      f.x[r * F::cols + c] = to_float(p[at]);
    }
  }
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ld, layout_t layout) {
  for (int r = 0; r < M; ++r) {
    for (int c = 0; c < N; ++c) f.x[r * N + c] = layout == mem_row_major ? p[static_cast<size_t>(r) * ld + c] : p[static_cast<size_t>(c) * ld + r];
  }
}

template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  fragment<accumulator, M, N, K, float> out;
  for (int r = 0; r < M; ++r) {
    for (int n = 0; n < N; ++n) {
      float sum = c.x[r * N + n];
      for (int k = 0; k < K; ++k) sum += a.x[r * K + k] * b.x[k * N + n];
      out.x[r * N + n] = sum;
    }
  }
  d = out;
}

// One lane writes the tile, between barriers of its warp.
template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ld, layout_t layout) {
  __syncwarp();
  if (threadIdx.x % kWarp == 0) {
    for (int r = 0; r < M; ++r) {
      for (int c = 0; c < N; ++c) {
        (layout == mem_row_major ? p[static_cast<size_t>(r) * ld + c] : p[static_cast<size_t>(c) * ld + r]) = f.x[r * N + c];
      }
    }
  }
  __syncwarp();
}
}  // namespace wmma

}  // namespace simt

inline simt::Bf16 __float2bfloat16(float x) { return simt::to_bf16(x); }
inline float __bfloat162float(simt::Bf16 x) { return simt::to_float(x); }
