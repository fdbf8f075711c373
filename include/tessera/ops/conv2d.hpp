// Differentiable 2D convolution (PyTorch's F.conv2d with one group, dilation 1 and zero padding) on the im2col + GEMM
// kernels; float runs the fast kernels, double the reference loops (kernels/dispatch.hpp picks by overload).
#pragma once

#include <array>
#include <cstdint>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"
#include "tessera/ops/matmul.hpp"

namespace tessera::ops {

// Stride and zero padding of a convolution, each as (rows, columns): Conv2dOptions{.stride = {2, 2}, .padding = {1,
// 1}}.
struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};

  friend bool operator==(const Conv2dOptions&, const Conv2dOptions&) = default;
};

// input (B, C, H, W), weight (O, C, kh, kw), bias (O) or undefined; returns (B, O, Ho, Wo) with
// Ho = (H + 2 padding[0] - kh) / stride[0] + 1 and Wo = (W + 2 padding[1] - kw) / stride[1] + 1 (rounded down):
// out[b, o, y, x] = bias[o] + Σ_{c, ky, kx} weight[o, c, ky, kx] · input[b, c, y·sh - ph + ky, x·sw - pw + kx],
// pixels outside the image being zero.
template <class T>
Tensor<T> conv2d(const Tensor<T>& input, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>(),
                 const Conv2dOptions& options = {}) {
  TESSERA_CHECK(weight.rank() == 4 && weight.numel() > 0,
                "conv2d: weight must be (out_channels, in_channels, kh, kw) with no zero size, got shape ",
                weight.shape());
  const int64_t O = weight.size(0), C = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  TESSERA_CHECK(input.rank() == 4 && input.size(1) == C, "conv2d: input must be (B, ", C,
                ", H, W) for weight of shape ", weight.shape(), ", got shape ", input.shape());
  if (bias.defined())
    TESSERA_CHECK(bias.shape() == Shape{O}, "conv2d: bias of shape ", bias.shape(), " does not match weight of shape ",
                  weight.shape(), " (expected (", O, "))");
  const auto [sh, sw] = options.stride;
  const auto [ph, pw] = options.padding;
  TESSERA_CHECK(sh >= 1 && sw >= 1 && ph >= 0 && pw >= 0, "conv2d: stride must be >= 1 and padding >= 0, got stride (",
                sh, ", ", sw, ") and padding (", ph, ", ", pw, ")");
  const int64_t B = input.size(0), H = input.size(2), W = input.size(3);
  TESSERA_CHECK(H + 2 * ph >= kh && W + 2 * pw >= kw, "conv2d: kernel ", kh, "x", kw, " (weight shape ", weight.shape(),
                ") is larger than the padded input ", H + 2 * ph, "x", W + 2 * pw, " (input shape ", input.shape(),
                ", padding (", ph, ", ", pw, "))");
  const int64_t Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
  const char* op = "conv2d";
  detail::kernel_int(C * kh * kw, op);  // the GEMMs' sizes: one weight row and one image's output pixels
  detail::kernel_int(Ho * Wo, op);
  const kernels::Conv2dSizes sizes{detail::kernel_int(B, op),  detail::kernel_int(C, op),  detail::kernel_int(H, op),
                                   detail::kernel_int(W, op),  detail::kernel_int(O, op),  detail::kernel_int(kh, op),
                                   detail::kernel_int(kw, op), detail::kernel_int(sh, op), detail::kernel_int(sw, op),
                                   detail::kernel_int(ph, op), detail::kernel_int(pw, op)};

  Tensor<T> out = Tensor<T>::empty(Shape{B, O, Ho, Wo});
  const T* b = bias.defined() ? bias.data() : nullptr;
  if (B > 0) kernels::dispatch::conv2d_forward(out.data(), input.data(), weight.data(), b, sizes);
  autograd::record<T>(
      out, "conv2d", {input, weight, bias},
      [input = input.detach(), weight = weight.detach(), sizes](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
        Tensor<T> ginput, gweight, gbias;  // the kernel adds into them
        if (needs[0]) ginput = Tensor<T>::zeros(input.shape());
        if (needs[1]) gweight = Tensor<T>::zeros(weight.shape());
        if (needs[2]) gbias = Tensor<T>::zeros(Shape{weight.size(0)});
        T* dinput = ginput.defined() ? ginput.data() : nullptr;
        T* dweight = gweight.defined() ? gweight.data() : nullptr;
        T* dbias = gbias.defined() ? gbias.data() : nullptr;
        if (sizes.B > 0)
          kernels::dispatch::conv2d_backward(dinput, dweight, dbias, g.data(), input.data(), weight.data(), sizes);
        return autograd::Grads<T>{ginput, gweight, gbias};
      });
  return out;
}

}  // namespace tessera::ops
