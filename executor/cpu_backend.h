// CpuBackend<T>: the Backend (executor/backend.h) of the host: the
// operations a model and its trainer run (matrix products, norms,
// attention, activations, residuals, row adds, loss, embedding gradients,
// AdamW), for storage type T, on the CPU.
//  - float and double: the reference kernels of ops_cpu.h and ops_llama_cpu.h
//    directly (Eigen for the matrix products);
//  - bf16 (mixed precision): every operand is read into an fp32 workspace,
//    the fp32 kernel runs, and the outputs are rounded back to bf16 once, the
//    way a GPU kernel loads bf16, computes and accumulates in fp32 registers
//    and stores bf16. Outputs a kernel adds to (gradients) are read too, so
//    each call rounds once. Norm statistics (mean, rstd) stay fp32, as llm.c
//    and Megatron's fused norms keep them. The workspace comes from the
//    tracking allocator under `workspace`, so the measurement shows it; it
//    holds whole operands (a fused GPU kernel holds tiles), which is why the
//    cost model has no row for it.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <type_traits>

#include "executor/adamw.h"
#include "executor/backend.h"
#include "executor/ops_cpu.h"
#include "executor/ops_flash_cpu.h"
#include "executor/ops_llama_cpu.h"
#include "executor/scalar.h"
#include "executor/tagged_buffer.h"
#include "executor/tensor_parallel.h"

namespace zp {

template <class T>
class CpuBackend final : public Backend<T> {
 public:
  using Acc = acc_t<T>;
  static constexpr bool kNative = std::is_same_v<T, Acc>;

  explicit CpuBackend(TrackingAllocator* tracker = nullptr)
      : Backend<T>(tracker ? tracker->device() : host_device()),  // the host, pinned or not
        tracker_(tracker),
        scratch_(make_buffer<float>(tracker, Component::BackendScratch)),
        scores_(make_buffer<T>(tracker, Component::BackendScratch)) {}

  // out (N,C) = LayerNorm(inp) * w + b; mean, rstd (N).
  void layernorm_forward(T* out, Acc* mean, Acc* rstd, const T* inp, const T* w, const T* b, int N, int C) override {
    if constexpr (kNative) {
      cpu::layernorm_forward(out, mean, rstd, inp, w, b, N, C);
    } else {
      const size_t NC = sz(N) * sz(C);
      auto f = frame<4>({NC, NC, sz(C), sz(C)});
      load(f[1], inp, NC), load(f[2], w, sz(C)), load(f[3], b, sz(C));
      cpu::layernorm_forward(f[0], mean, rstd, f[1], f[2], f[3], N, C);
      store(out, f[0], NC);
    }
  }
  void layernorm_backward(T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, const Acc* mean,
                          const Acc* rstd, int N, int C) override {
    if constexpr (kNative) {
      cpu::layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    } else {
      const size_t NC = sz(N) * sz(C), c = sz(C);
      auto f = frame<6>({NC, c, c, NC, NC, c});
      load(f[0], dinp, NC), load(f[1], dw, c), load(f[2], db, c), load(f[3], dout, NC), load(f[4], inp, NC),
          load(f[5], w, c);
      cpu::layernorm_backward(f[0], f[1], f[2], f[3], f[4], f[5], mean, rstd, N, C);
      store(dinp, f[0], NC), store(dw, f[1], c), store(db, f[2], c);
    }
  }

  // out (N,OC) = inp (N,C) w(OC,C)^T + bias (OC; may be null).
  void matmul_forward(T* out, const T* inp, const T* w, const T* bias, int N, int C, int OC) override {
    if constexpr (kNative) {
      cpu::matmul_forward(out, inp, w, bias, N, C, OC);
    } else {
      const size_t NC = sz(N) * sz(C), WC = sz(OC) * sz(C), NO = sz(N) * sz(OC);
      auto f = frame<4>({NO, NC, WC, bias ? sz(OC) : 0});
      load(f[1], inp, NC), load(f[2], w, WC), load(f[3], bias, sz(OC));
      cpu::matmul_forward(f[0], f[1], f[2], bias ? f[3] : nullptr, N, C, OC);
      store(out, f[0], NO);
    }
  }
  // Adds to dinp (N,C) (or overwrites it), dw (OC,C) and dbias (OC; may be null).
  void matmul_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int N, int C, int OC,
                       bool overwrite_dinp = false) override {
    if constexpr (kNative) {
      cpu::matmul_backward(dinp, dw, dbias, dout, inp, w, N, C, OC, overwrite_dinp);
    } else {
      const size_t NC = sz(N) * sz(C), WC = sz(OC) * sz(C), NO = sz(N) * sz(OC), o = dbias ? sz(OC) : 0;
      auto f = frame<6>({NC, WC, o, NO, NC, WC});
      if (!overwrite_dinp) load(f[0], dinp, NC);  // overwritten: its old values are never read
      load(f[1], dw, WC), load(f[2], dbias, o), load(f[3], dout, NO), load(f[4], inp, NC), load(f[5], w, WC);
      cpu::matmul_backward(f[0], f[1], dbias ? f[2] : nullptr, f[3], f[4], f[5], N, C, OC, overwrite_dinp);
      store(dinp, f[0], NC), store(dw, f[1], WC), store(dbias, f[2], o);
    }
  }

