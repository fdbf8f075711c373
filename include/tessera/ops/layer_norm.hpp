// Differentiable layer normalisation over the last dimension, with optional per-feature weight and bias.
// The kernels are reached through kernels/dispatch.hpp (float: fast kernels, double: reference loops).
#pragma once

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"
#include "tessera/ops/activation.hpp"

namespace tessera::ops {

// y = (x - mean) / sqrt(var + eps) * weight + bias per row of the last dimension (biased variance, as PyTorch).
// x is (..., C); weight and bias are (C) or undefined (1 and 0).
template <class T>
Tensor<T> layer_norm(const Tensor<T>& x, const Tensor<T>& weight = Tensor<T>(), const Tensor<T>& bias = Tensor<T>(),
                     double eps = 1e-5) {
  const auto [rows, cols] = detail::rows_over_last_dim(x.shape(), "layer_norm");
  const Shape features{cols};
  if (weight.defined())
    TESSERA_CHECK(weight.shape() == features, "layer_norm: weight of shape ", weight.shape(),
                  " does not match input of shape ", x.shape(), " (expected ", features, ")");
  if (bias.defined())
    TESSERA_CHECK(bias.shape() == features, "layer_norm: bias of shape ", bias.shape(), " does not match input of shape ",
                  x.shape(), " (expected ", features, ")");
  TESSERA_CHECK(eps >= 0.0, "layer_norm: eps must be >= 0, got ", eps);
  Tensor<T> out = Tensor<T>::empty(x.shape()), mean = Tensor<T>::empty(Shape{rows}),
            rstd = Tensor<T>::empty(Shape{rows});
  const T* w = weight.defined() ? weight.data() : nullptr;
  const T* b = bias.defined() ? bias.data() : nullptr;
  if (rows > 0 && cols > 0)
    kernels::dispatch::layer_norm_forward(out.data(), mean.data(), rstd.data(), x.data(), w, b, rows, cols,
                                          static_cast<T>(eps));
  autograd::record<T>(
      out, "layer_norm", {x, weight, bias},
      [x = x.detach(), weight = weight.defined() ? weight.detach() : Tensor<T>(), mean, rstd, rows = rows,
       cols = cols](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
        Tensor<T> gx = Tensor<T>::zeros(x.shape()), gw, gb;  // the kernel always writes dinp
        if (needs[1]) gw = Tensor<T>::zeros(Shape{cols});
        if (needs[2]) gb = Tensor<T>::zeros(Shape{cols});
        const T* w = weight.defined() ? weight.data() : nullptr;
        T* dw = gw.defined() ? gw.data() : nullptr;
        T* db = gb.defined() ? gb.data() : nullptr;
        if (rows > 0 && cols > 0)
          kernels::dispatch::layer_norm_backward(gx.data(), dw, db, g.data(), x.data(), w, mean.data(), rstd.data(),
                                                 rows, cols);
        return autograd::Grads<T>{needs[0] ? gx : Tensor<T>(), gw, gb};
      });
  return out;
}

}  // namespace tessera::ops
