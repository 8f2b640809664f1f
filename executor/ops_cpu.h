// Reference CPU kernels of the GPT layer, forward and backward, in the style
// of llm.c (one function per op, shapes in comments, backward accumulates
// into gradient buffers with +=). Templated on the scalar so tests can run
// them in double against finite differences. Matrix products go through
// Eigen. B = batch, T = tokens, C = channels, OC = output channels,
// NH = heads, V = vocabulary.
#pragma once

#include <cmath>
#include <cstddef>

#include <Eigen/Dense>

namespace zp::cpu {

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapM = Eigen::Map<Mat<T>>;
template <class T>
using CMapM = Eigen::Map<const Mat<T>>;

// out (N,C) = LayerNorm(inp) * weight + bias; saves mean and rstd (N).
template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, int N, int C) {
  const T eps = T(1e-5);
  for (int i = 0; i < N; ++i) {
    const T* x = inp + static_cast<size_t>(i) * C;
    T m = 0;
    for (int c = 0; c < C; ++c) m += x[c];
    m /= C;
    T v = 0;
    for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    v /= C;
    const T s = T(1) / std::sqrt(v + eps);
    T* o = out + static_cast<size_t>(i) * C;
    for (int c = 0; c < C; ++c) o[c] = (s * (x[c] - m)) * weight[c] + bias[c];
    mean[i] = m;
    rstd[i] = s;
  }
}

template <class T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const T* mean,
                        const T* rstd, int N, int C) {
  for (int i = 0; i < N; ++i) {
    const T* d = dout + static_cast<size_t>(i) * C;
    const T* x = inp + static_cast<size_t>(i) * C;
    T* dx = dinp + static_cast<size_t>(i) * C;
    T dnorm_mean = 0, dnorm_norm_mean = 0;
    for (int c = 0; c < C; ++c) {
      const T norm = (x[c] - mean[i]) * rstd[i];
      const T dnorm = weight[c] * d[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    for (int c = 0; c < C; ++c) {
      const T norm = (x[c] - mean[i]) * rstd[i];
      const T dnorm = weight[c] * d[c];
      dbias[c] += d[c];
      dweight[c] += norm * d[c];
      dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rstd[i];
    }
  }
}

// out (N,OC) = inp (N,C) * weight(OC,C)^T + bias (OC)
template <class T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC) {
  MapM<T> o(out, N, OC);
  o.noalias() = CMapM<T>(inp, N, C) * CMapM<T>(weight, OC, C).transpose();
  if (bias) o.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias, OC);
}

template <class T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int N, int C, int OC,
                     bool overwrite_dinp = false) {
  CMapM<T> d(dout, N, OC);
  if (overwrite_dinp) {
    MapM<T>(dinp, N, C).noalias() = d * CMapM<T>(weight, OC, C);
  } else {
    MapM<T>(dinp, N, C).noalias() += d * CMapM<T>(weight, OC, C);
  }
  MapM<T>(dweight, OC, C).noalias() += d.transpose() * CMapM<T>(inp, N, C);
  if (dbias) Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(dbias, OC) += d.colwise().sum();
}

// Causal self-attention. inp (B,T,3C) = q,k,v; preatt, att (B,NH,T,T); out (B,T,C).
template <class T>
void attention_forward(T* out, T* preatt, T* att, const T* inp, int B, int Tn, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < Tn; ++t)
      for (int h = 0; h < NH; ++h) {
        const T* q = inp + (static_cast<size_t>(b) * Tn + t) * C3 + h * hs;
        T* pre = preatt + ((static_cast<size_t>(b) * NH + h) * Tn + t) * Tn;
        T* a = att + ((static_cast<size_t>(b) * NH + h) * Tn + t) * Tn;
        T maxv = -1e30;
        for (int t2 = 0; t2 <= t; ++t2) {
          const T* k = inp + (static_cast<size_t>(b) * Tn + t2) * C3 + h * hs + C;
          T v = 0;
          for (int i = 0; i < hs; ++i) v += q[i] * k[i];
          v *= scale;
          pre[t2] = v;
          if (v > maxv) maxv = v;
        }
        T sum = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          a[t2] = std::exp(pre[t2] - maxv);
          sum += a[t2];
        }
        for (int t2 = 0; t2 < Tn; ++t2) a[t2] = t2 <= t ? a[t2] / sum : T(0);
        T* o = out + (static_cast<size_t>(b) * Tn + t) * C + h * hs;
        for (int i = 0; i < hs; ++i) o[i] = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          const T* v = inp + (static_cast<size_t>(b) * Tn + t2) * C3 + h * hs + 2 * C;
          for (int i = 0; i < hs; ++i) o[i] += a[t2] * v[i];
        }
      }
}

