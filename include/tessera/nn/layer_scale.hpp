// nn::LayerScale (timm's LayerScale, "Going deeper with Image Transformers"): y = x * gamma over the last
// dimension, gamma (dim) learned and started at init_values.
#pragma once

#include <cstdint>
#include <utility>

#include "tessera/core/tensor.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/elementwise.hpp"
#include "tessera/ops/reshape.hpp"

namespace tessera::nn {

template <class T>
class LayerScale : public Module<T> {
 public:
  LayerScale(int64_t dim, double init_values) : Module<T>("LayerScale"), dim(dim) {
    TESSERA_CHECK(dim > 0, "LayerScale: dim must be positive, got ", dim);
    gamma = Tensor<T>::full(Shape{dim}, static_cast<T>(init_values));
    this->register_parameter("gamma", gamma);
  }

  // x is (..., dim); returns x * gamma, the same shape.
  Tensor<T> forward(const Tensor<T>& x) const {
    TESSERA_CHECK(x.rank() >= 1 && x.size(-1) == dim, this->where(), ": expected input (..., ", dim, "), got shape ",
                  x.shape());
    return ops::mul(x, gamma);
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  // A Linear's weight (dim, in) and bias (dim, or undefined) with this scale folded in, (weight * gamma[:, None],
  // bias * gamma), so that linear(x, folded...) = gamma * linear(x, weight, bias) and a residual add after the scale
  // can stay fused into the Linear's GEMM. Differentiable with respect to weight, bias and gamma.
  std::pair<Tensor<T>, Tensor<T>> fold_into(const Tensor<T>& weight, const Tensor<T>& bias) const {
    TESSERA_CHECK(weight.rank() == 2 && weight.size(0) == dim, this->where(), ": cannot fold into a weight of shape ",
                  weight.shape(), " (needs (", dim, ", in))");
    Tensor<T> folded_weight = ops::mul(weight, ops::reshape(gamma, {dim, 1}));
    Tensor<T> folded_bias = bias.defined() ? ops::mul(bias, gamma) : Tensor<T>();
    return {folded_weight, folded_bias};
  }

  const int64_t dim;
  Tensor<T> gamma;
};

}  // namespace tessera::nn