  // Causal attention over packed q,k,v (B,T,3C); att (B,NH,T,T); out (B,T,C).
  // One sequence at a time: the reference kernels' scores before the
  // softmax (forward) and the gradients of both score tensors (backward)
  // are this backend's scratch for one sequence.
  void attention_forward(T* out, T* att, const T* qkv, int B, int Tn, int C, int NH) override {
    const size_t TC = sz(Tn) * sz(C), A = sz(NH) * sz(Tn) * sz(Tn);
    for (size_t b = 0; b < sz(B); ++b) {
      T* o = out + b * TC;
      T* a = att + b * A;
      const T* x = qkv + b * 3 * TC;
      if constexpr (kNative) {
        cpu::attention_forward(o, scores(A), a, x, 1, Tn, C, NH);
      } else {
        auto f = frame<4>({TC, A, A, 3 * TC});
        load(f[3], x, 3 * TC);
        cpu::attention_forward(f[0], f[1], f[2], f[3], 1, Tn, C, NH);
        store(o, f[0], TC), store(a, f[2], A);
      }
    }
  }
  void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int Tn, int C, int NH) override {
    const size_t TC = sz(Tn) * sz(C), A = sz(NH) * sz(Tn) * sz(Tn);
    for (size_t b = 0; b < sz(B); ++b) {
      T* dx = dqkv + b * 3 * TC;
      const T *d = dout + b * TC, *x = qkv + b * 3 * TC, *a = att + b * A;
      if constexpr (kNative) {
        T* s = scores(2 * A);  // the kernel adds to both score gradients
        std::fill_n(s, 2 * A, T(0));
        cpu::attention_backward(dx, s, s + A, d, x, a, 1, Tn, C, NH);
      } else {
        auto f = frame<6>({3 * TC, A, A, TC, 3 * TC, A});
        load(f[0], dx, 3 * TC), load(f[3], d, TC), load(f[4], x, 3 * TC), load(f[5], a, A);
        std::fill_n(f[1], 2 * A, 0.0f);
        cpu::attention_backward(f[0], f[1], f[2], f[3], f[4], f[5], 1, Tn, C, NH);
        store(dx, f[0], 3 * TC);
      }
    }
  }

  void gelu_forward(T* out, const T* inp, size_t n) override {
    if constexpr (kNative) {
      cpu::gelu_forward(out, inp, n);
    } else {
      auto f = frame<2>({n, n});
      load(f[1], inp, n);
      cpu::gelu_forward(f[0], f[1], n);
      store(out, f[0], n);
    }
  }
  void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n) override {
    if constexpr (kNative) {
      cpu::gelu_backward(dinp, inp, dout, n);
    } else {
      auto f = frame<3>({n, n, n});
      load(f[1], inp, n), load(f[2], dout, n);  // dinp is written, not read
      cpu::gelu_backward(f[0], f[1], f[2], n);
      store(dinp, f[0], n);
    }
  }
  // One rounding per element either way: the plain loops serve all types.
  void residual_forward(T* out, const T* a, const T* b, size_t n) override { cpu::residual_forward(out, a, b, n); }

  // Mean cross-entropy of logits (N,V) against targets; the logits' gradient
  // overwrites them. Computed in fp32 for bf16 logits, as Megatron-LM casts
  // the logits to fp32 for the loss.
  Acc cross_entropy(T* logits, const int* targets, int N, int V) override {
    if constexpr (kNative) {
      return cpu::crossentropy_forward_backward(logits, logits, targets, N, V);
    } else {
      const size_t NV = sz(N) * sz(V);
      auto f = frame<1>({NV});
      load(f[0], logits, NV);
      const float loss = cpu::crossentropy_forward_backward(f[0], f[0], targets, N, V);
      store(logits, f[0], NV);
      return loss;
    }
  }
  // The same over vocabulary-parallel logits (N, V/t per rank): tensor_parallel.h.
  Acc vocab_parallel_cross_entropy(Communicator* comm, T* logits, const int* targets, size_t N, int vocab_local,
                                   int vocab_start) override {
    if constexpr (kNative) {
      return zp::vocab_parallel_cross_entropy(comm, logits, targets, N, vocab_local, vocab_start, tracker_);
    } else {
      const size_t NV = N * sz(vocab_local);
      auto f = frame<1>({NV});
      load(f[0], logits, NV);
      const float loss = zp::vocab_parallel_cross_entropy(comm, f[0], targets, N, vocab_local, vocab_start, tracker_);
      store(logits, f[0], NV);
      return loss;
    }
  }

  void embedding_forward(T* out, const T* table, const int* ids, size_t N, int C, int vocab_start,
                         int vocab_local) override {
    for (size_t i = 0; i < N; ++i) {
      const int row = ids[i] - vocab_start;
      if (row >= 0 && row < vocab_local) {
        std::copy_n(table + static_cast<size_t>(row) * sz(C), C, out + i * sz(C));
      } else {
        std::fill_n(out + i * sz(C), C, T(0));
      }
    }
  }
  void embedding_backward(T* dtable, const T* dout, const int* ids, size_t N, int C, int vocab_start,
                          int vocab_local) override {
    scatter_add_rows(dtable, static_cast<size_t>(vocab_local), dout, N, C, [&](size_t i) {
      const long row = ids[i] - vocab_start;
      return row >= 0 && row < vocab_local ? row : -1L;
    });
  }
  void add_bias(T* out, const T* bias, size_t rows, int C) override {
    gather_add_rows(out, bias, rows, C, [](size_t) { return size_t{0}; });
  }
  void add_positions(T* out, const T* positions, size_t rows, int C, size_t first, int Tn) override {
    gather_add_rows(out, positions, rows, C, [first, Tn](size_t i) { return (first + i) % static_cast<size_t>(Tn); });
  }
  void positions_backward(T* dpositions, const T* dout, size_t N, int C, int Tn) override {
    scatter_add_rows(dpositions, static_cast<size_t>(Tn), dout, N, C,
                     [Tn](size_t i) { return static_cast<long>(i % static_cast<size_t>(Tn)); });
  }
  void accumulate(T* dst, const T* src, size_t n) override {
    for (size_t i = 0; i < n; ++i) dst[i] += src[i];
  }
  // Llama style: RMSNorm, SwiGLU, rotary positions, grouped-query attention.
  void rmsnorm_forward(T* out, Acc* rstd, const T* inp, const T* w, int N, int C) override {
    if constexpr (kNative) {
      cpu::rmsnorm_forward(out, rstd, inp, w, N, C);
    } else {
      const size_t NC = sz(N) * sz(C);
      auto f = frame<3>({NC, NC, sz(C)});
      load(f[1], inp, NC), load(f[2], w, sz(C));
      cpu::rmsnorm_forward(f[0], rstd, f[1], f[2], N, C);
      store(out, f[0], NC);
    }
  }
  void rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const Acc* rstd, int N, int C) override {
    if constexpr (kNative) {
      cpu::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    } else {
      const size_t NC = sz(N) * sz(C), c = sz(C);
      auto f = frame<5>({NC, c, NC, NC, c});
      load(f[0], dinp, NC), load(f[1], dw, c), load(f[2], dout, NC), load(f[3], inp, NC), load(f[4], w, c);
      cpu::rmsnorm_backward(f[0], f[1], f[2], f[3], f[4], rstd, N, C);
      store(dinp, f[0], NC), store(dw, f[1], c);
    }
  }
  void swiglu_forward(T* out, const T* gate, const T* up, size_t n) override {
    if constexpr (kNative) {
      cpu::swiglu_forward(out, gate, up, n);
    } else {
      auto f = frame<3>({n, n, n});
      load(f[1], gate, n), load(f[2], up, n);
      cpu::swiglu_forward(f[0], f[1], f[2], n);
      store(out, f[0], n);
    }
  }
  void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n) override {
    if constexpr (kNative) {
      cpu::swiglu_backward(dgate, dup, dout, gate, up, n);
    } else {
      auto f = frame<5>({n, n, n, n, n});
      load(f[2], dout, n), load(f[3], gate, n), load(f[4], up, n);  // dgate and dup are written, not read
      cpu::swiglu_backward(f[0], f[1], f[2], f[3], f[4], n);
      store(dgate, f[0], n), store(dup, f[1], n);
    }
  }
  // In place on x (B,T,H,hs).
  void rope_forward(T* x, int B, int Tn, int H, int hs, Acc base) override {
    rope(x, B, Tn, H, hs, base, [](auto* p, int b, int t, int h, int s, auto bs) { cpu::rope_forward(p, b, t, h, s, bs); });
  }
  void rope_backward(T* dx, int B, int Tn, int H, int hs, Acc base) override {
    rope(dx, B, Tn, H, hs, base, [](auto* p, int b, int t, int h, int s, auto bs) { cpu::rope_backward(p, b, t, h, s, bs); });
  }
  // q (B,T,NH,hs), k and v (B,T,KVH,hs); att (B,NH,T,T); out (B,T,NH,hs).
  void gqa_attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int Tn, int NH, int KVH, int hs) override {
    if constexpr (kNative) {
      cpu::gqa_attention_forward(out, att, q, k, v, B, Tn, NH, KVH, hs);
    } else {
      const size_t Q = sz(B) * sz(Tn) * sz(NH) * sz(hs), K = sz(B) * sz(Tn) * sz(KVH) * sz(hs);
      const size_t A = sz(B) * sz(NH) * sz(Tn) * sz(Tn);
      auto f = frame<5>({Q, A, Q, K, K});
      load(f[2], q, Q), load(f[3], k, K), load(f[4], v, K);
      cpu::gqa_attention_forward(f[0], f[1], f[2], f[3], f[4], B, Tn, NH, KVH, hs);
      store(out, f[0], Q), store(att, f[1], A);
    }
  }
  void gqa_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att, int B,
                              int Tn, int NH, int KVH, int hs) override {
    if constexpr (kNative) {
      cpu::gqa_attention_backward(dq, dk, dv, dout, q, k, v, att, B, Tn, NH, KVH, hs);
    } else {
      const size_t Q = sz(B) * sz(Tn) * sz(NH) * sz(hs), K = sz(B) * sz(Tn) * sz(KVH) * sz(hs);
      const size_t A = sz(B) * sz(NH) * sz(Tn) * sz(Tn);
      auto f = frame<8>({Q, K, K, Q, Q, K, K, A});
      load(f[0], dq, Q), load(f[1], dk, K), load(f[2], dv, K), load(f[3], dout, Q), load(f[4], q, Q), load(f[5], k, K),
          load(f[6], v, K), load(f[7], att, A);
      cpu::gqa_attention_backward(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], B, Tn, NH, KVH, hs);
      store(dq, f[0], Q), store(dk, f[1], K), store(dv, f[2], K);
    }
  }

  // Flash-style attention: the kernels read and write T directly (fp32
  // arithmetic for bf16, each gradient summed in fp32 and added once), so
  // no operand is copied and no (T,T) scratch exists.
  void flash_attention_forward(HeadView<T> out, Acc* lse, HeadView<const T> q, HeadView<const T> k, HeadView<const T> v,
                               int B, int Tn, int NH, int KVH, int hs) override {
    cpu::flash_attention_forward(out, lse, q, k, v, B, Tn, NH, KVH, hs);
  }
  void flash_attention_backward(HeadView<T> dq, HeadView<T> dk, HeadView<T> dv, HeadView<const T> dout,
                                HeadView<const T> q, HeadView<const T> k, HeadView<const T> v, HeadView<const T> out,
                                const Acc* lse, int B, int Tn, int NH, int KVH, int hs) override {
    cpu::flash_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, Tn, NH, KVH, hs);
  }

  void adamw_fp32_grads(float* weights, T* low, const float* grads, float scale, float* m, float* v, size_t count,
                        int step, const AdamConfig& a) override {
    adamw(weights, low, grads, scale, m, v, count, step, a);
  }
  void adamw_model_grads(float* weights, T* low, const T* grads, float scale, float* m, float* v, size_t count,
                         int step, const AdamConfig& a) override {
    adamw(weights, low, grads, scale, m, v, count, step, a);
  }
  // The offloaded optimizer's element-wise passes, on every core when large (executor/adamw.h).
  void add_into_fp32(float* dst, const T* src, size_t n, bool add) override {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kHostParallelElems)
    for (size_t i = 0; i < n; ++i) dst[i] = (add ? dst[i] : 0.0f) + widen(src[i]);
  }
  void add_into(T* dst, const T* src, size_t n, bool add) override {
#pragma omp parallel for schedule(static) if (parallel : n >= kHostParallelElems)
    for (size_t i = 0; i < n; ++i) dst[i] = (add ? dst[i] : T(0)) + src[i];
  }
  void round_into(T* dst, const float* src, size_t n) override {
#pragma omp parallel for schedule(static) if (parallel : n >= kHostParallelElems)
    for (size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(src[i]);
  }
  void widen_into(float* dst, const T* src, size_t n) override {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kHostParallelElems)
    for (size_t i = 0; i < n; ++i) dst[i] = widen(src[i]);
  }

 private:
  template <class G>
  void adamw(float* weights, T* low, const G* grads, float scale, float* m, float* v, size_t count, int step,
             const AdamConfig& a) {
    adamw_step(weights, grads, scale, m, v, count, step, a);
    if (low) round_into(low, weights, count);
  }
  // Adds row i of rows (N,C) to row row_of(i) of table (table_rows,C),
  // skipping rows where row_of gives -1. bf16 tables accumulate in fp32 and
  // round once.
  template <class RowOf>
  void scatter_add_rows(T* table, size_t table_rows, const T* rows, size_t N, int C, RowOf row_of) {
    auto add = [&](auto* tab, const auto* src) {
      for (size_t i = 0; i < N; ++i) {
        const long r = row_of(i);
        if (r < 0) continue;
        auto* to = tab + static_cast<size_t>(r) * sz(C);
        const auto* from = src + i * sz(C);
        for (int c = 0; c < C; ++c) to[c] += from[c];
      }
    };
    if constexpr (kNative) {
      add(table, rows);
    } else {
      const size_t TC = table_rows * sz(C), NC = N * sz(C);
      auto f = frame<2>({TC, NC});
      load(f[0], table, TC), load(f[1], rows, NC);
      add(f[0], static_cast<const float*>(f[1]));
      store(table, f[0], TC);
    }
  }
  // Adds row row_of(i) of table (C wide) to row i of out (rows x C). One rounding per element.
  template <class RowOf>
  void gather_add_rows(T* out, const T* table, size_t rows, int C, RowOf row_of) {
    for (size_t i = 0; i < rows; ++i) {
      const T* from = table + row_of(i) * sz(C);
      T* to = out + i * sz(C);
      for (int c = 0; c < C; ++c) to[c] += from[c];
    }
  }
  static size_t sz(long n) { return static_cast<size_t>(n); }
  // K consecutive fp32 regions of the given sizes in the workspace, which
  // grows (and stays) to the largest frame asked for.
  template <size_t K>
  std::array<float*, K> frame(const std::array<size_t, K>& sizes) {
    size_t total = 0;
    for (size_t s : sizes) total += s;
    if (scratch_.size() < total) {
      release_buffer(scratch_);  // the old one goes before the new one comes
      scratch_.resize(total);
    }
    std::array<float*, K> out{};
    float* p = scratch_.data();
    for (size_t k = 0; k < K; ++k) {
      out[k] = p;
      p += sizes[k];
    }
    return out;
  }
  static void load(float* to, const T* from, size_t n) {
    if (!from) return;
    for (size_t i = 0; i < n; ++i) to[i] = static_cast<float>(from[i]);
  }
  static void store(T* to, const float* from, size_t n) {
    if (!to) return;
    for (size_t i = 0; i < n; ++i) to[i] = static_cast<T>(from[i]);
  }
  template <class Op>
  void rope(T* x, int B, int Tn, int H, int hs, Acc base, Op op) {
    if constexpr (kNative) {
      op(x, B, Tn, H, hs, base);
    } else {
      const size_t n = sz(B) * sz(Tn) * sz(H) * sz(hs);
      auto f = frame<1>({n});
      load(f[0], x, n);
      op(f[0], B, Tn, H, hs, base);
      store(x, f[0], n);
    }
  }

  TrackingAllocator* tracker_;
  // The fp32 attention's score scratch of one sequence, grown to n.
  T* scores(size_t n) {
    if (scores_.size() < n) {
      release_buffer(scores_);
      scores_.resize(n);
    }
    return scores_.data();
  }
  Buffer<float> scratch_;
  Buffer<T> scores_;
};

}  // namespace zp
