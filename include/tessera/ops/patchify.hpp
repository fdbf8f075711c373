// Differentiable patch embedding (timm's PatchEmbed: a p×p convolution with stride p) as the patchify kernel and one
// GEMM with the bias in its epilogue; kernels through kernels/dispatch.hpp (float: fast, double: reference loops).
#pragma once

#include <cstdint>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"
#include "tessera/ops/matmul.hpp"

namespace tessera::ops {

// images (B, C, H, W), weight (E, C, p, p) (a Conv2d weight), bias (E) or undefined, p = weight.size(-1); returns
// (B, (H/p)·(W/p), E), patches in row-major grid order: out[b, i·(W/p) + j] = Σ weight[:, c, u, v] ·
// images[b, c, i·p + u, j·p + v] + bias. The patches are cut into a (B·P, C·p·p) matrix (saved for the weight's
// gradient) and multiplied by the weight viewed as (E, C·p·p).
template <class T>
Tensor<T> patch_embed(const Tensor<T>& images, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>()) {
  TESSERA_CHECK(weight.rank() == 4 && weight.size(2) == weight.size(3) && weight.size(2) >= 1,
                "patch_embed: weight must be (embed_dim, channels, p, p), got shape ", weight.shape());
  const int64_t E = weight.size(0), C = weight.size(1), p = weight.size(2);
  TESSERA_CHECK(images.rank() == 4 && images.size(1) == C, "patch_embed: images must be (B, ", C,
                ", H, W) for weight of shape ", weight.shape(), ", got shape ", images.shape());
  const int64_t B = images.size(0), H = images.size(2), W = images.size(3);
  TESSERA_CHECK(H % p == 0 && W % p == 0, "patch_embed: image size ", H, "x", W, " (images shape ", images.shape(),
                ") is not divisible by the patch size ", p);
  if (bias.defined())
    TESSERA_CHECK(bias.shape() == Shape{E}, "patch_embed: bias of shape ", bias.shape(),
                  " does not match weight of shape ", weight.shape(), " (expected (", E, "))");
  const int64_t P = (H / p) * (W / p), K = C * p * p;
  const int b = detail::kernel_int(B, "patch_embed"), c = detail::kernel_int(C, "patch_embed");
  const int h = detail::kernel_int(H, "patch_embed"), w = detail::kernel_int(W, "patch_embed"), pi = int(p);
  const detail::LinearSizes sizes{detail::kernel_int(B * P, "patch_embed"), detail::kernel_int(K, "patch_embed"),
                                  detail::kernel_int(E, "patch_embed")};

  Tensor<T> patches = Tensor<T>::empty(Shape{B * P, K});
  if (B * P > 0) kernels::dispatch::patchify_forward(patches.data(), images.data(), b, c, h, w, pi);
  Tensor<T> out = Tensor<T>::empty(Shape{B, P, E});
  const Tensor<T> weight_matrix = weight.view(Shape{E, K});
  detail::linear_forward<T>(out.data(), patches.data(), weight_matrix.data(), bias.defined() ? bias.data() : nullptr,
                            sizes);
  autograd::record<T>(
      out, "patch_embed", {images, weight, bias},
      [patches, weight_matrix = weight_matrix.detach(), weight_shape = weight.shape(), image_shape = images.shape(),
       sizes, b, c, h, w, pi](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
        autograd::Grads<T> grads = detail::linear_backward<T>(g.data(), patches, weight_matrix, sizes, needs);
        Tensor<T> dimages;
        if (needs[0]) {  // grads[0] is the gradient of the patch matrix: scatter it back onto the pixels
          dimages = Tensor<T>::zeros(image_shape);  // the backward adds into it
          if (sizes.rows > 0) kernels::dispatch::patchify_backward(dimages.data(), grads[0].data(), b, c, h, w, pi);
        }
        return autograd::Grads<T>{dimages, needs[1] ? grads[1].view(weight_shape) : Tensor<T>(), grads[2]};
      });
  return out;
}

}  // namespace tessera::ops
