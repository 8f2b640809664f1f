// Every CPU kernel's hand-written backward against central finite
// differences in double: for a random projection R of the op's output, the
// gradient of <R, op(inputs)> with respect to every input and parameter
// element (tests/gpt_model_test.cc checks the whole models the same way);
// and the flash-style attention against the materialised one.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "executor/ops_cpu.h"
#include "executor/ops_flash_cpu.h"
#include "executor/ops_llama_cpu.h"
#include "tests/worst_error.h"

using namespace zp;

namespace {

using Vec = std::vector<double>;

Vec random_vec(size_t n, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> normal(0.0, scale);
  Vec v(n);
  for (double& x : v) x = normal(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// forward(inputs) -> output; backward(inputs, dout) -> one gradient per input
// (each zero-initialised and added to, as the kernels do). Checks every
// element of every input against (L(x + h) - L(x - h)) / 2h for L = <R, out>.
void check_op(const std::string& name, std::vector<Vec> inputs, const std::function<Vec(const std::vector<Vec>&)>& forward,
              const std::function<std::vector<Vec>(const std::vector<Vec>&, const Vec&)>& backward, std::mt19937_64& rng) {
  const Vec out = forward(inputs);
  const Vec r = random_vec(out.size(), rng);
  const std::vector<Vec> analytic = backward(inputs, r);
  REQUIRE(analytic.size() == inputs.size());
  double worst = 0;
  const double h = 1e-5;
  for (size_t k = 0; k < inputs.size(); ++k) {
    for (size_t i = 0; i < inputs[k].size(); ++i) {
      const double saved = inputs[k][i];
      inputs[k][i] = saved + h;
      const double up = dot(r, forward(inputs));
      inputs[k][i] = saved - h;
      const double down = dot(r, forward(inputs));
      inputs[k][i] = saved;
      const double numeric = (up - down) / (2 * h);
      const double err = std::fabs(numeric - analytic[k][i]) / std::max(1e-6, std::fabs(numeric) + std::fabs(analytic[k][i]));
      worst = test::worse(worst, err);
    }
  }
  MESSAGE(name << ": worst relative error " << worst);
  CHECK(worst < 1e-5);  // a wrong gradient is off by O(1)
}

}  // namespace

TEST_CASE("every kernel's backward matches central finite differences (double)") {
  std::mt19937_64 rng(2024);
  const int N = 6, C = 8, OC = 5, B = 2, T = 3, NH = 2;
  // LayerNorm: input, weight, bias.
  check_op(
      "layernorm", {random_vec(N * C, rng), random_vec(C, rng), random_vec(C, rng)},
      [&](const std::vector<Vec>& in) {
        Vec out(N * C), mean(N), rstd(N);
        cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), in[0].data(), in[1].data(), in[2].data(), N, C);
        return out;
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec out(N * C), mean(N), rstd(N), dx(N * C), dw(C), db(C);
        cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), in[0].data(), in[1].data(), in[2].data(), N, C);
        cpu::layernorm_backward(dx.data(), dw.data(), db.data(), d.data(), in[0].data(), in[1].data(), mean.data(),
                                rstd.data(), N, C);
        return std::vector<Vec>{dx, dw, db};
      },
      rng);
  // Matrix product with bias.
  check_op(
      "matmul", {random_vec(N * C, rng), random_vec(OC * C, rng), random_vec(OC, rng)},
      [&](const std::vector<Vec>& in) {
        Vec out(N * OC);
        cpu::matmul_forward(out.data(), in[0].data(), in[1].data(), in[2].data(), N, C, OC);
        return out;
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec dx(N * C), dw(OC * C), db(OC);
        cpu::matmul_backward(dx.data(), dw.data(), db.data(), d.data(), in[0].data(), in[1].data(), N, C, OC);
        return std::vector<Vec>{dx, dw, db};
      },
      rng);
  // Causal attention over packed q, k, v (B, T, 3C).
  check_op(
      "attention", {random_vec(B * T * 3 * C, rng)},
      [&](const std::vector<Vec>& in) {
        Vec out(B * T * C), pre(B * NH * T * T), att(B * NH * T * T);
        cpu::attention_forward(out.data(), pre.data(), att.data(), in[0].data(), B, T, C, NH);
        return out;
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec out(B * T * C), pre(B * NH * T * T), att(B * NH * T * T), dqkv(B * T * 3 * C), dpre(pre.size()), datt(att.size());
        cpu::attention_forward(out.data(), pre.data(), att.data(), in[0].data(), B, T, C, NH);
        cpu::attention_backward(dqkv.data(), dpre.data(), datt.data(), d.data(), in[0].data(), att.data(), B, T, C, NH);
        return std::vector<Vec>{dqkv};
      },
      rng);
  check_op(
      "gelu", {random_vec(N * C, rng)},
      [&](const std::vector<Vec>& in) {
        Vec out(in[0].size());
        cpu::gelu_forward(out.data(), in[0].data(), out.size());
        return out;
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec dx(in[0].size());
        cpu::gelu_backward(dx.data(), in[0].data(), d.data(), dx.size());
        return std::vector<Vec>{dx};
      },
      rng);
  check_op(
      "residual", {random_vec(N * C, rng), random_vec(N * C, rng)},
      [&](const std::vector<Vec>& in) {
        Vec out(in[0].size());
        cpu::residual_forward(out.data(), in[0].data(), in[1].data(), out.size());
        return out;
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec da(in[0].size()), db(in[1].size());
        cpu::residual_backward(da.data(), db.data(), d.data(), da.size());
        return std::vector<Vec>{da, db};
      },
      rng);
  // Cross-entropy: the mean loss's gradient with respect to the logits (the
  // projection is the loss itself: a one-element output).
  const std::vector<int> targets = {1, 4, 0, 2, 3, 4};
  check_op(
      "cross-entropy", {random_vec(N * OC, rng)},
      [&](const std::vector<Vec>& in) {
        Vec d(in[0].size());
        return Vec{cpu::crossentropy_forward_backward(d.data(), in[0].data(), targets.data(), N, OC)};
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec dl(in[0].size());
        cpu::crossentropy_forward_backward(dl.data(), in[0].data(), targets.data(), N, OC);
        for (double& x : dl) x *= d[0];
        return std::vector<Vec>{dl};
      },
      rng);
  // Llama style: RMSNorm, SwiGLU, rotary positions, grouped-query attention.
  check_op(
      "rmsnorm", {random_vec(N * C, rng), random_vec(C, rng)},
      [&](const std::vector<Vec>& in) {
        Vec out(N * C), rstd(N);
        cpu::rmsnorm_forward(out.data(), rstd.data(), in[0].data(), in[1].data(), N, C);
        return out;
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec out(N * C), rstd(N), dx(N * C), dw(C);
        cpu::rmsnorm_forward(out.data(), rstd.data(), in[0].data(), in[1].data(), N, C);
        cpu::rmsnorm_backward(dx.data(), dw.data(), d.data(), in[0].data(), in[1].data(), rstd.data(), N, C);
        return std::vector<Vec>{dx, dw};
      },
      rng);
  check_op(
      "swiglu", {random_vec(N * C, rng), random_vec(N * C, rng)},
      [&](const std::vector<Vec>& in) {
        Vec out(in[0].size());
        cpu::swiglu_forward(out.data(), in[0].data(), in[1].data(), out.size());
        return out;
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec dg(in[0].size()), du(in[1].size());
        cpu::swiglu_backward(dg.data(), du.data(), d.data(), in[0].data(), in[1].data(), dg.size());
        return std::vector<Vec>{dg, du};
      },
      rng);
  const int H = 2, KVH = 1, hs = 4;
  check_op(
      "rope", {random_vec(B * T * H * hs, rng)},
      [&](const std::vector<Vec>& in) {
        Vec x = in[0];
        cpu::rope_forward(x.data(), B, T, H, hs, 10000.0);
        return x;
      },
      [&](const std::vector<Vec>&, const Vec& d) {
        Vec dx = d;  // rope_backward rotates the gradient in place
        cpu::rope_backward(dx.data(), B, T, H, hs, 10000.0);
        return std::vector<Vec>{dx};
      },
      rng);
  check_op(
      "gqa attention", {random_vec(B * T * H * hs, rng), random_vec(B * T * KVH * hs, rng), random_vec(B * T * KVH * hs, rng)},
      [&](const std::vector<Vec>& in) {
        Vec out(B * T * H * hs), att(B * H * T * T);
        cpu::gqa_attention_forward(out.data(), att.data(), in[0].data(), in[1].data(), in[2].data(), B, T, H, KVH, hs);
        return out;
      },
      [&](const std::vector<Vec>& in, const Vec& d) {
        Vec out(B * T * H * hs), att(B * H * T * T), dq(in[0].size()), dk(in[1].size()), dv(in[2].size());
        cpu::gqa_attention_forward(out.data(), att.data(), in[0].data(), in[1].data(), in[2].data(), B, T, H, KVH, hs);
        cpu::gqa_attention_backward(dq.data(), dk.data(), dv.data(), d.data(), in[0].data(), in[1].data(), in[2].data(),
                                    att.data(), B, T, H, KVH, hs);
        return std::vector<Vec>{dq, dk, dv};
      },
      rng);
}

