// Reference 2D convolution (NCHW, OIHW weight, zero padding, dilation 1): plain loops, templated on T (test oracle
// and the double path). Legend: B images, C input channels, H x W input, O output channels, kh x kw kernel,
// Ho x Wo output (see Conv2dSizes).
#pragma once

#include <cstdint>

#include "tessera/kernels/conv2d_sizes.hpp"

namespace tessera::kernels::reference {

// Calls tap(w, i) for each kernel tap of output pixel (b, o, y, x) whose input pixel lies inside the image, in the
// order (c, ky, kx): w indexes weight[o, c, ky, kx], i indexes inp[b, c, iy, ix] with iy = y sh - ph + ky and
// ix = x sw - pw + kx.
template <class Tap>
void for_each_tap_inside(const Conv2dSizes& s, int b, int o, int y, int x, const Tap& tap) {
  for (int c = 0; c < s.C; ++c)
    for (int ky = 0; ky < s.kh; ++ky) {
      const int iy = y * s.stride_h - s.pad_h + ky;
      if (iy < 0 || iy >= s.H) continue;
      for (int kx = 0; kx < s.kw; ++kx) {
        const int ix = x * s.stride_w - s.pad_w + kx;
        if (ix < 0 || ix >= s.W) continue;
        tap(((int64_t{o} * s.C + c) * s.kh + ky) * s.kw + kx, ((int64_t{b} * s.C + c) * s.H + iy) * s.W + ix);
      }
    }
}

// out[b, o, y, x] = bias[o] + sum over c, ky, kx of weight[o, c, ky, kx] inp[b, c, y sh - ph + ky, x sw - pw + kx],
// input pixels outside the image being zero.
// inp is (B, C, H, W), weight is (O, C, kh, kw), bias is (O) or null, out is (B, O, Ho, Wo).
template <class T>
void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dSizes& s) {
  const int Ho = s.Ho(), Wo = s.Wo();
  for (int b = 0; b < s.B; ++b)
    for (int o = 0; o < s.O; ++o)
      for (int y = 0; y < Ho; ++y)
        for (int x = 0; x < Wo; ++x) {
          T sum = bias ? bias[o] : T(0);
          for_each_tap_inside(s, b, o, y, x, [&](int64_t w, int64_t i) { sum += weight[w] * inp[i]; });
          out[((int64_t{b} * s.O + o) * Ho + y) * Wo + x] = sum;
        }
}

// With g = dout[b, o, y, x] and the input pixel (iy, ix) = (y sh - ph + ky, x sw - pw + kx) inside the image:
//   dinp[b, c, iy, ix] += weight[o, c, ky, kx] g,  dweight[o, c, ky, kx] += inp[b, c, iy, ix] g,  dbias[o] += g.
// dinp is (B, C, H, W), dweight (O, C, kh, kw), dbias (O), each null when not wanted; dout is (B, O, Ho, Wo);
// inp and weight as in the forward.
template <class T>
void conv2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     const Conv2dSizes& s) {
  const int Ho = s.Ho(), Wo = s.Wo();
  for (int b = 0; b < s.B; ++b)
    for (int o = 0; o < s.O; ++o)
      for (int y = 0; y < Ho; ++y)
        for (int x = 0; x < Wo; ++x) {
          const T g = dout[((int64_t{b} * s.O + o) * Ho + y) * Wo + x];
          if (dbias) dbias[o] += g;
          for_each_tap_inside(s, b, o, y, x, [&](int64_t w, int64_t i) {
            if (dinp) dinp[i] += weight[w] * g;
            if (dweight) dweight[w] += inp[i] * g;
          });
        }
}

}  // namespace tessera::kernels::reference
