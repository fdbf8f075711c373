// Patchify: cut images into non-overlapping p x p patches laid out as GEMM rows (a stride-p Conv2d as a GEMM), and
// its backward. Layout: image is (B, C, H, W); patches is (B * Hp * Wp, C * p * p) with Hp = H / p, Wp = W / p.
#pragma once

#include <cassert>
#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

// patches[(b Hp + i) Wp + j, (ch p + ky) p + kx] = image[b, ch, i p + ky, j p + kx].
// The column order is that of a PyTorch Conv2d weight (OC, C, p, p) flattened to (OC, C p p), so
// patches @ weight^T + bias is the convolution, row (b, i, j) being output pixel (i, j) of image b.
// image is (B, C, H, W) with H and W multiples of p; patches is (B * Hp * Wp, C * p * p).
inline void patchify_forward(float* patches, const float* image, int B, int C, int H, int W, int p) {
  assert(B >= 0 && C >= 1 && p >= 1 && H % p == 0 && W % p == 0);
  const int Hp = H / p, Wp = W / p;
  const int64_t row_len = int64_t{C} * p * p;
#pragma omp parallel for schedule(static) if (int64_t{B} * C * H * W >= simd::kParallelMinElements)
  for (int bi = 0; bi < B * Hp; ++bi) {
    const int b = bi / Hp, i = bi % Hp;
    float* row_block = patches + int64_t{bi} * Wp * row_len;  // the Wp rows of patch row i of image b
    for (int ch = 0; ch < C; ++ch) {
      for (int ky = 0; ky < p; ++ky) {
        const float* src = image + ((int64_t{b} * C + ch) * H + int64_t{i} * p + ky) * W;
        float* dst = row_block + (int64_t{ch} * p + ky) * p;
        for (int j = 0; j < Wp; ++j)
          for (int kx = 0; kx < p; ++kx) dst[j * row_len + kx] = src[j * p + kx];
      }
    }
  }
}

// dimage[b, ch, i p + ky, j p + kx] += dpatches[(b Hp + i) Wp + j, (ch p + ky) p + kx]; patches do not overlap,
// so every image element receives exactly one term and threads write disjoint rows of the image.
// dimage is (B, C, H, W); dpatches is (B * Hp * Wp, C * p * p).
inline void patchify_backward(float* dimage, const float* dpatches, int B, int C, int H, int W, int p) {
  assert(B >= 0 && C >= 1 && p >= 1 && H % p == 0 && W % p == 0);
  const int Hp = H / p, Wp = W / p;
  const int64_t row_len = int64_t{C} * p * p;
#pragma omp parallel for schedule(static) if (int64_t{B} * C * H * W >= simd::kParallelMinElements)
  for (int bi = 0; bi < B * Hp; ++bi) {
    const int b = bi / Hp, i = bi % Hp;
    const float* row_block = dpatches + int64_t{bi} * Wp * row_len;
    for (int ch = 0; ch < C; ++ch) {
      for (int ky = 0; ky < p; ++ky) {
        float* dst = dimage + ((int64_t{b} * C + ch) * H + int64_t{i} * p + ky) * W;
        const float* src = row_block + (int64_t{ch} * p + ky) * p;
        for (int j = 0; j < Wp; ++j)
          for (int kx = 0; kx < p; ++kx) dst[j * p + kx] += src[j * row_len + kx];
      }
    }
  }
}

}  // namespace tessera::kernels
