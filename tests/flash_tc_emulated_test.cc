// The tensor-core flash kernels' own source (kernels/flash_attention_tc_kernels.cuh)
// run on the host through the SIMT emulator of tests/simt_host.h, against
// the host's flash attention (executor/ops_flash_cpu.h, fp32 on the same
// bf16-rounded inputs), with cuda_ops_test's bf16 criterion: each output
// within 2e-2 of its largest value (the log-sum-exp within 1e-4). The
// shapes cross every tile edge: grouped KV heads with hs 80 over 67 tokens
// (a partial second tile), GPT-2's packed q,k,v with hs 64 over 130 tokens
// (three query tiles, the dk, dv kernel's query tiles past its key tile).
// What the GPU adds (the real fragments, timing) is tests/cuda_ops_test.cc's.
#include "tests/simt_host.h"

namespace zp::cuda {
using bf = simt::Bf16;
namespace wmma = simt::wmma;
inline unsigned char* flash_shared_memory() { return simt::current->shared_base(); }
}  // namespace zp::cuda

#include "kernels/flash_attention_tc_kernels.cuh"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "executor/ops_flash_cpu.h"

namespace {

using zp::cuda::bf;
namespace ft = zp::cuda::flash_tiles;

struct EmulatedLaunch {
  template <class Kernel, class... Args>
  void operator()(Kernel kernel, dim3 grid, size_t shared_bytes, Args... args) const {
    simt::launch(kernel, grid, ft::kThreads, shared_bytes, args...);
  }
};

std::vector<float> random_rounded(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = simt::to_float(simt::to_bf16(normal(rng)));
  return v;
}
std::vector<bf> to_device(const std::vector<float>& v) {
  std::vector<bf> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), simt::to_bf16);
  return out;
}
std::vector<float> to_host(const std::vector<bf>& v) {
  std::vector<float> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), simt::to_float);
  return out;
}

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& want, double tolerance) {
  REQUIRE(got.size() == want.size());
  double worst = 0, scale = 1e-6;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]) / scale);
  MESSAGE(what << ": worst difference " << worst << " of the largest value");
  CHECK(worst <= tolerance);
}

struct Case {
  bool packed;
  int B, Tn, NH, KVH, hs;
};

