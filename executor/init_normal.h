// The models' initial weights, N(0, stddev), drawn by counter: the value at
// index i of a model's whole parameter layout is a function of (seed, i)
// alone (splitmix64's mix of the pair, then Box-Muller on the two 32-bit
// halves, Box & Muller 1958), so any range of the model is filled on every
// core at once and gives the same values whichever cores, and in whatever
// order. A sequential generator (std::mt19937_64 with
// std::normal_distribution, about 20 ns a value on the 2-core VM) took 30 s
// for GPT-2 1.5B and 70 s for a 3B model before each run, most of a GPU
// session's validation budget.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace zp {

// splitmix64's finaliser (Steele, Lea & Flood 2014, "Fast splittable
// pseudorandom number generators"): a bijection of 64 bits that mixes well.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The pair of N(0, 1) values at counter `pair` of `seed`.
inline void normal_pair(uint64_t seed, uint64_t pair, double& a, double& b) {
  const uint64_t bits = mix64(mix64(seed) + pair * 0x9e3779b97f4a7c15ull);
  // u1 in (0, 1] so its log is finite; u2 in [0, 1).
  const double u1 = (static_cast<double>(bits >> 32) + 1.0) * 0x1p-32;
  const double u2 = static_cast<double>(bits & 0xffffffffull) * 0x1p-32;
  const double r = std::sqrt(-2.0 * std::log(u1)), angle = 6.283185307179586 * u2;
  a = r * std::cos(angle);
  b = r * std::sin(angle);
}

// out[j] = stddev * N(0, 1) at index first + j of `seed`'s sequence, for j < n.
template <class T>
void fill_normal(T* out, size_t n, double stddev, uint64_t seed, size_t first) {
  const size_t begin = first / 2, end = (first + n + 1) / 2;  // the pairs that cover [first, first + n)
#pragma omp parallel for schedule(static) if (n >= (size_t{1} << 18))
  for (size_t p = begin; p < end; ++p) {
    double v[2];
    normal_pair(seed, p, v[0], v[1]);
    for (size_t k = 0; k < 2; ++k) {
      const size_t i = 2 * p + k;
      if (i >= first && i < first + n) out[i - first] = static_cast<T>(stddev * v[k]);
    }
  }
}

}  // namespace zp