template <class T>
void attention_backward(T* dinp, T* dpreatt, T* datt, const T* dout, const T* inp, const T* att, int B, int Tn, int C,
                        int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < Tn; ++t)
      for (int h = 0; h < NH; ++h) {
        const T* a = att + ((static_cast<size_t>(b) * NH + h) * Tn + t) * Tn;
        T* da = datt + ((static_cast<size_t>(b) * NH + h) * Tn + t) * Tn;
        T* dpre = dpreatt + ((static_cast<size_t>(b) * NH + h) * Tn + t) * Tn;
        const T* q = inp + (static_cast<size_t>(b) * Tn + t) * C3 + h * hs;
        T* dq = dinp + (static_cast<size_t>(b) * Tn + t) * C3 + h * hs;
        const T* d = dout + (static_cast<size_t>(b) * Tn + t) * C + h * hs;
        for (int t2 = 0; t2 <= t; ++t2) {  // out = att @ v
          const T* v = inp + (static_cast<size_t>(b) * Tn + t2) * C3 + h * hs + 2 * C;
          T* dv = dinp + (static_cast<size_t>(b) * Tn + t2) * C3 + h * hs + 2 * C;
          for (int i = 0; i < hs; ++i) {
            da[t2] += v[i] * d[i];
            dv[i] += a[t2] * d[i];
          }
        }
        for (int t2 = 0; t2 <= t; ++t2)  // softmax
          for (int t3 = 0; t3 <= t; ++t3) {
            const T local = a[t2] * ((t2 == t3 ? T(1) : T(0)) - a[t3]);
            dpre[t3] += local * da[t2];
          }
        for (int t2 = 0; t2 <= t; ++t2) {  // preatt = q . k * scale
          const T* k = inp + (static_cast<size_t>(b) * Tn + t2) * C3 + h * hs + C;
          T* dk = dinp + (static_cast<size_t>(b) * Tn + t2) * C3 + h * hs + C;
          for (int i = 0; i < hs; ++i) {
            dq[i] += k[i] * dpre[t2] * scale;
            dk[i] += q[i] * dpre[t2] * scale;
          }
        }
      }
}

// GELU, tanh approximation (GPT-2).
template <class T>
void gelu_forward(T* out, const T* inp, size_t n) {
  const T s = std::sqrt(T(2) / T(M_PI));
  for (size_t i = 0; i < n; ++i) {
    const T x = inp[i];
    out[i] = T(0.5) * x * (T(1) + std::tanh(s * (x + T(0.044715) * x * x * x)));
  }
}

template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n) {
  const T s = std::sqrt(T(2) / T(M_PI));
  for (size_t i = 0; i < n; ++i) {
    const T x = inp[i];
    const T u = s * (x + T(0.044715) * x * x * x);
    const T th = std::tanh(u);
    const T sech2 = T(1) - th * th;
    const T grad = T(0.5) * (T(1) + th) + x * T(0.5) * sech2 * s * (T(1) + T(3) * T(0.044715) * x * x);
    dinp[i] = grad * dout[i];  // written: the input gradient has one producer
  }
}

template <class T>
void residual_forward(T* out, const T* a, const T* b, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <class T>
void residual_backward(T* da, T* db, const T* dout, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

// Softmax cross-entropy over logits (N,V); returns the mean loss and writes
// dlogits = (softmax - onehot) / N.
template <class T>
T crossentropy_forward_backward(T* dlogits, const T* logits, const int* targets, int N, int V) {
  T loss = 0;
  for (int i = 0; i < N; ++i) {
    const T* l = logits + static_cast<size_t>(i) * V;
    T maxv = l[0];
    for (int v = 1; v < V; ++v) maxv = std::max(maxv, l[v]);
    T sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(l[v] - maxv);
    const T logz = std::log(sum) + maxv;
    loss += logz - l[targets[i]];
    T* d = dlogits + static_cast<size_t>(i) * V;
    for (int v = 0; v < V; ++v) d[v] = (std::exp(l[v] - logz) - (v == targets[i] ? T(1) : T(0))) / N;
  }
  return loss / N;
}

}  // namespace zp::cpu
