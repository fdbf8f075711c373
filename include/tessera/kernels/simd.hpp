// SIMD building blocks of the row kernels: one float-vector interface over AVX-512, AVX2+FMA and plain scalars,
// row loops in whole vectors with overlapping tails, and exp / erf / normal CDF approximations written once on it.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#if (defined(__AVX2__) && defined(__FMA__)) || defined(__AVX512F__)
// GCC 12's AVX-512 intrinsics seed results with _mm512_undefined_*, which -W(maybe-)uninitialized reports at
// every inlining site (GCC bug 105593); the pragma covers the header's own lines.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace tessera::kernels::simd {

// Below this many elements a kernel stays on the calling thread: starting a parallel region costs more.
inline constexpr int64_t kParallelMinElements = 1 << 15;

// Threads take rows in dynamically scheduled tasks of about this many elements, so that a thread slowed by another
// process on its core does not hold up the rest. Each row's result is independent of which thread computes it.
inline constexpr int64_t kTaskElements = 1 << 13;

inline int rows_per_task(int64_t cols) { return static_cast<int>(std::max<int64_t>(1, kTaskElements / cols)); }

// Every vector type below has the same interface:
//   members  load(p), load_partial(p, n, fill) (lanes >= n read as fill, memory there is not touched),
//            store(p), store_partial(p, n) (only lanes < n are written), broadcast(x), first_n(n) (mask of
//            lanes < n), width, Mask;
//   free     + - * / and unary -, fmadd(a,b,c) = a*b+c, fnmadd(a,b,c) = c-a*b, fmsub(a,b,c) = a*b-c,
//            max/min (both return a when either operand is NaN, so NaN in a propagates), abs, sqrt,
//            round_nearest, trunc, lt, gt (masks), select(mask, a, b), copy_sign(magnitude, sign),
//            pow2(n) = 2^n for integral n in [-126, 127], reduce_add, reduce_max, exp, exp_nonpositive, erf,
//            normal_cdf_pdf.
// fmadd and friends round once on the SIMD types; on VecScalar they are a*b+c as the compiler contracts it.

// One lane: the portable fallback. exp, erf and the normal CDF come from <cmath>.
struct VecScalar {
  using Mask = bool;
  static constexpr int width = 1;
  float v;
  static VecScalar load(const float* p) { return {*p}; }
  static VecScalar load_partial(const float* p, int n, float fill) { return {n > 0 ? *p : fill}; }
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

#if defined(__AVX2__) && defined(__FMA__)

// Eight lanes in a ymm register. A mask is a vector whose lanes are all-ones or all-zeros.
struct VecAvx2 {
  using Mask = __m256;
  static constexpr int width = 8;
  __m256 v;
  static Mask first_n(int n) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static VecAvx2 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static VecAvx2 load_partial(const float* p, int n, float fill) {
    const Mask m = first_n(n);
    return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, _mm256_castps_si256(m)), m)};
  }
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

#endif  // AVX2 + FMA

#if defined(__AVX512F__)

// Sixteen lanes in a zmm register; masks are k registers.
struct VecAvx512 {
  using Mask = __mmask16;
  static constexpr int width = 16;
  __m512 v;
  static Mask first_n(int n) {
    return n >= 16 ? static_cast<Mask>(0xFFFF) : n <= 0 ? static_cast<Mask>(0) : static_cast<Mask>((1u << n) - 1u);
  }
  static VecAvx512 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static VecAvx512 load_partial(const float* p, int n, float fill) {
    return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_n(n), p)};
  }
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
// Halves folded with in-register shuffles (GCC 12's _mm512_reduce_*_ps trips -Wmaybe-uninitialized).
inline float reduce_add(VecAvx512 a) {
  __m512 x = _mm512_add_ps(a.v, _mm512_shuffle_f32x4(a.v, a.v, 0x4E));
  x = _mm512_add_ps(x, _mm512_shuffle_f32x4(x, x, 0xB1));
  __m128 y = _mm512_castps512_ps128(x);
  y = _mm_add_ps(y, _mm_movehl_ps(y, y));
  y = _mm_add_ss(y, _mm_movehdup_ps(y));
  return _mm_cvtss_f32(y);
}
inline float reduce_max(VecAvx512 a) {
  __m512 x = _mm512_max_ps(a.v, _mm512_shuffle_f32x4(a.v, a.v, 0x4E));
  x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, 0xB1));
  __m128 y = _mm512_castps512_ps128(x);
  y = _mm_max_ps(y, _mm_movehl_ps(y, y));
  y = _mm_max_ss(y, _mm_movehdup_ps(y));
  return _mm_cvtss_f32(y);
}

