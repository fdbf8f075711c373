// nn::MLP (timm's Mlp): fc1 and GELU (one fused op), dropout, fc2, dropout.
#pragma once

#include <cstdint>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/matmul.hpp"

namespace tessera::nn {

template <class T>
class MLP : public Module<T> {
 public:
  MLP(int64_t in_features, int64_t hidden_features, double drop = 0.0, Generator& generator = default_generator())
      : Module<T>("Mlp"),
        fc1(in_features, hidden_features, true, generator),
        drop1(drop),
        fc2(hidden_features, in_features, true, generator),
        drop2(drop) {
    this->register_module("fc1", fc1);
    this->register_module("drop1", drop1);
    this->register_module("fc2", fc2);
    this->register_module("drop2", drop2);
  }

  // x is (..., in_features); returns the same shape. GELU is the exact (erf) form, as torch.nn.GELU(), fused with fc1
  // (bias and GELU in the GEMM's epilogue).
  Tensor<T> forward(const Tensor<T>& x) const { return drop2(fc2(hidden(x))); }

  // The hidden activations that fc2 reads: drop1(gelu(fc1(x))), (..., hidden_features).
  Tensor<T> hidden(const Tensor<T>& x) const {
    TESSERA_CHECK(x.rank() >= 1 && x.size(-1) == fc1.in_features, this->where(), ": expected input (..., ",
                  fc1.in_features, "), got shape ", x.shape());
    return drop1(ops::linear_gelu(x, fc1.weight, fc1.bias));
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  Linear<T> fc1;
  Dropout<T> drop1;
  Linear<T> fc2;
  Dropout<T> drop2;
};

}  // namespace tessera::nn
