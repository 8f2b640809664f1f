// The GPU's memory-bound kernels (issue 7), each alone, timed with CUDA
// events, the median of ROUNDS after one warm-up, at GPT-2 XL's training
// shapes (8 x 1,024 tokens, hidden 1,600, MLP 6,400) and over a flat
// optimizer buffer. The time model prices this work as bytes at
// hbm_fraction of the catalog's HBM bandwidth (costmodel/compute.cc), so
// each row says what fraction its kernel reached:
//  - bytes: what the kernel must move at least, each array read or written
//    once (a backward's += reads its output too); the norms' weight
//    gradients are column sums that read dout and the input once more;
//  - copy: cudaMemcpy device to device of the largest buffer, the ceiling in
//    the same run (shared/reference/h200.md measured 4,270 GB/s);
//  - of_copy: the kernel's GB/s over the copy's.
// Prints CSV `kernel,dtype,elements,bytes,ms,GBps,of_copy`, the copy first.
// Usage: gpu_elementwise_bench [ROUNDS [SCALE]]: SCALE divides every size
// (the host emulator's build runs it at SCALE 4096).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/elementwise_cuda.h"
#include "kernels/ops_cuda.h"

namespace {

using zp::cuda::Bf16;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// Device buffers freed at the end of a case.
class Arena {
 public:
  ~Arena() {
    for (void* p : blocks_) cudaFree(p);
  }
  template <class E>
  E* zeros(size_t n) {
    void* p = nullptr;
    check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(E)), "cudaMalloc");
    blocks_.push_back(p);
    check(cudaMemset(p, 0, n * sizeof(E)), "cudaMemset");
    return static_cast<E*>(p);
  }

 private:
  std::vector<void*> blocks_;
};