void check_case(const Case& c) {
  std::mt19937_64 rng(5);
  const size_t qw = static_cast<size_t>(c.NH) * c.hs, kw = static_cast<size_t>(c.KVH) * c.hs;
  // Packed: one (B,T,3C) tensor with q, k, v at 0, C, 2C (NH == KVH); else three tensors.
  const size_t ld_q = c.packed ? qw + 2 * kw : qw, ld_k = c.packed ? ld_q : kw;
  const size_t tokens = static_cast<size_t>(c.B) * c.Tn;
  const size_t nq = tokens * ld_q, nk = c.packed ? 0 : tokens * ld_k, no = tokens * qw;
  const size_t nl = static_cast<size_t>(c.B) * c.NH * c.Tn;
  std::vector<float> qin = random_rounded(nq, rng), kin = random_rounded(nk, rng);
  const std::vector<float> vin = random_rounded(nk, rng), d = random_rounded(no, rng);
  const size_t k_at = c.packed ? qw : 0, v_at = c.packed ? qw + kw : 0;
  // Keys grow along the sequence (x 0.5 at the start to x 4 at the end), so a
  // row's maximum rises in later key tiles and the online softmax's rescaling
  // is exercised, not only its first tile.
  std::vector<float>& keys = c.packed ? qin : kin;
  for (size_t tok = 0; tok < tokens; ++tok) {
    const float grow = 0.5f + 3.5f * static_cast<float>(tok % c.Tn) / c.Tn;
    for (size_t i = 0; i < kw; ++i) {
      float& x = keys[tok * ld_k + k_at + i];
      x = simt::to_float(simt::to_bf16(x * grow));
    }
  }
  const float* kh = c.packed ? qin.data() + k_at : kin.data();
  const float* vh = c.packed ? qin.data() + v_at : vin.data();

  // The host's flash attention in fp32; backward reads the output as the device stored it.
  std::vector<float> out(no), lse(nl), dqin(nq), dkin(nk), dvin(nk);
  zp::cpu::flash_attention_forward<float>({out.data(), qw}, lse.data(), {qin.data(), ld_q}, {kh, ld_k}, {vh, ld_k}, c.B,
                                          c.Tn, c.NH, c.KVH, c.hs);

  std::vector<bf> gq = to_device(qin), gk = to_device(kin), gv = to_device(vin), gd = to_device(d);
  std::vector<bf> gout(no, simt::to_bf16(0.0f)), gdq(nq, simt::to_bf16(0.0f)), gdk(nk, simt::to_bf16(0.0f)),
      gdv(nk, simt::to_bf16(0.0f));
  std::vector<float> glse(nl, 0.0f);
  const bf* gkb = c.packed ? gq.data() + k_at : gk.data();
  const bf* gvb = c.packed ? gq.data() + v_at : gv.data();
  zp::cuda::flash_tc::flash_tc_forward(EmulatedLaunch{}, gout.data(), qw, glse.data(), gq.data(), ld_q, gkb, ld_k, gvb,
                                       ld_k, c.B, c.Tn, c.NH, c.KVH, c.hs);
  const std::vector<float> out_device = to_host(gout);
  expect_close("out", out_device, out, 2e-2);
  expect_close("log-sum-exp", glse, lse, 1e-4);

  float* dkh = c.packed ? dqin.data() + k_at : dkin.data();
  float* dvh = c.packed ? dqin.data() + v_at : dvin.data();
  zp::cpu::flash_attention_backward<float>({dqin.data(), ld_q}, {dkh, ld_k}, {dvh, ld_k}, {d.data(), qw},
                                           {qin.data(), ld_q}, {kh, ld_k}, {vh, ld_k}, {out_device.data(), qw},
                                           lse.data(), c.B, c.Tn, c.NH, c.KVH, c.hs);
  // D = dout . out per query row, as the row-dot kernel computes it on the GPU.
  std::vector<float> rowdot(nl);
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < c.NH; ++h)
      for (int t = 0; t < c.Tn; ++t) {
        float s = 0;
        const size_t at = (static_cast<size_t>(b) * c.Tn + t) * qw + static_cast<size_t>(h) * c.hs;
        for (int i = 0; i < c.hs; ++i) s += d[at + i] * out_device[at + i];
        rowdot[(static_cast<size_t>(b) * c.NH + h) * c.Tn + t] = s;
      }
  bf* gdkb = c.packed ? gdq.data() + k_at : gdk.data();
  bf* gdvb = c.packed ? gdq.data() + v_at : gdv.data();
  zp::cuda::flash_tc::flash_tc_backward(EmulatedLaunch{}, gdq.data(), ld_q, gdkb, ld_k, gdvb, ld_k, rowdot.data(),
                                        glse.data(), gd.data(), qw, gq.data(), ld_q, gkb, ld_k, gvb, ld_k, c.B, c.Tn,
                                        c.NH, c.KVH, c.hs);
  expect_close(c.packed ? "dqkv" : "dq", to_host(gdq), dqin, 2e-2);
  if (!c.packed) {
    expect_close("dk", to_host(gdk), dkin, 2e-2);
    expect_close("dv", to_host(gdv), dvin, 2e-2);
  }
}

}  // namespace

TEST_CASE("tensor-core flash kernels, emulated: grouped KV heads, hs 80, 67 tokens") {
  check_case({false, 2, 67, 4, 2, 80});
}

TEST_CASE("tensor-core flash kernels, emulated: packed q,k,v, hs 64, 130 tokens") {
  check_case({true, 1, 130, 2, 2, 64});
}
