// The approximations every SIMD vector type shares, written once as templates over the vector type V: e^x, e^x for
// x <= 0, erf and the normal CDF/PDF.
#pragma once

#include <limits>

namespace tessera::kernels::simd {

template <class V>
struct CdfPdf {
  V cdf;  // Phi(x) = (1 + erf(x / sqrt 2)) / 2
  V pdf;  // phi(x) = e^{-x^2/2} / sqrt(2 pi)
};

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

// The smallest float whose e^x is a normal float (ln FLT_MIN = -87.3365447...): arguments are clamped to it, so no
// product inside exp goes denormal (each such product costs a microcode assist on x86, and the masked lanes of
// every tail and far-negative softmax arguments would pay it); below it the result is 0.
inline constexpr float kLnFltMin = -87.33654022f;
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
// [-127, 0], so one 2^n suffices and nothing overflows. Arguments are clamped at -88, where n = -127 and the 2^n
// built from the exponent bits is exactly 0: below about -87.68 the result is 0 without a compare and select (the
// masked lanes of every softmax tail land there), and no product goes denormal; between that and ln FLT_MIN the
// result is e^x, a denormal. NaN propagates.
template <class V>
inline V exp_nonpositive_poly(V x, V lo) {
  const V xc = max(x, V::broadcast(-88.0f));
  const V n = round_nearest(xc * V::broadcast(1.44269504089f));
  V r = fnmadd(n, V::broadcast(0.693359375f), xc);
  r = fnmadd(n, V::broadcast(-2.12194440e-4f), r) - lo;
  return exp_reduced_poly(r) * pow2(n);
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

// A vector type with `static constexpr bool polynomial_math = true` gets exp, exp_nonpositive, erf and
// normal_cdf_pdf from the approximations above (found by argument-dependent lookup, like its other operations).
template <class V>
concept PolynomialMath = V::polynomial_math;

template <PolynomialMath V>
inline V exp(V x) {
  return detail::exp_poly(x);
}
// e^x for x <= 0 (softmax's shifted logits): cheaper than exp, same accuracy.
template <PolynomialMath V>
inline V exp_nonpositive(V x) {
  return detail::exp_nonpositive_poly(x, V::zero());
}
template <PolynomialMath V>
inline V erf(V x) {
  return detail::erf_poly(x);
}
template <PolynomialMath V>
inline CdfPdf<V> normal_cdf_pdf(V x) {
  return detail::normal_cdf_pdf_poly(x);
}

}  // namespace tessera::kernels::simd
