// Patchify: cut images into non-overlapping p x p patches laid out as GEMM rows (a stride-p Conv2d as a GEMM), and
// its backward. Layout: image is (B, C, H, W); patches is (B * Hp * Wp, C * p * p) with Hp = H / p, Wp = W / p.
#pragma once

#include <cassert>
#include <cstdint>
#include <cstring>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

namespace patchify_detail {

// y[0, n) = x[0, n), or += with accumulate. N > 0 fixes n = N at compile time: the run then moves through a
// local array (one vector load, add and store); N == 0 loops over a run-time n.
template <int N, bool accumulate>
inline void move_run(float* y, const float* x, int n) {
  if constexpr (N > 0) {
    float run[N];
    std::memcpy(run, x, sizeof(run));
    if constexpr (accumulate) {
      float old[N];
      std::memcpy(old, y, sizeof(old));
      for (int k = 0; k < N; ++k) run[k] += old[k];
    }
    std::memcpy(y, run, sizeof(run));
  } else {
    for (int k = 0; k < n; ++k) y[k] = accumulate ? y[k] + x[k] : x[k];
  }
}

// The Wp patches of patch row i of image b, written (forward) or scattered back (backward) in patch order.
// P > 0 fixes the patch size at compile time (p == P), so each p-float run becomes one vector move.
template <int P, bool backward, class PatchFloat, class ImageFloat>
inline void patch_row(PatchFloat* patches, ImageFloat* image, int b, int i, int C, int H, int W, int p) {
  const int pp = P > 0 ? P : p;
  const int Hp = H / pp, Wp = W / pp;
  PatchFloat* run = patches + (int64_t{b} * Hp + i) * Wp * (int64_t{C} * pp * pp);
  for (int j = 0; j < Wp; ++j) {
    for (int ch = 0; ch < C; ++ch) {
      for (int ky = 0; ky < pp; ++ky) {
        ImageFloat* pixels = image + ((int64_t{b} * C + ch) * H + int64_t{i} * pp + ky) * W + int64_t{j} * pp;
        if constexpr (backward)
          move_run<P, true>(pixels, run, pp);
        else
          move_run<P, false>(run, pixels, pp);
        run += pp;
      }
    }
  }
}

template <bool backward, class PatchFloat, class ImageFloat>
inline void patch_rows(PatchFloat* patches, ImageFloat* image, int B, int C, int H, int W, int p) {
  const int Hp = H / p;
#pragma omp parallel for schedule(dynamic, 4) if (int64_t{B} * C * H * W >= simd::kParallelMinElements)
  for (int bi = 0; bi < B * Hp; ++bi) {
    const int b = bi / Hp, i = bi % Hp;
    switch (p) {
      case 2:
        patch_row<2, backward>(patches, image, b, i, C, H, W, p);
        break;
      case 4:
        patch_row<4, backward>(patches, image, b, i, C, H, W, p);
        break;
      case 8:
        patch_row<8, backward>(patches, image, b, i, C, H, W, p);
        break;
      case 16:
        patch_row<16, backward>(patches, image, b, i, C, H, W, p);
        break;
      default:
        patch_row<0, backward>(patches, image, b, i, C, H, W, p);
    }
  }
}

}  // namespace patchify_detail

// patches[(b Hp + i) Wp + j, (ch p + ky) p + kx] = image[b, ch, i p + ky, j p + kx].
// The column order is that of a PyTorch Conv2d weight (OC, C, p, p) flattened to (OC, C p p), so
// patches @ weight^T + bias is the convolution, row (b, i, j) being output pixel (i, j) of image b.
// image is (B, C, H, W) with H and W multiples of p; patches is (B * Hp * Wp, C * p * p).
inline void patchify_forward(float* patches, const float* image, int B, int C, int H, int W, int p) {
  assert(B >= 0 && C >= 1 && p >= 1 && H % p == 0 && W % p == 0);
  patchify_detail::patch_rows<false>(patches, image, B, C, H, W, p);
}

// dimage[b, ch, i p + ky, j p + kx] += dpatches[(b Hp + i) Wp + j, (ch p + ky) p + kx]; patches do not overlap,
// so every image element receives exactly one term and threads write disjoint rows of the image.
// dimage is (B, C, H, W); dpatches is (B * Hp * Wp, C * p * p).
inline void patchify_backward(float* dimage, const float* dpatches, int B, int C, int H, int W, int p) {
  assert(B >= 0 && C >= 1 && p >= 1 && H % p == 0 && W % p == 0);
  patchify_detail::patch_rows<true>(dpatches, dimage, B, C, H, W, p);
}

}  // namespace tessera::kernels
