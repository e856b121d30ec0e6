// Small element loops shared by the networks' hand-written passes (PReLU, pooling, resampling).
#pragma once

#include <algorithm>

// Hot loops are compiled three times, for AVX-512 (x86-64-v4), AVX2 + FMA (x86-64-v3) and the
// x86-64 baseline the rest of the build targets, and the dynamic loader picks the best for the
// CPU at hand: one binary runs anywhere and still uses 16-wide vectors where they exist (4x the
// baseline's SSE2 on the loops below). Only for loops whose results cannot depend on the clone:
// element-wise arithmetic (GCC never reorders float operations), and where v3/v4 may fuse a
// multiply-add, its addend is zero or its product exact (see prelu_value).
#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__)
#define FACEMAG_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FACEMAG_VECTOR_CLONES
#endif

namespace facemag::nn {

// A vector of V floats (GCC/Clang vector extension): one AVX-512 register in the x86-64-v4
// clone, two AVX2 registers in v3, four SSE registers in the baseline. For loops over channel
// counts such as 10, 28 or 48 that the auto-vectoriser turns into scalar tails.
template <int V>
struct FloatVecOf {
  typedef float type __attribute__((vector_size(V * sizeof(float))));
};
template <int V>
using FloatVec = typename FloatVecOf<V>::type;
// V doubles, for sums taken in double.
template <int V>
struct DoubleVecOf {
  typedef double type __attribute__((vector_size(V * sizeof(double))));
};
template <int V>
using DoubleVec = typename DoubleVecOf<V>::type;

// The helpers below are always inlined: a clone must not call a copy compiled for another
// target, whose vector arguments would be passed differently. GCC's -Wpsabi notes about that
// ABI difference at every use, so they are silenced for the files that include this header.
#pragma GCC diagnostic ignored "-Wpsabi"
template <int V>
[[gnu::always_inline]] inline FloatVec<V> load_floats(const float* p) {
  FloatVec<V> v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
template <int V>
[[gnu::always_inline]] inline void store_floats(float* p, FloatVec<V> v) {
  __builtin_memcpy(p, &v, sizeof v);
}
// std::max and prelu_value below, lane by lane, with the same comparisons.
template <int V>
[[gnu::always_inline]] inline FloatVec<V> max_floats(FloatVec<V> a, FloatVec<V> b) {
  return a < b ? b : a;
}
template <int V>
[[gnu::always_inline]] inline FloatVec<V> prelu_floats(FloatVec<V> x, FloatVec<V> slope) {
  const FloatVec<V> zero{};
  return (x < zero ? zero : x) + slope * (zero < x ? zero : x);
}

// max(x, 0) + slope * min(x, 0): the value of x > 0 ? x : slope * x without a branch (signs
// are random, a branch mispredicts half the time), so that the loops vectorise. The product is
// taken in float and rounded once, as LibTorch's elementwise kernels do (a fused multiply-add
// gives the same value: one of the two terms is always zero).
inline float prelu_value(float x, float slope) {
  return std::max(x, 0.0f) + slope * std::min(x, 0.0f);
}

}  // namespace facemag::nn