// The median over `rounds` of `work`'s time in milliseconds, after one untimed run.
double median_ms(int rounds, const std::function<void()>& work) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  work();
  check(cudaDeviceSynchronize(), "warm-up");
  std::vector<double> ms;
  for (int r = 0; r < rounds; ++r) {
    check(cudaEventRecord(start), "cudaEventRecord");
    work();
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  check(cudaEventDestroy(start), "cudaEventDestroy");
  check(cudaEventDestroy(stop), "cudaEventDestroy");
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Bench {
  int rounds;
  double copy_GBps = 0;
  void row(const char* kernel, const char* dtype, size_t elements, double bytes, const std::function<void()>& work) {
    const double ms = median_ms(rounds, work);
    const double GBps = bytes / (ms * 1e-3) / 1e9;
    if (copy_GBps == 0) copy_GBps = GBps;  // the first row is the copy
    std::printf("%s,%s,%zu,%.0f,%.4f,%.1f,%.3f\n", kernel, dtype, elements, bytes, ms, GBps, GBps / copy_GBps);
    std::fflush(stdout);
  }
};

// The kernels of one storage type E at tokens x hidden (and x mlp), bytes at e per element.
template <class E>
void activation_kernels(Bench& bench, const char* dtype, size_t tokens, size_t hidden, size_t mlp) {
  const double e = sizeof(E);
  const size_t nc = tokens * hidden, nf = tokens * mlp;
  const int N = static_cast<int>(tokens), C = static_cast<int>(hidden);
  Arena a;
  E *x = a.zeros<E>(nc), *y = a.zeros<E>(nc), *d = a.zeros<E>(nc), *dx = a.zeros<E>(nc);
  E *w = a.zeros<E>(hidden), *b = a.zeros<E>(hidden), *dw = a.zeros<E>(hidden), *db = a.zeros<E>(hidden);
  float *mean = a.zeros<float>(tokens), *rstd = a.zeros<float>(tokens);
  // What the executor lends the column sums: the cuBLASLt workspace (32 MiB).
  const size_t scratch_bytes = 32u << 20;
  const zp::cuda::Scratch scratch{a.zeros<char>(scratch_bytes), scratch_bytes};
  const double rows = static_cast<double>(nc) * e, stats = static_cast<double>(tokens) * 8;
  bench.row("layernorm_forward", dtype, nc, 2 * rows + stats, [&] { zp::cuda::layernorm_forward(y, mean, rstd, x, w, b, N, C); });
  // Input gradient: dout, inp, dinp read, dinp written; weights: dout, inp again.
  bench.row("layernorm_backward", dtype, nc, 6 * rows + stats,
            [&] { zp::cuda::layernorm_backward(dx, dw, db, d, x, w, mean, rstd, N, C, scratch); });
  bench.row("layernorm_backward_one_pass_sums", dtype, nc, 6 * rows + stats,
            [&] { zp::cuda::layernorm_backward(dx, dw, db, d, x, w, mean, rstd, N, C); });
  bench.row("rmsnorm_backward", dtype, nc, 6 * rows + stats / 2,
            [&] { zp::cuda::rmsnorm_backward(dx, dw, d, x, w, rstd, N, C, scratch); });
  bench.row("residual_add", dtype, nc, 3 * rows, [&] { zp::cuda::add(y, x, d, nc); });
  bench.row("residual_backward", dtype, nc, 5 * rows, [&] { zp::cuda::residual_backward(dx, y, d, nc); });
  E *h = a.zeros<E>(nf), *g = a.zeros<E>(nf), *u = a.zeros<E>(nf), *dh = a.zeros<E>(nf), *dg = a.zeros<E>(nf);
  const double wide = static_cast<double>(nf) * e;
  bench.row("gelu_forward", dtype, nf, 2 * wide, [&] { zp::cuda::gelu_forward(g, h, nf); });
  bench.row("gelu_backward", dtype, nf, 3 * wide, [&] { zp::cuda::gelu_backward(dh, h, g, nf); });
  bench.row("swiglu_backward", dtype, nf, 5 * wide, [&] { zp::cuda::swiglu_backward(dg, dh, g, h, u, nf); });
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const long scale = argc > 2 ? std::atol(argv[2]) : 1;
  if (rounds < 1 || scale < 1) {
    std::fprintf(stderr, "gpu_elementwise_bench: ROUNDS and SCALE must be positive integers\n");
    return 2;
  }
  try {
    const size_t s = static_cast<size_t>(scale);
    const size_t tokens = 8 * 1024 / std::min<size_t>(s, 64), hidden = 1600, mlp = 6400;
    // A flat optimizer partition: 2^28 parameters (1 GiB of each fp32 state).
    const size_t params = (size_t{1} << 28) / s;
    std::printf("kernel,dtype,elements,bytes,ms,GBps,of_copy\n");
    Bench bench{rounds};
    {
      Arena a;
      const size_t bytes = params * sizeof(float);
      char *from = a.zeros<char>(bytes), *to = a.zeros<char>(bytes);
      bench.row("copy", "bytes", bytes, 2.0 * bytes, [&] { check(cudaMemcpy(to, from, bytes, cudaMemcpyDeviceToDevice), "copy"); });
    }
    activation_kernels<Bf16>(bench, "bf16", tokens, hidden / std::min<size_t>(s, 16), mlp / std::min<size_t>(s, 16));
    activation_kernels<float>(bench, "fp32", tokens, hidden / std::min<size_t>(s, 16), mlp / std::min<size_t>(s, 16));
    {
      Arena a;
      float *master = a.zeros<float>(params), *m = a.zeros<float>(params), *v = a.zeros<float>(params);
      Bf16 *grads = a.zeros<Bf16>(params), *low = a.zeros<Bf16>(params);
      float* grads32 = a.zeros<float>(params);
      const double n = static_cast<double>(params);
      // master, m, v read and written (24 B); gradient read; bf16 copy written.
      bench.row("adamw_bf16_grads", "fp32+bf16", params, n * (24 + 2 + 2),
                [&] { zp::cuda::adamw_step(master, low, grads, 1.0f, m, v, params, 1, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f); });
      bench.row("adamw_fp32_grads", "fp32", params, n * (24 + 4),
                [&] { zp::cuda::adamw_step<float>(master, nullptr, grads32, 1.0f, m, v, params, 1, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f); });
      bench.row("cast_fp32_to_bf16", "fp32+bf16", params, n * (4 + 2), [&] { zp::cuda::cast(low, master, params); });
      bench.row("add_into_fp32", "fp32+bf16", params, n * (4 + 4 + 2), [&] { zp::cuda::add_into_fp32(master, grads, params, true); });
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_elementwise_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
