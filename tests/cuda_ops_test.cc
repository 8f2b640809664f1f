// The CUDA kernels (kernels/ops_cuda.h) against the CPU reference kernels on
// random inputs: fp32 within 1e-5 of the largest reference value, bf16 (inputs
// rounded to bf16 first, outputs rounded once) within 2e-2. Runs only where a
// CUDA device is present (ctest label `gpu`); elsewhere it says it skipped.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "executor/adamw.h"
#include "executor/ops_cpu.h"
#include "executor/ops_llama_cpu.h"
#include "executor/scalar.h"
#include "kernels/ops_cuda.h"

using namespace zp;

namespace {

bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// Host storage of T for the device: float, or bf16 bits.
template <class T>
T to_storage(float x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    return cuda::Bf16{Eigen::numext::bit_cast<uint16_t>(bf16(x))};
  }
}
template <class T>
float from_storage(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    return static_cast<float>(Eigen::numext::bit_cast<bf16>(x.bits));
  }
}

// A device buffer of n values of T, filled from floats (rounded to T).
template <class T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(const std::vector<float>& host) : n(host.size()) {
    check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
    std::vector<T> s(n);
    for (size_t i = 0; i < n; ++i) s[i] = to_storage<T>(host[i]);
    check(cudaMemcpy(p, s.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy to device");
  }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  std::vector<float> read() const {
    check(cudaDeviceSynchronize(), "kernel");
    std::vector<T> s(n);
    check(cudaMemcpy(s.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = from_storage<T>(s[i]);
    return out;
  }
};

std::vector<float> zeros(size_t n) { return std::vector<float>(n, 0.0f); }

std::vector<float> random_vec(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// What the device sees of x: x rounded to T.
template <class T>
std::vector<float> rounded(std::vector<float> x) {
  for (float& v : x) v = from_storage<T>(to_storage<T>(v));
  return x;
}

template <class T>
void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0, scale = 1e-6;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]) / scale);
  const double tolerance = std::is_same_v<T, float> ? 1e-5 : 2e-2;
  MESSAGE(what << ": worst difference " << worst << " of the largest value");
  CHECK(worst <= tolerance);
}