namespace {

// Grouped-query attention's three inputs as head views of (B,T,H,hs) tensors.
HeadView<const double> view(const Vec& x, int heads, int hs) { return {x.data(), static_cast<size_t>(heads) * hs}; }
HeadView<double> view(Vec& x, int heads, int hs) { return {x.data(), static_cast<size_t>(heads) * hs}; }

}  // namespace

TEST_CASE("flash-style attention: the materialised attention's output and gradients, and its own finite differences") {
  std::mt19937_64 rng(99);
  // Groups of 3 query heads per KV head, T long enough for the running
  // maximum to move (scaled-up inputs make the scores spread).
  const int B = 2, T = 9, H = 6, KVH = 2, hs = 5;
  const size_t nq = static_cast<size_t>(B) * T * H * hs, nkv = static_cast<size_t>(B) * T * KVH * hs;
  const Vec q = random_vec(nq, rng, 3.0), k = random_vec(nkv, rng, 3.0), v = random_vec(nkv, rng), d = random_vec(nq, rng);
  Vec out(nq), att(static_cast<size_t>(B) * H * T * T), dq(nq), dk(nkv), dv(nkv);
  cpu::gqa_attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), B, T, H, KVH, hs);
  cpu::gqa_attention_backward(dq.data(), dk.data(), dv.data(), d.data(), q.data(), k.data(), v.data(), att.data(), B, T, H,
                              KVH, hs);
  // The gradients are written, every element: NaN before, never read.
  const double unwritten = std::numeric_limits<double>::quiet_NaN();
  Vec fout(nq), lse(static_cast<size_t>(B) * H * T), fdq(nq, unwritten), fdk(nkv, unwritten), fdv(nkv, unwritten);
  cpu::flash_attention_forward(view(fout, H, hs), lse.data(), view(q, H, hs), view(k, KVH, hs), view(v, KVH, hs), B, T, H,
                               KVH, hs);
  cpu::flash_attention_backward(view(fdq, H, hs), view(fdk, KVH, hs), view(fdv, KVH, hs), view(d, H, hs), view(q, H, hs),
                                view(k, KVH, hs), view(v, KVH, hs), view(std::as_const(fout), H, hs), lse.data(), B, T, H,
                                KVH, hs);
  auto worst = [](const Vec& got, const Vec& want) {
    double w = 0;
    for (size_t i = 0; i < got.size(); ++i) w = test::worse(w, std::fabs(got[i] - want[i]));
    return w;
  };
  CHECK(worst(fout, out) < 1e-12);
  CHECK(worst(fdq, dq) < 1e-12);
  CHECK(worst(fdk, dk) < 1e-12);
  CHECK(worst(fdv, dv) < 1e-12);
  // lse is each row's log-sum-exp: exp(s - lse) are the stored probabilities.
  const double scale = 1 / std::sqrt(static_cast<double>(hs));
  double prob = 0;
  for (int t = 0; t < T; ++t) {
    const int h = 4, kh = h / (H / KVH), b = 1;
    double s = 0;
    for (int i = 0; i < hs; ++i) {
      s += q[((static_cast<size_t>(b) * T + t) * H + h) * hs + i] * k[((static_cast<size_t>(b) * T + 0) * KVH + kh) * hs + i];
    }
    const double p = std::exp(s * scale - lse[(static_cast<size_t>(b) * H + h) * T + t]);
    prob = std::max(prob, std::fabs(p - att[((static_cast<size_t>(b) * H + h) * T + t) * T]));
  }
  CHECK(prob < 1e-12);
  // GPT-2's packed q,k,v through the same kernels by strides, against finite differences.
  const int C = 2 * 4, NH = 2, ph = C / NH;
  check_op(
      "flash attention (packed q,k,v)", {random_vec(static_cast<size_t>(B) * T * 3 * C, rng)},
      [&](const std::vector<Vec>& in) {
        Vec o(static_cast<size_t>(B) * T * C), l(static_cast<size_t>(B) * NH * T);
        const double* x = in[0].data();
        const size_t ld = 3 * C;
        cpu::flash_attention_forward<double>({o.data(), C}, l.data(), {x, ld}, {x + C, ld}, {x + 2 * C, ld}, B, T, NH, NH, ph);
        return o;
      },
      [&](const std::vector<Vec>& in, const Vec& dout) {
        Vec o(static_cast<size_t>(B) * T * C), l(static_cast<size_t>(B) * NH * T), dx(in[0].size());
        const double* x = in[0].data();
        const size_t ld = 3 * C;
        cpu::flash_attention_forward<double>({o.data(), C}, l.data(), {x, ld}, {x + C, ld}, {x + 2 * C, ld}, B, T, NH, NH, ph);
        cpu::flash_attention_backward<double>({dx.data(), ld}, {dx.data() + C, ld}, {dx.data() + 2 * C, ld},
                                              {dout.data(), C}, {x, ld}, {x + C, ld}, {x + 2 * C, ld},
                                              {o.data(), C}, l.data(), B, T, NH, NH, ph);
        return std::vector<Vec>{dx};
      },
      rng);
}

