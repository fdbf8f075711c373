// nn::LayerNorm over the last dimension, with a learned scale (weight) and shift (bias); eps 1e-6 as in timm.
#pragma once

#include <cstdint>

#include "tessera/core/tensor.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/layer_norm.hpp"

namespace tessera::nn {

template <class T>
class LayerNorm : public Module<T> {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-6) : Module<T>("LayerNorm"), normalized_dim(dim), eps(eps) {
    TESSERA_CHECK(dim > 0, "LayerNorm: dimension must be positive, got ", dim);
    TESSERA_CHECK(eps > 0.0, "LayerNorm: eps must be positive, got ", eps);
    weight = Tensor<T>::ones(Shape{dim});
    bias = Tensor<T>::zeros(Shape{dim});
    this->register_parameter("weight", weight);
    this->register_parameter("bias", bias);
  }

  // x is (..., dim); normalises each row of the last dimension, then scales and shifts.
  Tensor<T> forward(const Tensor<T>& x) const {
    TESSERA_CHECK(x.rank() >= 1 && x.size(-1) == normalized_dim, this->where(), ": expected input (..., ",
                  normalized_dim, "), got shape ", x.shape());
    return ops::layer_norm(x, weight, bias, eps);
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  const int64_t normalized_dim;
  const double eps;
  Tensor<T> weight;
  Tensor<T> bias;
};

}  // namespace tessera::nn
