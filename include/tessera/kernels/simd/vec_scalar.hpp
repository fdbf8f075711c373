// VecScalar: the one-lane vector, the portable fallback of every kernel; exp, erf and the normal CDF come from <cmath>.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "tessera/kernels/simd/polynomials.hpp"

namespace tessera::kernels::simd {

struct VecScalar {
  using Mask = bool;
  static constexpr int width = 1;
  float v;
  static VecScalar zero() { return {0.0f}; }
  static VecScalar load(const float* p) { return {*p}; }
  static VecScalar load_partial(const float* p, int n, float fill) { return {n > 0 ? *p : fill}; }
  static VecScalar load_broadcast(const float* p) { return {*p}; }
  void store(float* p) const { *p = v; }
  void store_partial(float* p, int n) const {
    if (n > 0) *p = v;
  }
  static VecScalar broadcast(float x) { return {x}; }
  static Mask first_n(int n) { return n > 0; }
};

inline VecScalar operator+(VecScalar a, VecScalar b) { return {a.v + b.v}; }
inline VecScalar operator-(VecScalar a, VecScalar b) { return {a.v - b.v}; }
inline VecScalar operator*(VecScalar a, VecScalar b) { return {a.v * b.v}; }
inline VecScalar operator/(VecScalar a, VecScalar b) { return {a.v / b.v}; }
inline VecScalar operator-(VecScalar a) { return {-a.v}; }
inline VecScalar fmadd(VecScalar a, VecScalar b, VecScalar c) { return {a.v * b.v + c.v}; }
inline VecScalar fnmadd(VecScalar a, VecScalar b, VecScalar c) { return {c.v - a.v * b.v}; }
inline VecScalar fmsub(VecScalar a, VecScalar b, VecScalar c) { return {a.v * b.v - c.v}; }
inline VecScalar max(VecScalar a, VecScalar b) { return b.v > a.v ? b : a; }
inline VecScalar min(VecScalar a, VecScalar b) { return b.v < a.v ? b : a; }
inline VecScalar abs(VecScalar a) { return {std::fabs(a.v)}; }
inline VecScalar sqrt(VecScalar a) { return {std::sqrt(a.v)}; }
inline VecScalar round_nearest(VecScalar a) { return {std::nearbyint(a.v)}; }
inline VecScalar trunc(VecScalar a) { return {std::trunc(a.v)}; }
inline bool lt(VecScalar a, VecScalar b) { return a.v < b.v; }
inline bool gt(VecScalar a, VecScalar b) { return a.v > b.v; }
inline VecScalar select(bool mask, VecScalar a, VecScalar b) { return mask ? a : b; }
inline VecScalar copy_sign(VecScalar magnitude, VecScalar sign) { return {std::copysign(magnitude.v, sign.v)}; }
inline VecScalar pow2(VecScalar n) { return {std::bit_cast<float>((static_cast<int32_t>(n.v) + 127) << 23)}; }
inline float reduce_add(VecScalar a) { return a.v; }
inline float reduce_max(VecScalar a) { return a.v; }
inline void transpose(VecScalar (&)[1]) {}
// The scalar fallback leaves contraction to the compiler.
inline VecScalar no_contract(VecScalar x) { return x; }

inline VecScalar exp(VecScalar x) { return {std::exp(x.v)}; }
inline VecScalar exp_nonpositive(VecScalar x) { return {std::exp(x.v)}; }
inline VecScalar erf(VecScalar x) { return {std::erf(x.v)}; }
// In double, so that rounding x / sqrt 2 and x^2 does not cost the tails their relative accuracy.
inline CdfPdf<VecScalar> normal_cdf_pdf(VecScalar x) {
  const double xd = x.v;
  return {{static_cast<float>(0.5 * std::erfc(-xd * 0.70710678118654752))},
          {static_cast<float>(std::exp(-0.5 * xd * xd) * 0.39894228040143268)}};
}

}  // namespace tessera::kernels::simd
