// Reference patchify (non-overlapping p x p patches as GEMM rows) and its backward: plain loops, templated on T.
// Layout: image is (B, C, H, W); patches is (B * Hp * Wp, C * p * p) with Hp = H / p, Wp = W / p.
#pragma once

#include <cstdint>

namespace tessera::kernels::reference {

// Calls visit(patch_index, pixel_index) for every element, in the order (b, i, j, ch, ky, kx): patches[patch_index]
// is image[pixel_index], with patch_index = ((b Hp + i) Wp + j) C p p + (ch p + ky) p + kx and
// pixel_index = ((b C + ch) H + i p + ky) W + j p + kx.
template <class Visit>
void for_each_patch_element(int B, int C, int H, int W, int p, const Visit& visit) {
  const int Hp = H / p, Wp = W / p;
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < Hp; ++i)
      for (int j = 0; j < Wp; ++j)
        for (int ch = 0; ch < C; ++ch)
          for (int ky = 0; ky < p; ++ky)
            for (int kx = 0; kx < p; ++kx) {
              const int64_t row = (static_cast<int64_t>(b) * Hp + i) * Wp + j;
              const int64_t col = (static_cast<int64_t>(ch) * p + ky) * p + kx;
              const int64_t pixel_index = ((static_cast<int64_t>(b) * C + ch) * H + i * p + ky) * W + j * p + kx;
              visit(row * C * p * p + col, pixel_index);
            }
}

// patches[(b Hp + i) Wp + j, (ch p + ky) p + kx] = image[b, ch, i p + ky, j p + kx].
template <class T>
void patchify_forward(T* patches, const T* image, int B, int C, int H, int W, int p) {
  for_each_patch_element(B, C, H, W, p, [&](int64_t patch, int64_t pixel) { patches[patch] = image[pixel]; });
}

// dimage[b, ch, i p + ky, j p + kx] += dpatches[(b Hp + i) Wp + j, (ch p + ky) p + kx].
template <class T>
void patchify_backward(T* dimage, const T* dpatches, int B, int C, int H, int W, int p) {
  for_each_patch_element(B, C, H, W, p, [&](int64_t patch, int64_t pixel) { dimage[pixel] += dpatches[patch]; });
}

}  // namespace tessera::kernels::reference
