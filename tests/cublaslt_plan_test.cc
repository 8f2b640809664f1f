// The CUDA backend's cuBLASLt plans (kernels/matmul_plan.h: a linear layer
// and its gradients; kernels/attention_gemm_plan.h: attention's products and
// the softmax passes between them), their transposes, leading dimensions,
// batch strides and epilogue, run by a host reference of cuBLASLt's
// column-major strided batches against the CPU kernels: linear layers with
// and without bias, grouped KV heads (Llama) and GPT-2's interleaved q,k,v.
// The CUDA side runs the same plans through cuBLASLt (tests/cuda_ops_test.cc,
// where a GPU is); this one holds the layout arithmetic to the reference
// without a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "executor/ops_cpu.h"
#include "executor/ops_llama_cpu.h"
#include "kernels/attention_gemm_plan.h"
#include "kernels/matmul_plan.h"

using namespace zp;

namespace {

// cuBLASLt's D_i = alpha op(A_i) op(B_i) + beta D_i, column-major, on the host.
struct HostOps {
  template <class In, class Out>
  void gemm(const cuda::Matmul::Batched& p, const char*) {
    for (int i = 0; i < p.count; ++i) {
      const In* a = static_cast<const In*>(p.a) + i * p.stride_a;
      const In* b = static_cast<const In*>(p.b) + i * p.stride_b;
      Out* d = static_cast<Out*>(p.d) + i * p.stride_d;
      for (int col = 0; col < p.n; ++col) {
        for (int row = 0; row < p.m; ++row) {
          double sum = 0;
          for (int k = 0; k < p.k; ++k) {
            const double av = p.transa ? a[k + static_cast<size_t>(row) * p.lda] : a[row + static_cast<size_t>(k) * p.lda];
            const double bv = p.transb ? b[col + static_cast<size_t>(k) * p.ldb] : b[k + static_cast<size_t>(col) * p.ldb];
            sum += av * bv;
          }
          Out& o = d[row + static_cast<size_t>(col) * p.ldd];
          const double bias = p.bias ? static_cast<const Out*>(p.bias)[row] : 0.0;  // the epilogue's, per row of D
          o = static_cast<Out>(p.alpha * sum + (p.beta != 0 ? p.beta * o : 0.0) + bias);
        }
      }
    }
  }
  void softmax(float* probs, const float* scores, int rows, int Tn) {
    for (int r = 0; r < rows; ++r) {
      const int t = r % Tn;
      const float* s = scores + static_cast<size_t>(r) * Tn;
      float* p = probs + static_cast<size_t>(r) * Tn;
      const float m = *std::max_element(s, s + t + 1);
      float sum = 0;
      for (int t2 = 0; t2 <= t; ++t2) sum += std::exp(s[t2] - m);
      for (int t2 = 0; t2 < Tn; ++t2) p[t2] = t2 <= t ? std::exp(s[t2] - m) / sum : 0.0f;
    }
  }
  void softmax_backward(float* dscores, const float* dprobs, const float* probs, int rows, int Tn, float scale) {
    for (int r = 0; r < rows; ++r) {
      const int t = r % Tn;
      const size_t o = static_cast<size_t>(r) * Tn;
      float dot = 0;
      for (int t2 = 0; t2 <= t; ++t2) dot += probs[o + t2] * dprobs[o + t2];
      for (int t2 = 0; t2 < Tn; ++t2) dscores[o + t2] = t2 <= t ? probs[o + t2] * (dprobs[o + t2] - dot) * scale : 0.0f;
    }
  }
};

std::vector<float> random_vec(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void expect_close(const char* what, const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double largest = 0, gap = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    largest = std::max(largest, static_cast<double>(std::abs(want[i])));
    gap = std::max(gap, static_cast<double>(std::abs(got[i] - want[i])));
  }
  INFO(what << ": largest " << largest << ", largest difference " << gap);
  CHECK(largest > 0);
  CHECK(gap <= 1e-5 * largest);
}

}  // namespace

TEST_CASE("attention plan: grouped KV heads, every product's layout as the CPU kernels compute it") {
  std::mt19937_64 rng(5);
  const int B = 2, Tn = 13, NH = 6, KVH = 2, hs = 8;
  const size_t nq = static_cast<size_t>(B) * Tn * NH * hs, nkv = static_cast<size_t>(B) * Tn * KVH * hs;
  const size_t natt = static_cast<size_t>(B) * NH * Tn * Tn, one = static_cast<size_t>(NH) * Tn * Tn;
  const std::vector<float> q = random_vec(nq, rng), k = random_vec(nkv, rng), v = random_vec(nkv, rng), d = random_vec(nq, rng);
  std::vector<float> out(nq), att(natt), dq(nq), dk(nkv), dv(nkv);
  cpu::gqa_attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), B, Tn, NH, KVH, hs);
  cpu::gqa_attention_backward(dq.data(), dk.data(), dv.data(), d.data(), q.data(), k.data(), v.data(), att.data(), B, Tn, NH,
                              KVH, hs);
  std::vector<float> pout(nq, 7.0f), patt(natt), pdq(nq), pdk(nkv), pdv(nkv), scores(one);
  const size_t qs = static_cast<size_t>(NH) * hs, ks = static_cast<size_t>(KVH) * hs;
  HostOps ops;
  cuda::plan::forward<float>(ops, {pout.data(), qs}, patt.data(), {q.data(), qs}, {k.data(), ks}, {v.data(), ks},
                             scores.data(), B, Tn, NH, KVH, hs);
  // The score gradients in the working precision are the fp32 buffer itself, as the backend passes them for float.
  cuda::plan::backward<float>(ops, {pdq.data(), qs}, {pdk.data(), ks}, {pdv.data(), ks}, scores.data(), scores.data(),
                              {d.data(), qs}, {q.data(), qs}, {k.data(), ks}, {v.data(), ks}, patt.data(), B, Tn, NH, KVH, hs);
  expect_close("probabilities", patt, att);
  expect_close("output (overwritten)", pout, out);
  expect_close("dq", pdq, dq);
  expect_close("dk", pdk, dk);
  expect_close("dv", pdv, dv);
}

