// Differentiable inverted dropout: zeroes each element with probability p and scales the kept ones by 1/(1-p).
#pragma once

#include <cstdint>

#include "tessera/autograd/node.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/elementwise.hpp"

namespace tessera::ops {

// Identity when !training or p == 0. Otherwise the mask is drawn from `generator` in element order (one
// uniform per element, kept when it is >= p), so a seeded generator gives the same mask on every run.
template <class T>
Tensor<T> dropout(const Tensor<T>& x, double p, bool training, Generator& generator = default_generator()) {
  TESSERA_CHECK(p >= 0.0 && p < 1.0, "dropout: probability p must be in [0, 1), got ", p, " (input shape ", x.shape(),
                ")");
  if (!training || p == 0.0) return x;
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  Tensor<T> mask = Tensor<T>::empty(x.shape());  // 0 where dropped, 1/(1-p) where kept
  for (int64_t i = 0; i < mask.numel(); ++i) mask.data()[i] = generator.uniform() >= p ? scale : T(0);
  Tensor<T> out = Tensor<T>::empty(x.shape());
  kernels::map_binary(out.data(), x.data(), mask.data(), out.numel(), [](T v, T m) { return v * m; });
  autograd::record<T>(out, "dropout", {x}, [mask](const Tensor<T>& g, const autograd::NeedsGrad&) {
    Tensor<T> gx = Tensor<T>::empty(g.shape());
    kernels::map_binary(gx.data(), g.data(), mask.data(), gx.numel(), [](T v, T m) { return v * m; });
    return autograd::Grads<T>{gx};
  });
  return out;
}

}  // namespace tessera::ops
