// Reference CPU kernels of the Llama layer that the GPT kernels (ops_cpu.h)
// do not cover, forward and hand-written backward: RMSNorm, SwiGLU, rotary
// positions (the half-split convention of Hugging Face's rotate_half) and
// causal attention with grouped-query heads. Same conventions as ops_cpu.h.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace zp::cpu {

// out (N,C) = x * rstd * weight; saves rstd (N).
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C) {
  const T eps = T(1e-5);
  for (int i = 0; i < N; ++i) {
    const T* x = inp + static_cast<size_t>(i) * C;
    T ss = 0;
    for (int c = 0; c < C; ++c) ss += x[c] * x[c];
    const T r = T(1) / std::sqrt(ss / C + eps);
    T* o = out + static_cast<size_t>(i) * C;
    for (int c = 0; c < C; ++c) o[c] = x[c] * r * weight[c];
    rstd[i] = r;
  }
}

template <class T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int N, int C) {
  for (int i = 0; i < N; ++i) {
    const T* x = inp + static_cast<size_t>(i) * C;
    const T* d = dout + static_cast<size_t>(i) * C;
    T* dx = dinp + static_cast<size_t>(i) * C;
    const T r = rstd[i];
    T dot = 0;  // sum_c (w dy x)
    for (int c = 0; c < C; ++c) dot += weight[c] * d[c] * x[c];
    for (int c = 0; c < C; ++c) {
      dweight[c] += x[c] * r * d[c];
      dx[c] += r * weight[c] * d[c] - x[c] * r * r * r * dot / C;
    }
  }
}

// h = silu(gate) * up, elementwise over n.
template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const T s = T(1) / (T(1) + std::exp(-gate[i]));
    out[i] = gate[i] * s * up[i];
  }
}

template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const T s = T(1) / (T(1) + std::exp(-gate[i]));
    const T silu = gate[i] * s;
    dup[i] = dout[i] * silu;  // written: each has one producer
    dgate[i] = dout[i] * up[i] * s * (T(1) + gate[i] * (T(1) - s));
  }
}

// Rotary positions in place on x (B,T,H,hs): pairs (i, i + hs/2) rotate by t * base^(-2i/hs).
template <class T>
void rope_forward(T* x, int B, int Tn, int H, int hs, T base) {
  const int half = hs / 2;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < Tn; ++t)
      for (int h = 0; h < H; ++h) {
        T* v = x + ((static_cast<size_t>(b) * Tn + t) * H + h) * hs;
        for (int i = 0; i < half; ++i) {
          const T angle = static_cast<T>(t) * std::pow(base, -T(2) * i / hs);
          const T c = std::cos(angle), s = std::sin(angle);
          const T x1 = v[i], x2 = v[i + half];
          v[i] = x1 * c - x2 * s;
          v[i + half] = x2 * c + x1 * s;
        }
      }
}

// The gradient through a rotation is the inverse rotation, in place on dx.
template <class T>
void rope_backward(T* dx, int B, int Tn, int H, int hs, T base) {
  const int half = hs / 2;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < Tn; ++t)
      for (int h = 0; h < H; ++h) {
        T* v = dx + ((static_cast<size_t>(b) * Tn + t) * H + h) * hs;
        for (int i = 0; i < half; ++i) {
          const T angle = static_cast<T>(t) * std::pow(base, -T(2) * i / hs);
          const T c = std::cos(angle), s = std::sin(angle);
          const T d1 = v[i], d2 = v[i + half];
          v[i] = d1 * c + d2 * s;
          v[i + half] = -d1 * s + d2 * c;
        }
      }
}

// Causal attention with KVH key/value heads shared by NH/KVH query heads.
// q (B,T,NH,hs), k and v (B,T,KVH,hs); att (B,NH,T,T); out (B,T,NH,hs).
template <class T>
void gqa_attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int Tn, int NH, int KVH, int hs) {
  const int group = NH / KVH;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const int kh = h / group;
      for (int t = 0; t < Tn; ++t) {
        const T* qv = q + ((static_cast<size_t>(b) * Tn + t) * NH + h) * hs;
        T* a = att + ((static_cast<size_t>(b) * NH + h) * Tn + t) * Tn;
        T maxv = -1e30;
        for (int t2 = 0; t2 <= t; ++t2) {
          const T* kv = k + ((static_cast<size_t>(b) * Tn + t2) * KVH + kh) * hs;
          T dot = 0;
          for (int i = 0; i < hs; ++i) dot += qv[i] * kv[i];
          a[t2] = dot * scale;
          if (a[t2] > maxv) maxv = a[t2];
        }
        T sum = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          a[t2] = std::exp(a[t2] - maxv);
          sum += a[t2];
        }
        for (int t2 = 0; t2 < Tn; ++t2) a[t2] = t2 <= t ? a[t2] / sum : T(0);
        T* o = out + ((static_cast<size_t>(b) * Tn + t) * NH + h) * hs;
        for (int i = 0; i < hs; ++i) o[i] = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          const T* vv = v + ((static_cast<size_t>(b) * Tn + t2) * KVH + kh) * hs;
          for (int i = 0; i < hs; ++i) o[i] += a[t2] * vv[i];
        }
      }
    }
}

template <class T>
void gqa_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att, int B,
                            int Tn, int NH, int KVH, int hs) {
  const int group = NH / KVH;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  std::vector<T> da(static_cast<size_t>(Tn)), dpre(static_cast<size_t>(Tn));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const int kh = h / group;
      for (int t = 0; t < Tn; ++t) {
        const T* a = att + ((static_cast<size_t>(b) * NH + h) * Tn + t) * Tn;
        const T* d = dout + ((static_cast<size_t>(b) * Tn + t) * NH + h) * hs;
        for (int t2 = 0; t2 <= t; ++t2) {
          const T* vv = v + ((static_cast<size_t>(b) * Tn + t2) * KVH + kh) * hs;
          T* dvv = dv + ((static_cast<size_t>(b) * Tn + t2) * KVH + kh) * hs;
          T acc = 0;
          for (int i = 0; i < hs; ++i) {
            acc += vv[i] * d[i];
            dvv[i] += a[t2] * d[i];
          }
          da[t2] = acc;
        }
        T dot = 0;
        for (int t2 = 0; t2 <= t; ++t2) dot += a[t2] * da[t2];
        for (int t2 = 0; t2 <= t; ++t2) dpre[t2] = a[t2] * (da[t2] - dot) * scale;
        const T* qv = q + ((static_cast<size_t>(b) * Tn + t) * NH + h) * hs;
        T* dqv = dq + ((static_cast<size_t>(b) * Tn + t) * NH + h) * hs;
        for (int t2 = 0; t2 <= t; ++t2) {
          const T* kv = k + ((static_cast<size_t>(b) * Tn + t2) * KVH + kh) * hs;
          T* dkv = dk + ((static_cast<size_t>(b) * Tn + t2) * KVH + kh) * hs;
          for (int i = 0; i < hs; ++i) {
            dqv[i] += kv[i] * dpre[t2];
            dkv[i] += qv[i] * dpre[t2];
          }
        }
      }
    }
}

}  // namespace zp::cpu
