// nn::Linear: y = x·weightᵀ + bias, weight (out_features, in_features), on ops::linear.
#pragma once

#include <cstdint>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/matmul.hpp"

namespace tessera::nn {

template <class T>
class Linear : public Module<T> {
 public:
  // Initialised as torch.nn.Linear is (U(±1/sqrt(in_features)) for weight and bias), from `generator`.
  Linear(int64_t in, int64_t out, bool with_bias = true, Generator& generator = default_generator())
      : Module<T>("Linear"), in_features(in), out_features(out) {
    TESSERA_CHECK(in > 0 && out > 0, "Linear: in_features and out_features must be positive, got ", in, " and ", out);
    weight = Tensor<T>::zeros(Shape{out, in});
    this->register_parameter("weight", weight);
    if (with_bias) {
      bias = Tensor<T>::zeros(Shape{out});
      this->register_parameter("bias", bias);
    }
    init::torch_default_(weight, with_bias ? &bias : nullptr, generator);
  }

  // x is (..., in_features); returns (..., out_features).
  Tensor<T> forward(const Tensor<T>& x) const {
    TESSERA_CHECK(x.rank() >= 1 && x.size(-1) == in_features, this->where(), ": expected input (..., ", in_features,
                  "), got shape ", x.shape(), " (weight ", weight.shape(), ")");
    return ops::linear(x, weight, bias);
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  bool has_bias() const { return bias.defined(); }

  const int64_t in_features;
  const int64_t out_features;
  Tensor<T> weight;
  Tensor<T> bias;  // undefined without bias
};

}  // namespace tessera::nn