#endif  // AVX-512

// Returns x unchanged, but opaque to the optimiser: a product passed through it cannot be fused with a later
// addition (GCC contracts _mm256_mul_ps + _mm256_add_ps into an FMA under its default -ffp-contract=fast).
// Kernels that promise a given rounding sequence use it; the scalar fallback leaves contraction to the compiler.
inline VecScalar no_contract(VecScalar x) { return x; }
#if defined(__AVX2__) && defined(__FMA__)
inline VecAvx2 no_contract(VecAvx2 x) {
  __asm__("" : "+x"(x.v));
  return x;
}
#endif
#if defined(__AVX512F__)
inline VecAvx512 no_contract(VecAvx512 x) {
  __asm__("" : "+v"(x.v));
  return x;
}
#endif

// The widest vector this translation unit was compiled for; kernels take it as their default.
#if defined(__AVX512F__)
using VecNative = VecAvx512;
#elif defined(__AVX2__) && defined(__FMA__)
using VecNative = VecAvx2;
#else
using VecNative = VecScalar;
#endif

// One vector's worth of a row of n floats. Rows are walked in whole vectors; the last, partial vector is an
// overlapping one ending at n whose first `skip` lanes belong to the previous vector (plain loads and stores:
// masked moves are slow on AVX2 machines). Only a row shorter than one vector uses masked moves (count < width).
struct Chunk {
  int64_t offset;  // index of the vector's first lane
  int count;       // lanes inside the row: the vector width, or n for a row shorter than one vector
  int skip;        // leading lanes already handled by the previous vector
};

// Calls body(Chunk) over a row of n floats, in order.
template <class V, class Body>
inline void for_each_chunk(int64_t n, Body&& body) {
  if (n < V::width) {
    if (n > 0) body(Chunk{0, static_cast<int>(n), 0});
    return;
  }
  int64_t c = 0;
  for (; c + V::width <= n; c += V::width) body(Chunk{c, V::width, 0});
  if (c < n) body(Chunk{n - V::width, V::width, static_cast<int>(V::width - (n - c))});
}

// acc = combine(acc, f(chunk)) over a row of n floats with four interleaved accumulators, which hides the
// latency of the combining adds; the association order depends on n only.
template <class V, class Acc, class F, class Combine>
inline Acc reduce_chunks(int64_t n, Acc init, F&& f, Combine&& combine) {
  if (n < V::width) return n > 0 ? combine(init, f(Chunk{0, static_cast<int>(n), 0})) : init;
  Acc a0 = init, a1 = init, a2 = init, a3 = init;
  int64_t c = 0;
  for (; c + 4 * V::width <= n; c += 4 * V::width) {
    a0 = combine(a0, f(Chunk{c, V::width, 0}));
    a1 = combine(a1, f(Chunk{c + V::width, V::width, 0}));
    a2 = combine(a2, f(Chunk{c + 2 * V::width, V::width, 0}));
    a3 = combine(a3, f(Chunk{c + 3 * V::width, V::width, 0}));
  }
  for (; c + V::width <= n; c += V::width) a0 = combine(a0, f(Chunk{c, V::width, 0}));
  if (c < n) a1 = combine(a1, f(Chunk{n - V::width, V::width, static_cast<int>(V::width - (n - c))}));
  return combine(combine(a0, a1), combine(a2, a3));
}

// The chunk's lanes of row p; lanes outside the chunk (skipped or past the row) read as fill.
template <class V>
inline V load_chunk(const float* p, const Chunk& ch, float fill = 0.0f) {
  if (ch.count < V::width) return V::load_partial(p + ch.offset, ch.count, fill);
  const V x = V::load(p + ch.offset);
  return ch.skip == 0 ? x : select(V::first_n(ch.skip), V::broadcast(fill), x);
}

