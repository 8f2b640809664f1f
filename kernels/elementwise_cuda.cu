#include "kernels/cuda_common.cuh"
#include "kernels/elementwise_cuda.h"

namespace zp::cuda {
namespace {

// The sums as pointwise steps (cuda_common.cuh): 16-byte packs where aligned.
template <class D>
struct Add {
  D* out;
  const D *a, *b;
  template <int E>
  __device__ void step(size_t i) const {
    const Floats<E> x = load<E>(a + i), y = load<E>(b + i);
    Floats<E> r;
    for (int e = 0; e < E; ++e) r.v[e] = x.v[e] + y.v[e];
    store<E>(out + i, r);
  }
};

template <class D>
struct ResidualBackward {
  D *da, *db;
  const D* dout;
  template <int E>
  __device__ void step(size_t i) const {
    const Floats<E> g = load<E>(dout + i);
    Floats<E> x = load<E>(da + i), y = load<E>(db + i);
    for (int e = 0; e < E; ++e) {
      x.v[e] += g.v[e];
      y.v[e] += g.v[e];
    }
    store<E>(da + i, x);
    store<E>(db + i, y);
  }
};

template <class To, class From>
struct AddInto {
  To* dst;
  const From* src;
  bool accumulate;
  template <int E>
  __device__ void step(size_t i) const {
    const Floats<E> x = load<E>(src + i);
    Floats<E> r = accumulate ? load<E>(dst + i) : Floats<E>{};
    for (int e = 0; e < E; ++e) r.v[e] += x.v[e];
    store<E>(dst + i, r);
  }
};

}  // namespace

template <class T>
void add(T* out, const T* a, const T* b, size_t n) {
  pointwise(Add<device_t<T>>{dev(out), dev(a), dev(b)}, n, "add", {out, a, b});
}

template <class T>
void residual_backward(T* da, T* db, const T* dout, size_t n) {
  pointwise(ResidualBackward<device_t<T>>{dev(da), dev(db), dev(dout)}, n, "residual_backward", {da, db, dout});
}

template <class T>
void add_into(T* dst, const T* src, size_t n, bool accumulate) {
  pointwise(AddInto<device_t<T>, device_t<T>>{dev(dst), dev(src), accumulate}, n, "add_into", {dst, src});
}

template <class T>
void add_into_fp32(float* dst, const T* src, size_t n, bool accumulate) {
  pointwise(AddInto<float, device_t<T>>{dst, dev(src), accumulate}, n, "add_into_fp32", {dst, src});
}

#define ZP_CUDA_ELEMENTWISE(T)                                            \
  template void add<T>(T*, const T*, const T*, size_t);                   \
  template void residual_backward<T>(T*, T*, const T*, size_t);           \
  template void add_into<T>(T*, const T*, size_t, bool);                  \
  template void add_into_fp32<T>(float*, const T*, size_t, bool);
ZP_CUDA_ELEMENTWISE(float)
ZP_CUDA_ELEMENTWISE(Bf16)
#undef ZP_CUDA_ELEMENTWISE

}  // namespace zp::cuda