TEST_CASE("attention plan: GPT-2's interleaved q, k, v and their gradients (added to)") {
  std::mt19937_64 rng(9);
  const int B = 2, Tn = 11, NH = 3, hs = 4, C = NH * hs;
  const size_t ninp = static_cast<size_t>(B) * Tn * 3 * C, nout = static_cast<size_t>(B) * Tn * C;
  const size_t natt = static_cast<size_t>(B) * NH * Tn * Tn, one = static_cast<size_t>(NH) * Tn * Tn;
  const std::vector<float> inp = random_vec(ninp, rng), d = random_vec(nout, rng), base = random_vec(ninp, rng);
  std::vector<float> out(nout), pre(natt), att(natt), dinp = base, dpre(natt), datt(natt);
  cpu::attention_forward(out.data(), pre.data(), att.data(), inp.data(), B, Tn, C, NH);
  cpu::attention_backward(dinp.data(), dpre.data(), datt.data(), d.data(), inp.data(), att.data(), B, Tn, C, NH);
  std::vector<float> pout(nout), patt(natt), pdinp = base, scores(one), dscores(one);
  const size_t c = static_cast<size_t>(C), s3 = 3 * c;
  HostOps ops;
  cuda::plan::forward<float>(ops, {pout.data(), c}, patt.data(), {inp.data(), s3}, {inp.data() + C, s3},
                             {inp.data() + 2 * C, s3}, scores.data(), B, Tn, NH, NH, hs);
  cuda::plan::backward<float>(ops, {pdinp.data(), s3}, {pdinp.data() + C, s3}, {pdinp.data() + 2 * C, s3}, scores.data(),
                              dscores.data(), {d.data(), c}, {inp.data(), s3}, {inp.data() + C, s3}, {inp.data() + 2 * C, s3},
                              patt.data(), B, Tn, NH, NH, hs);
  expect_close("gpt output", pout, out);
  expect_close("gpt dqkv (added to what was there)", pdinp, dinp);
}

TEST_CASE("linear layer plan: forward with the bias epilogue, input and weight gradients added to") {
  std::mt19937_64 rng(3);
  const int N = 7, C = 5, OC = 9;
  const std::vector<float> x = random_vec(static_cast<size_t>(N) * C, rng), w = random_vec(static_cast<size_t>(OC) * C, rng),
                           b = random_vec(OC, rng), d = random_vec(static_cast<size_t>(N) * OC, rng),
                           dx0 = random_vec(static_cast<size_t>(N) * C, rng), dw0 = random_vec(w.size(), rng);
  std::vector<float> out(static_cast<size_t>(N) * OC), dx = dx0, dw = dw0, db(OC);
  cpu::matmul_forward(out.data(), x.data(), w.data(), b.data(), N, C, OC);
  cpu::matmul_backward(dx.data(), dw.data(), db.data(), d.data(), x.data(), w.data(), N, C, OC);
  std::vector<float> pout(out.size()), pout_nobias(out.size()), pdx = dx0, pdw = dw0;
  HostOps ops;
  cuda::plan::linear_forward<float>(ops, pout.data(), x.data(), w.data(), b.data(), N, C, OC);
  cuda::plan::linear_forward<float>(ops, pout_nobias.data(), x.data(), w.data(), nullptr, N, C, OC);
  cuda::plan::linear_backward<float>(ops, pdx.data(), pdw.data(), d.data(), x.data(), w.data(), N, C, OC);
  expect_close("linear out", pout, out);
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < OC; ++o) pout_nobias[static_cast<size_t>(n) * OC + o] += b[static_cast<size_t>(o)];
  }
  expect_close("linear out without the bias, plus it", pout_nobias, out);
  expect_close("linear dinp", pdx, dx);
  expect_close("linear dweight", pdw, dw);
  // Overwriting the input gradient (beta 0): what was there is never read,
  // NaN included; the weight gradient is still added to.
  std::vector<float> odx(dx0.size(), std::nanf("")), odw = dw0, cdx(dx0.size(), std::nanf("")), cdw = dw0, zdx(dx0.size(), 0.0f),
      zdw = dw0;
  cuda::plan::linear_backward<float>(ops, odx.data(), odw.data(), d.data(), x.data(), w.data(), N, C, OC, true);
  cpu::matmul_backward(cdx.data(), cdw.data(), static_cast<float*>(nullptr), d.data(), x.data(), w.data(), N, C, OC, true);
  cpu::matmul_backward(zdx.data(), zdw.data(), static_cast<float*>(nullptr), d.data(), x.data(), w.data(), N, C, OC);
  expect_close("linear dinp overwritten (plan)", odx, zdx);
  expect_close("linear dinp overwritten (cpu)", cdx, zdx);
  expect_close("linear dweight beside an overwritten dinp", odw, dw);
}