template <class T>
void check_kernels(const char* precision) {
  std::mt19937_64 rng(7);
  const int N = 37, C = 300;  // C past one block of threads, N not a multiple of anything
  const size_t NC = static_cast<size_t>(N) * C;
  const std::string p = precision;
  const std::vector<float> x = rounded<T>(random_vec(NC, rng)), w = rounded<T>(random_vec(C, rng)),
                           b = rounded<T>(random_vec(C, rng)), d = rounded<T>(random_vec(NC, rng));
  // LayerNorm.
  {
    std::vector<float> out(NC), mean(N), rstd(N), dx(NC), dw(C), db(C);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    cpu::layernorm_backward(dx.data(), dw.data(), db.data(), d.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
    DeviceBuffer<T> gx(x), gw(w), gb(b), gd(d), gout(zeros(NC)), gdx(zeros(NC)),
        gdw(zeros(C)), gdb(zeros(C));
    DeviceBuffer<float> gmean(zeros(N)), grstd(zeros(N));
    cuda::layernorm_forward(gout.p, gmean.p, grstd.p, gx.p, gw.p, gb.p, N, C);
    cuda::layernorm_backward(gdx.p, gdw.p, gdb.p, gd.p, gx.p, gw.p, gmean.p, grstd.p, N, C);
    expect_close<T>(p + " layernorm forward", gout.read(), out);
    expect_close<T>(p + " layernorm rstd", grstd.read(), rstd);
    expect_close<T>(p + " layernorm dx", gdx.read(), dx);
    expect_close<T>(p + " layernorm dweight", gdw.read(), dw);
    expect_close<T>(p + " layernorm dbias", gdb.read(), db);
  }
  // RMSNorm.
  {
    std::vector<float> out(NC), rstd(N), dx(NC), dw(C);
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C);
    cpu::rmsnorm_backward(dx.data(), dw.data(), d.data(), x.data(), w.data(), rstd.data(), N, C);
    DeviceBuffer<T> gx(x), gw(w), gd(d), gout(zeros(NC)), gdx(zeros(NC)), gdw(zeros(C));
    DeviceBuffer<float> grstd(zeros(N));
    cuda::rmsnorm_forward(gout.p, grstd.p, gx.p, gw.p, N, C);
    cuda::rmsnorm_backward(gdx.p, gdw.p, gd.p, gx.p, gw.p, grstd.p, N, C);
    expect_close<T>(p + " rmsnorm forward", gout.read(), out);
    expect_close<T>(p + " rmsnorm dx", gdx.read(), dx);
    expect_close<T>(p + " rmsnorm dweight", gdw.read(), dw);
  }
  // GELU and SwiGLU (the backward kernels add to what is there).
  {
    const std::vector<float> base = rounded<T>(random_vec(NC, rng));
    std::vector<float> out(NC), dx = base, dg = base, du = base, sw(NC);
    cpu::gelu_forward(out.data(), x.data(), NC);
    cpu::gelu_backward(dx.data(), x.data(), d.data(), NC);
    cpu::swiglu_forward(sw.data(), x.data(), d.data(), NC);
    const std::vector<float> out_rounded = rounded<T>(out);  // what the device's GELU output holds
    cpu::swiglu_backward(dg.data(), du.data(), out_rounded.data(), x.data(), d.data(), NC);
    DeviceBuffer<T> gx(x), gd(d), gout(zeros(NC)), gdx(base), gsw(zeros(NC)), gdg(base), gdu(base);
    cuda::gelu_forward(gout.p, gx.p, NC);
    cuda::gelu_backward(gdx.p, gx.p, gd.p, NC);
    cuda::swiglu_forward(gsw.p, gx.p, gd.p, NC);
    // The SwiGLU backward's output gradient: the device's own GELU output (rounded like the CPU's input).
    const std::vector<float> gelu_out = gout.read();
    DeviceBuffer<T> gdout(gelu_out);
    cuda::swiglu_backward(gdg.p, gdu.p, gdout.p, gx.p, gd.p, NC);
    expect_close<T>(p + " gelu forward", gelu_out, out);
    expect_close<T>(p + " gelu backward", gdx.read(), dx);
    expect_close<T>(p + " swiglu forward", gsw.read(), sw);
    expect_close<T>(p + " swiglu dgate", gdg.read(), dg);
    expect_close<T>(p + " swiglu dup", gdu.read(), du);
  }
  // AdamW: two steps on fp32 master weights from gradients of T.
  {
    const size_t n = 1000;
    std::vector<float> master = random_vec(n, rng), grads = rounded<T>(random_vec(n, rng)), m(n), v(n);
    DeviceBuffer<float> gmaster(master), gm(m), gv(v);
    DeviceBuffer<T> ggrads(grads);
    DeviceBuffer<cuda::Bf16> glow(zeros(n));
    const AdamConfig a{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    for (int step = 1; step <= 2; ++step) {
      adamw_step(master.data(), grads.data(), 0.5f, m.data(), v.data(), n, step, a);
      cuda::adamw_step(gmaster.p, glow.p, ggrads.p, 0.5f, gm.p, gv.p, n, step, a.lr, a.beta1, a.beta2, a.eps, a.weight_decay);
    }
    expect_close<float>(p + " adamw master weights", gmaster.read(), master);
    expect_close<cuda::Bf16>(p + " adamw bf16 copy", glow.read(), rounded<cuda::Bf16>(master));
  }
}

}  // namespace

TEST_CASE("CUDA kernels against the CPU kernels (fp32 and bf16)") {
  if (!have_device()) {
    MESSAGE("no CUDA device here: the CUDA kernel checks are skipped (they run where a GPU is, ctest -L gpu)");
    return;
  }
  check_kernels<float>("fp32");
  check_kernels<cuda::Bf16>("bf16");
  // The casts: fp32 -> bf16 rounds to nearest even as Eigen's bfloat16 does.
  std::mt19937_64 rng(3);
  const std::vector<float> x = random_vec(4097, rng);
  DeviceBuffer<float> gx(x), back(zeros(x.size()));
  DeviceBuffer<cuda::Bf16> low(zeros(x.size()));
  cuda::cast(low.p, gx.p, x.size());
  cuda::cast(back.p, low.p, x.size());
  CHECK(back.read() == rounded<cuda::Bf16>(x));
}
