// The executor's number types. Training runs in fp32, or in bf16 mixed
// precision (Micikevicius et al. 2018, with bf16 as Kalamkar et al. 2019 use
// it: bf16 weights, gradients and activations, fp32 master weights and
// optimizer states); double serves the finite-difference tests. Kernels read
// bf16 and compute in fp32 (acc_t), as GPU kernels accumulate bf16 products
// in fp32 registers. Eigen's bfloat16 rounds to nearest even.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <Eigen/Core>

namespace zp {

using bf16 = Eigen::bfloat16;

// A stored value as fp32: bf16's bits are fp32's upper half, so the widening
// is exact and, unlike Eigen's conversion, branch-free, which lets the host's
// long element-wise loops vectorize (executor/adamw.h).
template <class T>
inline float widen(T x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return std::bit_cast<float>(static_cast<uint32_t>(x.value) << 16);
  } else {
    return static_cast<float>(x);
  }
}

// What a kernel computes and accumulates in for storage type T.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, bf16>, float, T>;

// Element types the communicators move (and reduce).
enum class Elem : uint8_t { F32, BF16 };

constexpr size_t elem_bytes(Elem e) { return e == Elem::F32 ? 4 : 2; }

template <class T>
constexpr Elem elem_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "the communicators move fp32 and bf16");
  return std::is_same_v<T, float> ? Elem::F32 : Elem::BF16;
}

}  // namespace zp