// Writes the chunk's lanes of x into row p; skipped lanes are rewritten with the value they already hold.
template <class V>
inline void store_chunk(float* p, const Chunk& ch, V x) {
  if (ch.count < V::width) {
    x.store_partial(p + ch.offset, ch.count);
    return;
  }
  if (ch.skip != 0) x = select(V::first_n(ch.skip), V::load(p + ch.offset), x);
  x.store(p + ch.offset);
}

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Elements per parallel block of the flat elementwise kernels (a multiple of every vector width).
inline constexpr int64_t kFlatBlock = 8192;

// Calls body(begin, count) over [0, n) in blocks of kFlatBlock, blocks handed out to OpenMP threads dynamically.
template <class Body>
inline void parallel_flat_blocks(int64_t n, Body&& body) {
  const int64_t blocks = (n + kFlatBlock - 1) / kFlatBlock;
#pragma omp parallel for schedule(dynamic) if (n >= kParallelMinElements)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kFlatBlock;
    body(begin, std::min(kFlatBlock, n - begin));
  }
}

namespace detail {

// The polynomial coefficients below are least-squares fits on Chebyshev nodes, reweighted (Lawson) towards the
// least maximum relative error, against mpmath at 40 digits.

// e^r for |r| <= ln2/2 as 1 + r + r^2 P(r), P of degree 4 (max relative error 3.1e-9).
template <class V>
inline V exp_reduced_poly(V r) {
  V p = V::broadcast(1.381461309e-03f);
  p = fmadd(p, r, V::broadcast(8.368709832e-03f));
  p = fmadd(p, r, V::broadcast(4.166838736e-02f));
  p = fmadd(p, r, V::broadcast(1.666652069e-01f));
  p = fmadd(p, r, V::broadcast(4.999999345e-01f));
  return fmadd(p, r * r, r) + V::broadcast(1.0f);
}

inline constexpr float kLnFltMin = -87.33654475f;
inline constexpr float kLnFltMax = 88.72283905f;

// e^x. x = n ln2 + r with n = round(x / ln2), ln2 split in two so that n ln2_hi is exact; 2^n is applied in two
// halves so that n = 128 (x near ln FLT_MAX) stays representable. Results below FLT_MIN are flushed to 0,
// x > ln FLT_MAX gives +inf, NaN propagates.
template <class V>
inline V exp_poly(V x) {
  const V lowest = V::broadcast(kLnFltMin), highest = V::broadcast(kLnFltMax);
  const V xc = min(max(x, lowest), highest);
  const V n = round_nearest(xc * V::broadcast(1.44269504089f));
  V r = fnmadd(n, V::broadcast(0.693359375f), xc);
  r = fnmadd(n, V::broadcast(-2.12194440e-4f), r);
  const V n_half = trunc(n * V::broadcast(0.5f));
  V result = exp_reduced_poly(r) * pow2(n_half) * pow2(n - n_half);
  result = select(lt(x, lowest), V::broadcast(0.0f), result);
  return select(gt(x, highest), V::broadcast(std::numeric_limits<float>::infinity()), result);
}

// e^{x - lo} for x <= 0 and |lo| tiny (the low part of a split argument, or 0): as exp_poly, but n lies in
// [-126, 0], so one 2^n suffices and nothing overflows. Below ln FLT_MIN the result is 0; NaN propagates.
template <class V>
inline V exp_nonpositive_poly(V x, V lo) {
  const V lowest = V::broadcast(kLnFltMin);
  const V xc = max(x, lowest);
  const V n = round_nearest(xc * V::broadcast(1.44269504089f));
  V r = fnmadd(n, V::broadcast(0.693359375f), xc);
  r = fnmadd(n, V::broadcast(-2.12194440e-4f), r) - lo;
  return select(lt(x, lowest), V::broadcast(0.0f), exp_reduced_poly(r) * pow2(n));
}

// e^{-(hi + lo)} for hi >= 0 and |lo| <= ulp(hi) / 2, where hi + lo is a square split exactly by fmsub.
template <class V>
inline V exp_neg_split(V hi, V lo) {
  return exp_nonpositive_poly(-hi, lo);
}

// Below kErfSplit erf is a polynomial, above it erf = 1 - erfc with erfc(a) = e^{-a^2} Q(a).
inline constexpr float kErfSplit = 0.875f;

// erf(a) for 0 <= a <= kErfSplit: a P(a^2), P of degree 5 (max relative error 8.5e-9).
template <class V>
inline V erf_small_poly(V a) {
  const V y = a * a;
  V p = V::broadcast(-6.203254849e-04f);
  p = fmadd(p, y, V::broadcast(5.032181272e-03f));
  p = fmadd(p, y, V::broadcast(-2.679146301e-02f));
  p = fmadd(p, y, V::broadcast(1.128245533e-01f));
  p = fmadd(p, y, V::broadcast(-3.761255046e-01f));
  p = fmadd(p, y, V::broadcast(1.128379157e+00f));
  return a * p;
}

// Q(a) / 2 = erfc(a) e^{a^2} / 2 for 0 <= a <= 9.35 as a degree-9 polynomial in s = 1 / (1 + a/2) (max relative
// error 3.0e-8; evaluated in float about 2.7e-7 with the rounding of s). Beyond 9.35 erfc(a) is below FLT_MIN.
template <class V>
inline V half_erfc_scaled_poly(V s) {
  V q = V::broadcast(-2.690920926e-02f);
  q = fmadd(q, s, V::broadcast(1.287227200e-01f));
  q = fmadd(q, s, V::broadcast(-2.134493536e-01f));
  q = fmadd(q, s, V::broadcast(1.013108068e-01f));
  q = fmadd(q, s, V::broadcast(1.587087785e-02f));
  q = fmadd(q, s, V::broadcast(8.691284700e-02f));
  q = fmadd(q, s, V::broadcast(1.260983176e-01f));
  q = fmadd(q, s, V::broadcast(1.403100210e-01f));
  q = fmadd(q, s, V::broadcast(1.411372099e-01f));
  return fmadd(q, s, V::broadcast(-4.252190933e-06f));
}

template <class V>
inline V erf_poly(V x) {
  const V one = V::broadcast(1.0f);
  const V a = abs(x);
  const V small = erf_small_poly(a);
  const V ac = min(a, V::broadcast(10.0f));
  const V a2 = ac * ac;
  const V s = one / fmadd(ac, V::broadcast(0.5f), one);
  const V e = exp_neg_split(a2, fmsub(ac, ac, a2));
  const V big = fnmadd(e + e, half_erfc_scaled_poly(s), one);
  return copy_sign(select(lt(a, V::broadcast(kErfSplit)), small, big), x);
}

}  // namespace detail

