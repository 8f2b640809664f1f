// The GEMM measurements `zeroplan calibrate` fits (issue 7): bf16 products
// through kernels/matmul_cublaslt.h (the executor's own path), timed with
// CUDA events, over the shapes of shared/reference/h200.md's table, in a
// shuffled order repeated for several rounds so that clock throttling
// spreads over every shape instead of the last ones (the caveat of that
// table). Prints CSV `m,n,k,tflops`, the median round per shape. Usage:
// gpu_gemm_sweep [ROUNDS] > gemm.csv. Built only with CUDA.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/matmul_cublaslt.h"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

struct Shape {
  int m, n, k;
  std::vector<double> tflops;
};

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  if (rounds < 1) {
    std::fprintf(stderr, "gpu_gemm_sweep: ROUNDS must be a positive integer\n");
    return 2;
  }
  try {
    std::vector<Shape> shapes;
    const std::array<std::array<int, 2>, 12> nk = {{{768, 768}, {768, 3072}, {3072, 768}, {1600, 6400}, {6400, 1600},
                                                    {4096, 4096}, {4096, 14336}, {14336, 4096}, {8192, 8192},
                                                    {1024, 8192}, {8192, 1024}, {16384, 16384}}};
    for (int m : {1024, 4096, 8192, 16384})
      for (const auto& s : nk) shapes.push_back({m, s[0], s[1], {}});
    size_t most = 0;
    for (const Shape& s : shapes) most = std::max({most, size_t(s.m) * s.k, size_t(s.n) * s.k, size_t(s.m) * s.n});
    void *a = nullptr, *b = nullptr, *c = nullptr, *workspace = nullptr;
    const size_t workspace_bytes = 32u << 20;
    check(cudaMalloc(&a, most * 2), "cudaMalloc");
    check(cudaMalloc(&b, most * 2), "cudaMalloc");
    check(cudaMalloc(&c, most * 2), "cudaMalloc");
    check(cudaMalloc(&workspace, workspace_bytes), "cudaMalloc");
    check(cudaMemset(a, 0, most * 2), "cudaMemset");  // zeros: the timing does not depend on the values
    check(cudaMemset(b, 0, most * 2), "cudaMemset");
    zp::cuda::Matmul mm(workspace, workspace_bytes);
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
    std::mt19937 rng(1);
    std::vector<size_t> order(shapes.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto* A = static_cast<zp::cuda::Bf16*>(a);
    auto* B = static_cast<zp::cuda::Bf16*>(b);
    auto* C = static_cast<zp::cuda::Bf16*>(c);
    for (int round = 0; round < rounds; ++round) {
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t i : order) {
        Shape& s = shapes[i];
        // C (m,n) = A (m,k) B^T with B stored (n,k): the executor's forward.
        for (int w = 0; w < 3; ++w) mm.forward(C, A, B, static_cast<const zp::cuda::Bf16*>(nullptr), s.m, s.k, s.n);
        const int reps = 10;
        check(cudaEventRecord(start), "cudaEventRecord");
        for (int r = 0; r < reps; ++r) mm.forward(C, A, B, static_cast<const zp::cuda::Bf16*>(nullptr), s.m, s.k, s.n);
        check(cudaEventRecord(stop), "cudaEventRecord");
        check(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float ms = 0;
        check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        s.tflops.push_back(2.0 * s.m * s.n * s.k * reps / (ms * 1e-3) / 1e12);
      }
    }
    std::printf("# bf16 GEMMs through cuBLASLt (kernels/matmul_cublaslt.h), median of %d shuffled rounds of 10 runs\n",
                rounds);
    std::printf("m,n,k,tflops\n");
    for (Shape& s : shapes) {
      std::sort(s.tflops.begin(), s.tflops.end());
      std::printf("%d,%d,%d,%.1f\n", s.m, s.n, s.k, s.tflops[s.tflops.size() / 2]);
    }
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    cudaFree(workspace);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_gemm_sweep: %s\n", e.what());
    return 1;
  }
  return 0;
}
