// VecPair<H>: two vectors H acting as one of twice the width, lane i < H::width in lo and the rest in hi. With
// H = VecAvx2 it is a 16-lane vector on any AVX2 machine: the tests run the 16-lane logic of every kernel through it
// where no AVX-512 is at hand. Every operation works half by half, so results match H lane for lane; reduce_add
// and reduce_max fold hi onto lo first, the order VecAvx512 folds its halves in.
#pragma once

#include "tessera/kernels/simd/polynomials.hpp"

namespace tessera::kernels::simd {

template <class H>
struct VecPair {
  struct Mask {
    typename H::Mask lo, hi;
  };
  static constexpr int width = 2 * H::width;
  H lo, hi;
  static VecPair zero() { return {H::zero(), H::zero()}; }
  static VecPair load(const float* p) { return {H::load(p), H::load(p + H::width)}; }
  static VecPair load_partial(const float* p, int n, float fill) {
    return {H::load_partial(p, n, fill), H::load_partial(p + H::width, n - H::width, fill)};
  }
  static VecPair load_broadcast(const float* p) { return {H::load_broadcast(p), H::load_broadcast(p)}; }
  void store(float* p) const {
    lo.store(p);
    hi.store(p + H::width);
  }
  void store_partial(float* p, int n) const {
    lo.store_partial(p, n);
    hi.store_partial(p + H::width, n - H::width);
  }
  static VecPair broadcast(float x) { return {H::broadcast(x), H::broadcast(x)}; }
  static Mask first_n(int n) { return {H::first_n(n), H::first_n(n - H::width)}; }
};

template <class H>
VecPair<H> operator+(VecPair<H> a, VecPair<H> b) { return {a.lo + b.lo, a.hi + b.hi}; }
template <class H>
VecPair<H> operator-(VecPair<H> a, VecPair<H> b) { return {a.lo - b.lo, a.hi - b.hi}; }
template <class H>
VecPair<H> operator*(VecPair<H> a, VecPair<H> b) { return {a.lo * b.lo, a.hi * b.hi}; }
template <class H>
VecPair<H> operator/(VecPair<H> a, VecPair<H> b) { return {a.lo / b.lo, a.hi / b.hi}; }
template <class H>
VecPair<H> operator-(VecPair<H> a) { return {-a.lo, -a.hi}; }
template <class H>
VecPair<H> fmadd(VecPair<H> a, VecPair<H> b, VecPair<H> c) {
  return {fmadd(a.lo, b.lo, c.lo), fmadd(a.hi, b.hi, c.hi)};
}
template <class H>
VecPair<H> fnmadd(VecPair<H> a, VecPair<H> b, VecPair<H> c) {
  return {fnmadd(a.lo, b.lo, c.lo), fnmadd(a.hi, b.hi, c.hi)};
}
template <class H>
VecPair<H> fmsub(VecPair<H> a, VecPair<H> b, VecPair<H> c) {
  return {fmsub(a.lo, b.lo, c.lo), fmsub(a.hi, b.hi, c.hi)};
}
template <class H>
VecPair<H> max(VecPair<H> a, VecPair<H> b) { return {max(a.lo, b.lo), max(a.hi, b.hi)}; }
template <class H>
VecPair<H> min(VecPair<H> a, VecPair<H> b) { return {min(a.lo, b.lo), min(a.hi, b.hi)}; }
template <class H>
VecPair<H> abs(VecPair<H> a) { return {abs(a.lo), abs(a.hi)}; }
template <class H>
VecPair<H> sqrt(VecPair<H> a) { return {sqrt(a.lo), sqrt(a.hi)}; }
template <class H>
VecPair<H> round_nearest(VecPair<H> a) { return {round_nearest(a.lo), round_nearest(a.hi)}; }
template <class H>
VecPair<H> trunc(VecPair<H> a) { return {trunc(a.lo), trunc(a.hi)}; }
template <class H>
typename VecPair<H>::Mask lt(VecPair<H> a, VecPair<H> b) { return {lt(a.lo, b.lo), lt(a.hi, b.hi)}; }
template <class H>
typename VecPair<H>::Mask gt(VecPair<H> a, VecPair<H> b) { return {gt(a.lo, b.lo), gt(a.hi, b.hi)}; }
template <class H>
VecPair<H> select(typename VecPair<H>::Mask mask, VecPair<H> a, VecPair<H> b) {
  return {select(mask.lo, a.lo, b.lo), select(mask.hi, a.hi, b.hi)};
}
template <class H>
VecPair<H> copy_sign(VecPair<H> magnitude, VecPair<H> sign) {
  return {copy_sign(magnitude.lo, sign.lo), copy_sign(magnitude.hi, sign.hi)};
}
template <class H>
VecPair<H> pow2(VecPair<H> n) { return {pow2(n.lo), pow2(n.hi)}; }
template <class H>
float reduce_add(VecPair<H> a) { return reduce_add(a.lo + a.hi); }
template <class H>
float reduce_max(VecPair<H> a) { return reduce_max(max(a.lo, a.hi)); }
template <class H>
VecPair<H> no_contract(VecPair<H> x) { return {no_contract(x.lo), no_contract(x.hi)}; }
template <class H>
VecPair<H> exp(VecPair<H> x) { return {exp(x.lo), exp(x.hi)}; }
template <class H>
VecPair<H> exp_nonpositive(VecPair<H> x) { return {exp_nonpositive(x.lo), exp_nonpositive(x.hi)}; }
template <class H>
VecPair<H> erf(VecPair<H> x) { return {erf(x.lo), erf(x.hi)}; }
template <class H>
CdfPdf<VecPair<H>> normal_cdf_pdf(VecPair<H> x) {
  const CdfPdf<H> lo = normal_cdf_pdf(x.lo), hi = normal_cdf_pdf(x.hi);
  return {{lo.cdf, hi.cdf}, {lo.pdf, hi.pdf}};
}

// Transpose of a (2w) x (2w) block, w = H::width, from the transposes of its four w x w quarters.
template <class H>
void transpose(VecPair<H> (&r)[VecPair<H>::width]) {
  constexpr int w = H::width;
  H top_lo[w], top_hi[w], bottom_lo[w], bottom_hi[w];
  for (int i = 0; i < w; ++i) {
    top_lo[i] = r[i].lo, top_hi[i] = r[i].hi;
    bottom_lo[i] = r[w + i].lo, bottom_hi[i] = r[w + i].hi;
  }
  transpose(top_lo), transpose(top_hi), transpose(bottom_lo), transpose(bottom_hi);
  for (int j = 0; j < w; ++j) {
    r[j] = {top_lo[j], bottom_lo[j]};
    r[w + j] = {top_hi[j], bottom_hi[j]};
  }
}

}  // namespace tessera::kernels::simd
