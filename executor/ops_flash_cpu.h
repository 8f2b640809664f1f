// Memory-efficient causal attention on the host, the reference of the CUDA
// flash kernels (kernels/flash_attention_cuda.h) and what the CPU backend
// runs for `--attention flash`: the (T x T) scores and probabilities are
// never stored. Forward keeps a running maximum and sum per query row (the
// online softmax of Milakov & Gimelshein 2018, arXiv 1805.02867, as
// FlashAttention uses it: Dao et al. 2022, arXiv 2205.14135, Algorithm 1) and
// saves one fp32 log-sum-exp per (b, head, t); backward recomputes each
// probability from it, P = exp(s - lse), with D_t = dout_t . out_t standing
// for the softmax's row sum (FlashAttention-2, Dao 2023, arXiv 2307.08691,
// Algorithm 2). Deterministic without atomics, as the CUDA kernels: the
// query gradient is summed per query row, the key and value gradients per
// key row over the group's heads and the later rows in a fixed order, each
// in A (fp32 for bf16 storage) and added to its output once; rows run on the
// host's OpenMP threads.
//
// Heads are addressed by strides (executor/head_view.h), so GPT-2's packed
// (B,T,3C) q,k,v and grouped KV heads both work; lse is (B,NH,T).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

#include "executor/head_view.h"
#include "executor/scalar.h"

namespace zp::cpu {

// Rows of a call run on the host's OpenMP threads (each (b, head) or
// (b, kv head) row on one thread, so the sums and results are the same with
// any number of threads) above this many (query, key) positions; below it
// the threads would cost more than they save.
inline constexpr size_t kHostAttentionParallelPairs = size_t{1} << 16;

// A stored value in the arithmetic type A.
template <class A, class T>
inline A arith(T x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return widen(x);
  } else {
    return static_cast<A>(x);
  }
}

template <class A, class T, class U>
inline A dot(const T* x, const U* y, int n) {
  A s = 0;
  for (int i = 0; i < n; ++i) s += arith<A>(x[i]) * arith<A>(y[i]);
  return s;
}

// out = causal softmax(q k^T / sqrt(hs)) v (overwritten); lse (B,NH,T) the
// rows' log-sum-exp of the scaled scores. Query head h reads key/value head
// h / (NH / KVH).
template <class T, class A = acc_t<T>>
void flash_attention_forward(HeadView<T> out, A* lse, HeadView<const T> q, HeadView<const T> k, HeadView<const T> v,
                             int B, int Tn, int NH, int KVH, int hs) {
  const int group = NH / KVH;
  const A scale = A(1) / std::sqrt(static_cast<A>(hs));
  const bool parallel = static_cast<size_t>(B) * NH * Tn * Tn >= kHostAttentionParallelPairs;
#pragma omp parallel for schedule(dynamic, 1) if (parallel : parallel)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH, h = bh % NH, kh = h / group;
    std::vector<A> acc(static_cast<size_t>(hs));
    for (int t = 0; t < Tn; ++t) {
      const T* qt = q.at(b, Tn, t, h, hs);
      A m = -std::numeric_limits<A>::infinity(), l = 0;
      std::fill(acc.begin(), acc.end(), A(0));
      for (int t2 = 0; t2 <= t; ++t2) {
        const A s = dot<A>(qt, k.at(b, Tn, t2, kh, hs), hs) * scale;
        if (s > m) {  // rescale what was summed against the old maximum
          const A c = std::exp(m - s);
          l *= c;
          for (A& a : acc) a *= c;
          m = s;
        }
        const A p = std::exp(s - m);
        l += p;
        const T* vt = v.at(b, Tn, t2, kh, hs);
        for (int i = 0; i < hs; ++i) acc[static_cast<size_t>(i)] += p * arith<A>(vt[i]);
      }
      T* o = out.at(b, Tn, t, h, hs);
      for (int i = 0; i < hs; ++i) o[i] = static_cast<T>(acc[static_cast<size_t>(i)] / l);
      lse[(static_cast<size_t>(b) * NH + h) * Tn + t] = m + std::log(l);
    }
  }
}