template <class V>
struct CdfPdf {
  V cdf;  // Phi(x) = (1 + erf(x / sqrt 2)) / 2
  V pdf;  // phi(x) = e^{-x^2/2} / sqrt(2 pi)
};

inline VecScalar exp(VecScalar x) { return {std::exp(x.v)}; }
inline VecScalar erf(VecScalar x) { return {std::erf(x.v)}; }
// In double, so that rounding x / sqrt 2 and x^2 does not cost the tails their relative accuracy.
inline CdfPdf<VecScalar> normal_cdf_pdf(VecScalar x) {
  const double xd = x.v;
  return {{static_cast<float>(0.5 * std::erfc(-xd * 0.70710678118654752))},
          {static_cast<float>(std::exp(-0.5 * xd * xd) * 0.39894228040143268)}};
}

namespace detail {

// Phi and phi from one exponential and one polynomial, no branch: with a = |x| / sqrt 2 and x^2/2 split exactly,
// e = e^{-x^2/2} and erfc(a) = e Q(a), so Phi(x < 0) = erfc(a) / 2 (no cancellation in the lower tail) and
// Phi(x >= 0) = 1 - erfc(a) / 2.
template <class V>
inline CdfPdf<V> normal_cdf_pdf_poly(V x) {
  const V half = V::broadcast(0.5f), one = V::broadcast(1.0f);
  const V xa = min(abs(x), V::broadcast(14.0f));
  const V square = xa * xa;
  const V e = exp_neg_split(square * half, fmsub(xa, xa, square) * half);
  const V s = one / fmadd(xa, V::broadcast(0.35355339059327373f), one);  // 1 / (1 + a/2)
  const V half_erfc = e * half_erfc_scaled_poly(s);
  return {select(lt(x, V::broadcast(0.0f)), half_erfc, one - half_erfc), e * V::broadcast(0.39894228040143268f)};
}

}  // namespace detail

