// The sizes of one 2D convolution (NCHW input, OIHW weight, zero padding, dilation 1, one group), shared by the
// fast kernels (kernels/conv2d.hpp) and the reference loops (kernels/reference/conv2d.hpp).
#pragma once

#include <cstdint>

namespace tessera::kernels {

// B images of C channels, H x W pixels; O output channels; a kh x kw kernel moved by (stride_h, stride_w) over the
// input padded with pad_h rows of zeros above and below and pad_w columns left and right. The output is
// Ho x Wo with Ho = (H + 2 pad_h - kh) / stride_h + 1 and Wo = (W + 2 pad_w - kw) / stride_w + 1 (rounded down).
struct Conv2dSizes {
  int B = 0, C = 0, H = 0, W = 0;
  int O = 0, kh = 1, kw = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;

  int Ho() const { return (H + 2 * pad_h - kh) / stride_h + 1; }
  int Wo() const { return (W + 2 * pad_w - kw) / stride_w + 1; }
  // Rows of the im2col matrix (a weight row's length, C kh kw) and its columns (output pixels, Ho Wo).
  int64_t patch_size() const { return int64_t{C} * kh * kw; }
  int64_t out_pixels() const { return int64_t{Ho()} * Wo(); }
  // A 1x1 kernel with stride 1 and no padding: the image itself is the im2col matrix.
  bool is_pointwise() const { return kh == 1 && kw == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0; }
};

}  // namespace tessera::kernels