// Writes dq, dk, dv (every row of their heads: each is summed in full, then
// stored once, so the buffers need no zeroing); out and lse are forward's.
template <class T, class A = acc_t<T>>
void flash_attention_backward(HeadView<T> dq, HeadView<T> dk, HeadView<T> dv, HeadView<const T> dout,
                              HeadView<const T> q, HeadView<const T> k, HeadView<const T> v, HeadView<const T> out,
                              const A* lse, int B, int Tn, int NH, int KVH, int hs) {
  const int group = NH / KVH;
  const A scale = A(1) / std::sqrt(static_cast<A>(hs));
  const size_t H = static_cast<size_t>(hs);
  const bool parallel = static_cast<size_t>(B) * NH * Tn * Tn >= kHostAttentionParallelPairs;
  // D_t = dout_t . out_t: the row sum of P * dP the softmax's gradient subtracts.
  std::vector<A> rowdot(static_cast<size_t>(B) * NH * Tn);
#pragma omp parallel for schedule(static) if (parallel : parallel)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH, h = bh % NH;
    for (int t = 0; t < Tn; ++t) {
      rowdot[static_cast<size_t>(bh) * Tn + t] = dot<A>(dout.at(b, Tn, t, h, hs), out.at(b, Tn, t, h, hs), hs);
    }
  }
  // dS = P (dP - D) / sqrt(hs), dP = dout . v, for one (query, key) pair.
  auto score_gradient = [&](int b, int h, int t, int t2, A* p_out) {
    const int kh = h / group;
    const size_t row = (static_cast<size_t>(b) * NH + h) * Tn + t;
    const A s = dot<A>(q.at(b, Tn, t, h, hs), k.at(b, Tn, t2, kh, hs), hs) * scale;
    const A p = std::exp(s - lse[row]);
    const A dp = dot<A>(dout.at(b, Tn, t, h, hs), v.at(b, Tn, t2, kh, hs), hs);
    *p_out = p;
    return p * (dp - rowdot[row]) * scale;
  };
  // Per query row: dq_t = sum_t2 dS k_t2.
#pragma omp parallel for schedule(dynamic, 1) if (parallel : parallel)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH, h = bh % NH;
    std::vector<A> g(H);
    for (int t = 0; t < Tn; ++t) {
      std::fill(g.begin(), g.end(), A(0));
      for (int t2 = 0; t2 <= t; ++t2) {
        A p;
        const A ds = score_gradient(b, h, t, t2, &p);
        const T* kt = k.at(b, Tn, t2, h / group, hs);
        for (size_t i = 0; i < H; ++i) g[i] += ds * arith<A>(kt[i]);
      }
      T* d = dq.at(b, Tn, t, h, hs);
      for (size_t i = 0; i < H; ++i) d[i] = static_cast<T>(g[i]);
    }
  }
  // Per key row: dk_t2 = sum dS q_t, dv_t2 = sum P dout_t over the group's heads and t >= t2.
#pragma omp parallel for schedule(dynamic, 1) if (parallel : parallel)
  for (int bk = 0; bk < B * KVH; ++bk) {
    const int b = bk / KVH, kh = bk % KVH;
    std::vector<A> g(H), gv(H);
    for (int t2 = 0; t2 < Tn; ++t2) {
      std::fill(g.begin(), g.end(), A(0));
      std::fill(gv.begin(), gv.end(), A(0));
      for (int h = kh * group; h < (kh + 1) * group; ++h)
        for (int t = t2; t < Tn; ++t) {
          A p;
          const A ds = score_gradient(b, h, t, t2, &p);
          const T* qt = q.at(b, Tn, t, h, hs);
          const T* dt = dout.at(b, Tn, t, h, hs);
          for (size_t i = 0; i < H; ++i) {
            g[i] += ds * arith<A>(qt[i]);
            gv[i] += p * arith<A>(dt[i]);
          }
        }
      T* dkt = dk.at(b, Tn, t2, kh, hs);
      T* dvt = dv.at(b, Tn, t2, kh, hs);
      for (size_t i = 0; i < H; ++i) {
        dkt[i] = static_cast<T>(g[i]);
        dvt[i] = static_cast<T>(gv[i]);
      }
    }
  }
}

}  // namespace zp::cpu
