// VecAvx2: eight float lanes in a ymm register (AVX2 + FMA); masks are vectors of all-ones or all-zero lanes.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)

#include "tessera/kernels/simd/intrinsics.hpp"
#include "tessera/kernels/simd/polynomials.hpp"

namespace tessera::kernels::simd {

struct VecAvx2 {
  using Mask = __m256;
  static constexpr int width = 8;
  static constexpr bool polynomial_math = true;  // exp, erf, ... from polynomials.hpp
  __m256 v;
  static Mask first_n(int n) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static VecAvx2 zero() { return {_mm256_setzero_ps()}; }
  static VecAvx2 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static VecAvx2 load_partial(const float* p, int n, float fill) {
    const Mask m = first_n(n);
    return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, _mm256_castps_si256(m)), m)};
  }
  static VecAvx2 load_broadcast(const float* p) { return {_mm256_broadcast_ss(p)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm256_maskstore_ps(p, _mm256_castps_si256(first_n(n)), v); }
  static VecAvx2 broadcast(float x) { return {_mm256_set1_ps(x)}; }
};

inline VecAvx2 operator+(VecAvx2 a, VecAvx2 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VecAvx2 operator-(VecAvx2 a, VecAvx2 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VecAvx2 operator*(VecAvx2 a, VecAvx2 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VecAvx2 operator/(VecAvx2 a, VecAvx2 b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VecAvx2 operator-(VecAvx2 a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
inline VecAvx2 fmadd(VecAvx2 a, VecAvx2 b, VecAvx2 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VecAvx2 fnmadd(VecAvx2 a, VecAvx2 b, VecAvx2 c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
inline VecAvx2 fmsub(VecAvx2 a, VecAvx2 b, VecAvx2 c) { return {_mm256_fmsub_ps(a.v, b.v, c.v)}; }
// vmaxps/vminps return their second operand when either is NaN.
inline VecAvx2 max(VecAvx2 a, VecAvx2 b) { return {_mm256_max_ps(b.v, a.v)}; }
inline VecAvx2 min(VecAvx2 a, VecAvx2 b) { return {_mm256_min_ps(b.v, a.v)}; }
inline VecAvx2 abs(VecAvx2 a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline VecAvx2 sqrt(VecAvx2 a) { return {_mm256_sqrt_ps(a.v)}; }
inline VecAvx2 round_nearest(VecAvx2 a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline VecAvx2 trunc(VecAvx2 a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)}; }
inline __m256 lt(VecAvx2 a, VecAvx2 b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
inline __m256 gt(VecAvx2 a, VecAvx2 b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ); }
inline VecAvx2 select(__m256 mask, VecAvx2 a, VecAvx2 b) { return {_mm256_blendv_ps(b.v, a.v, mask)}; }
inline VecAvx2 copy_sign(VecAvx2 magnitude, VecAvx2 sign) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  return {_mm256_or_ps(_mm256_andnot_ps(sign_bit, magnitude.v), _mm256_and_ps(sign_bit, sign.v))};
}
inline VecAvx2 pow2(VecAvx2 n) {
  const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(biased, 23))};
}
inline float reduce_add(VecAvx2 a) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
inline float reduce_max(VecAvx2 a) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// In-register transpose of an 8 x 8 block: on return r[k] holds what was column k. Pairs are interleaved, then
// 64-bit halves shuffled, then 128-bit lanes swapped.
inline void transpose(VecAvx2 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0].v, r[1].v), t1 = _mm256_unpackhi_ps(r[0].v, r[1].v);
  const __m256 t2 = _mm256_unpacklo_ps(r[2].v, r[3].v), t3 = _mm256_unpackhi_ps(r[2].v, r[3].v);
  const __m256 t4 = _mm256_unpacklo_ps(r[4].v, r[5].v), t5 = _mm256_unpackhi_ps(r[4].v, r[5].v);
  const __m256 t6 = _mm256_unpacklo_ps(r[6].v, r[7].v), t7 = _mm256_unpackhi_ps(r[6].v, r[7].v);
  // u[j] holds column j (first 128 bits) and column 4 + j (last 128 bits) of rows 0-3, u[4 + j] of rows 4-7.
  const __m256 u[8] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                       _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE),
                       _mm256_shuffle_ps(t4, t6, 0x44), _mm256_shuffle_ps(t4, t6, 0xEE),
                       _mm256_shuffle_ps(t5, t7, 0x44), _mm256_shuffle_ps(t5, t7, 0xEE)};
  for (int j = 0; j < 4; ++j) {
    r[j].v = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j].v = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

// Returns x unchanged, but opaque to the optimiser: a product passed through it cannot be fused with a later
// addition (GCC contracts _mm256_mul_ps + _mm256_add_ps into an FMA under its default -ffp-contract=fast).
// Kernels that promise a given rounding sequence use it.
inline VecAvx2 no_contract(VecAvx2 x) {
  __asm__("" : "+x"(x.v));
  return x;
}

}  // namespace tessera::kernels::simd

#endif  // AVX2 + FMA
