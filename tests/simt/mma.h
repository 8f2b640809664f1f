// Stands in for CUDA's WMMA header (nvcuda::wmma) on the host emulator
// (simt.h): every lane of a warp holds the whole 16 x 16 tile (so x[i], for
// i below num_elements, is element (i / cols, i % cols), one mapping of the
// many a GPU's opaque one may be). Loads read
// it, mma computes it (fp32 sums of exact bf16 products, in k order), and a
// store is the warp's first lane writing the tile between two barriers of
// its warp, so no lane reads a tile another is writing.
#pragma once

#include <cstddef>
#include <type_traits>

#include "cuda_bf16.h"
#include "simt.h"

namespace nvcuda::wmma {

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
  static constexpr int num_elements = rows * cols;  // every lane holds the whole tile
  float x[rows * cols];                             // row-major, whatever the memory layout
};

template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float value) {
  for (float& e : f.x) e = value;
}

// matrix_a / matrix_b from bf16: element (r, c) at p[r * ld + c] (row_major) or p[c * ld + r].
template <class Use, int M, int N, int K, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, __nv_bfloat16, Layout>& f, const __nv_bfloat16* p, unsigned ld) {
  using F = fragment<Use, M, N, K, __nv_bfloat16, Layout>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) {
      const size_t at = std::is_same_v<Layout, row_major> ? static_cast<size_t>(r) * ld + c : static_cast<size_t>(c) * ld + r;
      f.x[r * F::cols + c] = __bfloat162float(p[at]);
    }
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ld, layout_t layout) {
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = layout == mem_row_major ? p[static_cast<size_t>(r) * ld + c] : p[static_cast<size_t>(c) * ld + r];
}

template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  fragment<accumulator, M, N, K, float> out;
  for (int r = 0; r < M; ++r)
    for (int n = 0; n < N; ++n) {
      float sum = c.x[r * N + n];
      for (int k = 0; k < K; ++k) sum += a.x[r * K + k] * b.x[k * N + n];
      out.x[r * N + n] = sum;
    }
  d = out;
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ld, layout_t layout) {
  __syncwarp();
  if (simt::block->current % simt::kWarp == 0) {
    for (int r = 0; r < M; ++r)
      for (int c = 0; c < N; ++c)
        (layout == mem_row_major ? p[static_cast<size_t>(r) * ld + c] : p[static_cast<size_t>(c) * ld + r]) = f.x[r * N + c];
  }
  __syncwarp();
}

}  // namespace nvcuda::wmma
