// GELU with the exact erf form (PyTorch's default), forward and backward over flat buffers, SIMD and OpenMP.
// Layout: inp, out, dout, dinp are contiguous buffers of n floats; element i depends on element i only.
#pragma once

#include <cassert>
#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

// out = gelu(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, Phi the standard normal CDF.
// inp, out are (n); out may alias inp.
template <class V = simd::VecNative>
inline void gelu_forward(float* out, const float* inp, int64_t n) {
  assert(n >= 0);
  simd::parallel_flat_blocks(n, [=](int64_t begin, int64_t count) {
    const float* x_block = inp + begin;
    float* y_block = out + begin;
    simd::for_each_chunk<V>(count, [=](const simd::Chunk& ch) {
      const V x = simd::load_chunk<V>(x_block, ch);
      simd::store_chunk(y_block, ch, x * normal_cdf_pdf(x).cdf);
    });
  });
}

// dinp += dout * gelu'(x), gelu'(x) = Phi(x) + x phi(x), phi(x) = e^{-x^2/2} / sqrt(2 pi).
// dinp, dout, inp (the forward input) are (n).
template <class V = simd::VecNative>
inline void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  assert(n >= 0);
  simd::parallel_flat_blocks(n, [=](int64_t begin, int64_t count) {
    const float* x_block = inp + begin;
    const float* g_block = dout + begin;
    float* dx_block = dinp + begin;
    simd::for_each_chunk<V>(count, [=](const simd::Chunk& ch) {
      const V x = simd::load_chunk<V>(x_block, ch);
      const simd::CdfPdf<V> p = normal_cdf_pdf(x);
      const V grad = fmadd(x, p.pdf, p.cdf);
      simd::store_chunk(dx_block, ch, fmadd(simd::load_chunk<V>(g_block, ch), grad, simd::load_chunk<V>(dx_block, ch)));
    });
  });
}

}  // namespace tessera::kernels
