// Differentiable batch normalisation over the channels of (B, C, ...) input (PyTorch's F.batch_norm, as BatchNorm1d,
// BatchNorm2d and BatchNorm3d use it), in training mode (batch statistics, running statistics updated in place) or
// evaluation mode (running statistics). float runs the fast kernels, double the reference loops.
#pragma once

#include <cmath>
#include <cstdint>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"
#include "tessera/ops/matmul.hpp"

namespace tessera::ops {

struct BatchNormOptions {
  bool training = true;   // normalise with the batch's statistics (and update the running ones), else the running
  double momentum = 0.1;  // running = (1 - momentum) running + momentum batch
  double eps = 1e-5;      // added to the variance
};

// input (B, C, ...) with n = B · (product of the dimensions after C) values per channel; weight, bias (C) or undefined
// (1 and 0); running_mean, running_var (C), both or neither.
// Training: y = (x - mean) / sqrt(var + eps) · weight + bias with the channel's mean and biased variance over the
// batch and the pixels (needs n > 1); when given, running_mean and running_var are updated in place:
// running_mean = (1 - momentum) running_mean + momentum mean, running_var likewise with the unbiased variance
// var · n / (n - 1). The gradient flows through the batch statistics.
// Evaluation: y = (x - running_mean) / sqrt(running_var + eps) · weight + bias (running statistics required).
template <class T>
Tensor<T> batch_norm(const Tensor<T>& input, const Tensor<T>& weight, const Tensor<T>& bias,
                     const Tensor<T>& running_mean, const Tensor<T>& running_var,
                     const BatchNormOptions& options = {}) {
  TESSERA_CHECK(input.rank() >= 2 && input.size(1) >= 1,
                "batch_norm: input must be (B, C, ...) with C >= 1, got shape ", input.shape());
  const int64_t B = input.size(0), C = input.size(1), pixels = B ? input.numel() / (B * C) : 0;
  const Shape channels{C};
  auto check_channels = [&](const Tensor<T>& t, const char* what) {
    if (t.defined())
      TESSERA_CHECK(t.shape() == channels, "batch_norm: ", what, " of shape ", t.shape(),
                    " does not match input of shape ", input.shape(), " (expected ", channels, ")");
  };
  check_channels(weight, "weight");
  check_channels(bias, "bias");
  check_channels(running_mean, "running_mean");
  check_channels(running_var, "running_var");
  TESSERA_CHECK(running_mean.defined() == running_var.defined(),
                "batch_norm: running_mean and running_var must be given together");
  TESSERA_CHECK(options.training || running_mean.defined(),
                "batch_norm: evaluation mode needs running_mean and running_var, input of shape ", input.shape());
  TESSERA_CHECK(options.eps >= 0.0, "batch_norm: eps must be >= 0, got ", options.eps);
  TESSERA_CHECK(options.momentum >= 0.0 && options.momentum <= 1.0, "batch_norm: momentum must be in [0, 1], got ",
                options.momentum);
  TESSERA_CHECK(!options.training || B * pixels > 1,
                "batch_norm: training needs more than one value per channel, got input of shape ", input.shape());
  const int b = detail::kernel_int(B, "batch_norm"), c = detail::kernel_int(C, "batch_norm");
  const int hw = detail::kernel_int(pixels, "batch_norm");
  const T* w = weight.defined() ? weight.data() : nullptr;
  const T* bi = bias.defined() ? bias.data() : nullptr;

  Tensor<T> out = Tensor<T>::empty(input.shape());
  Tensor<T> mean = Tensor<T>::empty(channels), rstd = Tensor<T>::empty(channels);  // the statistics used
  if (options.training) {
    T* rm = running_mean.defined() ? running_mean.data() : nullptr;
    T* rv = running_var.defined() ? running_var.data() : nullptr;
    kernels::dispatch::batch_norm_forward(out.data(), mean.data(), rstd.data(), rm, rv, input.data(), w, bi, b, c, hw,
                                          static_cast<T>(options.eps), static_cast<T>(options.momentum));
  } else {
    mean.copy_(running_mean);  // a copy: a later training step may update the running statistics in place
    for (int64_t i = 0; i < C; ++i)
      rstd.data()[i] = T(1) / std::sqrt(running_var.data()[i] + static_cast<T>(options.eps));
    if (hw > 0)
      kernels::dispatch::batch_norm_forward_eval(out.data(), input.data(), mean.data(), rstd.data(), w, bi, b, c, hw);
  }
  autograd::record<T>(
      out, "batch_norm", {input, weight, bias},
      [input = input.detach(), weight = weight.defined() ? weight.detach() : Tensor<T>(), mean, rstd, b, c, hw,
       training = options.training](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
        Tensor<T> ginput, gweight, gbias;  // the kernels add into them
        if (needs[0]) ginput = Tensor<T>::zeros(input.shape());
        if (needs[1]) gweight = Tensor<T>::zeros(Shape{c});
        if (needs[2]) gbias = Tensor<T>::zeros(Shape{c});
        T* di = ginput.defined() ? ginput.data() : nullptr;
        T* dw = gweight.defined() ? gweight.data() : nullptr;
        T* db = gbias.defined() ? gbias.data() : nullptr;
        const T* w = weight.defined() ? weight.data() : nullptr;
        if (training)
          kernels::dispatch::batch_norm_backward(di, dw, db, g.data(), input.data(), w, mean.data(), rstd.data(), b, c,
                                                 hw);
        else if (hw > 0)
          kernels::dispatch::batch_norm_backward_eval(di, dw, db, g.data(), input.data(), w, mean.data(), rstd.data(),
                                                      b, c, hw);
        return autograd::Grads<T>{ginput, gweight, gbias};
      });
  return out;
}

}  // namespace tessera::ops