TEST_CASE("flash-style attention on the host's threads: the same bits as on one, past the threshold") {
  // B x NH x T^2 = 2 x 4 x 128^2 is past kHostAttentionParallelPairs: the rows go to OpenMP's threads.
  const int B = 2, T = 128, H = 4, KVH = 2, hs = 8;
  REQUIRE(static_cast<size_t>(B) * H * T * T >= cpu::kHostAttentionParallelPairs);
  std::mt19937_64 rng(3);
  const size_t nq = static_cast<size_t>(B) * T * H * hs, nkv = static_cast<size_t>(B) * T * KVH * hs;
  const Vec q = random_vec(nq, rng, 2.0), k = random_vec(nkv, rng, 2.0), v = random_vec(nkv, rng), d = random_vec(nq, rng);
  auto run = [&](int threads) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    (void)threads;
    Vec out(nq), lse(static_cast<size_t>(B) * H * T), dq(nq), dk(nkv), dv(nkv);
    cpu::flash_attention_forward(view(out, H, hs), lse.data(), view(q, H, hs), view(k, KVH, hs), view(v, KVH, hs), B, T, H,
                                 KVH, hs);
    cpu::flash_attention_backward(view(dq, H, hs), view(dk, KVH, hs), view(dv, KVH, hs), view(d, H, hs), view(q, H, hs),
                                  view(k, KVH, hs), view(v, KVH, hs), view(std::as_const(out), H, hs), lse.data(), B, T, H,
                                  KVH, hs);
    return std::vector<Vec>{out, lse, dq, dk, dv};
  };
  const std::vector<Vec> one = run(1), two = run(2);
  for (size_t i = 0; i < one.size(); ++i) CHECK(one[i] == two[i]);
  // And the materialised kernels' results at this length too.
  Vec out(nq), att(static_cast<size_t>(B) * H * T * T), dq(nq), dk(nkv), dv(nkv);
  cpu::gqa_attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), B, T, H, KVH, hs);
  cpu::gqa_attention_backward(dq.data(), dk.data(), dv.data(), d.data(), q.data(), k.data(), v.data(), att.data(), B, T, H,
                              KVH, hs);
  double worst = 0;
  const std::vector<const Vec*> want{&out, nullptr, &dq, &dk, &dv};
  for (size_t j = 0; j < want.size(); ++j) {
    if (!want[j]) continue;
    for (size_t i = 0; i < want[j]->size(); ++i) worst = test::worse(worst, std::fabs(one[j][i] - (*want[j])[i]));
  }
  CHECK(worst < 1e-10);
}
