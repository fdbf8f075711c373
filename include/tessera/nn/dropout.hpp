// nn::Dropout (element-wise, inverted) and nn::DropPath (stochastic depth: drops whole samples of a residual
// branch); both act only in training mode and draw from the module's generator.
#pragma once

#include <cstdint>
#include <vector>

#include "tessera/core/tensor.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/dropout.hpp"
#include "tessera/ops/elementwise.hpp"

namespace tessera::nn {

template <class T>
class Dropout : public Module<T> {
 public:
  explicit Dropout(double p = 0.5) : Module<T>("Dropout"), p(p) {
    TESSERA_CHECK(p >= 0.0 && p < 1.0, "Dropout: probability must be in [0, 1), got ", p);
  }

  Tensor<T> forward(const Tensor<T>& x) const { return ops::dropout(x, p, this->is_training(), this->generator()); }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  // True when forward returns its input unchanged (eval mode or p == 0), so a caller may fuse across it.
  bool is_identity() const { return !this->is_training() || p == 0.0; }

  const double p;
};

// timm's DropPath: in training, each sample (dimension 0) of x is zeroed with probability p and the kept samples
// are scaled by 1/(1-p); one uniform draw per sample, in sample order.
template <class T>
class DropPath : public Module<T> {
 public:
  explicit DropPath(double p = 0.0) : Module<T>("DropPath"), p(p) {
    TESSERA_CHECK(p >= 0.0 && p < 1.0, "DropPath: probability must be in [0, 1), got ", p);
  }

  Tensor<T> forward(const Tensor<T>& x) const {
    if (!this->is_training() || p == 0.0) return x;
    TESSERA_CHECK(x.rank() >= 1, this->where(), ": needs an input with a batch dimension, got shape ", x.shape());
    std::vector<int64_t> dims(static_cast<size_t>(x.rank()), 1);
    dims[0] = x.size(0);
    Tensor<T> mask{Shape(std::span<const int64_t>(dims))};
    const T scale = static_cast<T>(1.0 / (1.0 - p));
    Generator& generator = this->generator();
    for (int64_t b = 0; b < mask.numel(); ++b) mask.data()[b] = generator.uniform() >= p ? scale : T(0);
    return ops::mul(x, mask);
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  // True when forward returns its input unchanged (eval mode or p == 0), so a caller may fuse across it.
  bool is_identity() const { return !this->is_training() || p == 0.0; }

  const double p;
};

}  // namespace tessera::nn