// e^x for x <= 0 (softmax's shifted logits): cheaper than exp, same accuracy.
inline VecScalar exp_nonpositive(VecScalar x) { return {std::exp(x.v)}; }

#if defined(__AVX2__) && defined(__FMA__)
inline VecAvx2 exp(VecAvx2 x) { return detail::exp_poly(x); }
inline VecAvx2 exp_nonpositive(VecAvx2 x) { return detail::exp_nonpositive_poly(x, VecAvx2::broadcast(0.0f)); }
inline VecAvx2 erf(VecAvx2 x) { return detail::erf_poly(x); }
inline CdfPdf<VecAvx2> normal_cdf_pdf(VecAvx2 x) { return detail::normal_cdf_pdf_poly(x); }
#endif

#if defined(__AVX512F__)
inline VecAvx512 exp(VecAvx512 x) { return detail::exp_poly(x); }
inline VecAvx512 exp_nonpositive(VecAvx512 x) { return detail::exp_nonpositive_poly(x, VecAvx512::broadcast(0.0f)); }
inline VecAvx512 erf(VecAvx512 x) { return detail::erf_poly(x); }
inline CdfPdf<VecAvx512> normal_cdf_pdf(VecAvx512 x) { return detail::normal_cdf_pdf_poly(x); }
#endif

// Row helpers on cols contiguous floats; the exp helpers take e^{x - m} with m >= every x (the row maximum).

template <class V>
inline V add(V a, V b) {
  return a + b;
}

template <class V>
inline float row_max(const float* x, int64_t cols) {
  return reduce_max(reduce_chunks<V>(
      cols, V::broadcast(kNegInf), [&](const Chunk& ch) { return load_chunk<V>(x, ch, kNegInf); },
      [](V a, V b) { return max(a, b); }));
}

template <class V>
inline float row_sum(const float* x, int64_t cols) {
  return reduce_add(reduce_chunks<V>(
      cols, V::broadcast(0.0f), [&](const Chunk& ch) { return load_chunk<V>(x, ch); }, add<V>));
}

template <class V>
inline float row_dot(const float* a, const float* b, int64_t cols) {
  return reduce_add(reduce_chunks<V>(
      cols, V::broadcast(0.0f), [&](const Chunk& ch) { return load_chunk<V>(a, ch) * load_chunk<V>(b, ch); }, add<V>));
}

// out = e^{x - m}; returns the sum of out.
template <class V>
inline float row_exp_store(float* out, const float* x, float m, int64_t cols) {
  const V vm = V::broadcast(m);
  return reduce_add(reduce_chunks<V>(
      cols, V::broadcast(0.0f),
      [&](const Chunk& ch) {
        const V e = exp_nonpositive(load_chunk<V>(x, ch, kNegInf) - vm);
        store_chunk(out, ch, e);
        return e;
      },
      add<V>));
}

// The sum of e^{x - m}.
template <class V>
inline float row_exp_sum(const float* x, float m, int64_t cols) {
  const V vm = V::broadcast(m);
  return reduce_add(reduce_chunks<V>(
      cols, V::broadcast(0.0f), [&](const Chunk& ch) { return exp_nonpositive(load_chunk<V>(x, ch, kNegInf) - vm); },
      add<V>));
}

// out = x * s (out may be x).
template <class V>
inline void row_scale(float* out, const float* x, float s, int64_t cols) {
  const V vs = V::broadcast(s);
  for_each_chunk<V>(cols, [&](const Chunk& ch) { store_chunk(out, ch, load_chunk<V>(x, ch) * vs); });
}

}  // namespace tessera::kernels::simd
