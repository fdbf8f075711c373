// VecAvx512: sixteen float lanes in a zmm register (AVX-512F); masks are k registers.
#pragma once

#if defined(__AVX512F__)

#include <cstdint>

#include "tessera/kernels/simd/intrinsics.hpp"
#include "tessera/kernels/simd/polynomials.hpp"

namespace tessera::kernels::simd {

struct VecAvx512 {
  using Mask = __mmask16;
  static constexpr int width = 16;
  static constexpr bool polynomial_math = true;  // exp, erf, ... from polynomials.hpp
  __m512 v;
  static Mask first_n(int n) {
    return n >= 16 ? static_cast<Mask>(0xFFFF) : n <= 0 ? static_cast<Mask>(0) : static_cast<Mask>((1u << n) - 1u);
  }
  static VecAvx512 zero() { return {_mm512_setzero_ps()}; }
  static VecAvx512 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static VecAvx512 load_partial(const float* p, int n, float fill) {
    return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_n(n), p)};
  }
  static VecAvx512 load_broadcast(const float* p) { return {_mm512_set1_ps(*p)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm512_mask_storeu_ps(p, first_n(n), v); }
  static VecAvx512 broadcast(float x) { return {_mm512_set1_ps(x)}; }
};

inline VecAvx512 operator+(VecAvx512 a, VecAvx512 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecAvx512 operator-(VecAvx512 a, VecAvx512 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VecAvx512 operator*(VecAvx512 a, VecAvx512 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VecAvx512 operator/(VecAvx512 a, VecAvx512 b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VecAvx512 operator-(VecAvx512 a) {
  return {_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MIN)))};
}
inline VecAvx512 fmadd(VecAvx512 a, VecAvx512 b, VecAvx512 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline VecAvx512 fnmadd(VecAvx512 a, VecAvx512 b, VecAvx512 c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
inline VecAvx512 fmsub(VecAvx512 a, VecAvx512 b, VecAvx512 c) { return {_mm512_fmsub_ps(a.v, b.v, c.v)}; }
inline VecAvx512 max(VecAvx512 a, VecAvx512 b) { return {_mm512_max_ps(b.v, a.v)}; }
inline VecAvx512 min(VecAvx512 a, VecAvx512 b) { return {_mm512_min_ps(b.v, a.v)}; }
inline VecAvx512 abs(VecAvx512 a) { return {_mm512_abs_ps(a.v)}; }
inline VecAvx512 sqrt(VecAvx512 a) { return {_mm512_sqrt_ps(a.v)}; }
inline VecAvx512 round_nearest(VecAvx512 a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline VecAvx512 trunc(VecAvx512 a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)}; }
inline __mmask16 lt(VecAvx512 a, VecAvx512 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
inline __mmask16 gt(VecAvx512 a, VecAvx512 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
inline VecAvx512 select(__mmask16 mask, VecAvx512 a, VecAvx512 b) { return {_mm512_mask_blend_ps(mask, b.v, a.v)}; }
inline VecAvx512 copy_sign(VecAvx512 magnitude, VecAvx512 sign) {
  const __m512i sign_bit = _mm512_set1_epi32(INT32_MIN);
  const __m512i m = _mm512_andnot_si512(sign_bit, _mm512_castps_si512(magnitude.v));
  return {_mm512_castsi512_ps(_mm512_or_si512(m, _mm512_and_si512(sign_bit, _mm512_castps_si512(sign.v))))};
}
inline VecAvx512 pow2(VecAvx512 n) {
  const __m512i biased = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(biased, 23))};
}
// x folded to one float by op: the 256-bit halves, then the 128-bit ones, then within 128 bits, which is the order
// VecAvx2 folds its two halves' sum in (so VecPair<VecAvx2> reduces bit for bit as VecAvx512 does).
template <class Op512, class Op128>
inline float fold(__m512 x, Op512 op512, Op128 op128) {
  x = op512(x, _mm512_shuffle_f32x4(x, x, 0x4E));
  x = op512(x, _mm512_shuffle_f32x4(x, x, 0xB1));
  __m128 y = _mm512_castps512_ps128(x);
  y = op128(y, _mm_movehl_ps(y, y));
  y = op128(y, _mm_movehdup_ps(y));
  return _mm_cvtss_f32(y);
}
inline float reduce_add(VecAvx512 a) {
  return fold(a.v, [](__m512 p, __m512 q) { return _mm512_add_ps(p, q); },
              [](__m128 p, __m128 q) { return _mm_add_ps(p, q); });
}
inline float reduce_max(VecAvx512 a) {
  return fold(a.v, [](__m512 p, __m512 q) { return _mm512_max_ps(p, q); },
              [](__m128 p, __m128 q) { return _mm_max_ps(p, q); });
}

// In-register transpose of a 16 x 16 block: on return r[k] holds what was column k. Pairs are interleaved and
// 64-bit halves shuffled within 128-bit lanes (as on AVX2), then 128-bit lanes are gathered in two rounds.
inline void transpose(VecAvx512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
  }
  // u[4 q + j], lane L: column 4 L + j of rows 4 q .. 4 q + 3.
  __m512 u[16];
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
    u[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
    u[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
    u[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    // Lanes 0 and 2 (0x88) or 1 and 3 (0xDD) of the first operand, then the same of the second.
    const __m512 even_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
    const __m512 odd_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 even_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    const __m512 odd_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j].v = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
    r[4 + j].v = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
    r[8 + j].v = _mm512_shuffle_f32x4(even_lo, even_hi, 0xDD);
    r[12 + j].v = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xDD);
  }
}

// x unchanged, opaque to the optimiser (see the VecAvx2 overload).
inline VecAvx512 no_contract(VecAvx512 x) {
  __asm__("" : "+v"(x.v));
  return x;
}

}  // namespace tessera::kernels::simd

#endif  // AVX-512
