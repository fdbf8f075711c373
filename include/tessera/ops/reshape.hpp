// Differentiable reshape: a view of the same elements under another shape (one dimension may be -1).
#pragma once

#include <vector>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::ops {

template <class T>
Tensor<T> reshape(const Tensor<T>& a, std::vector<int64_t> dims) {
  int inferred = -1;
  int64_t known = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1) {
      TESSERA_CHECK(inferred < 0, "reshape: only one dimension may be -1 (input shape ", a.shape(), ")");
      inferred = static_cast<int>(i);
    } else {
      TESSERA_CHECK(dims[i] >= 0, "reshape: negative size ", dims[i], " requested for input shape ", a.shape());
      known *= dims[i];
    }
  }
  if (inferred >= 0) {
    TESSERA_CHECK(known > 0 && a.numel() % known == 0, "reshape: cannot infer the -1 dimension to reshape ", a.shape(),
                  " (", a.numel(), " elements)");
    dims[static_cast<size_t>(inferred)] = a.numel() / known;
  }
  const Shape shape(std::span<const int64_t>(dims.data(), dims.size()));
  TESSERA_CHECK(shape.numel() == a.numel(), "reshape: cannot reshape ", a.shape(), " (", a.numel(), " elements) to ",
                shape, " (", shape.numel(), " elements)");
  Tensor<T> out = a.view(shape);
  autograd::record<T>(out, "reshape", {a}, [input_shape = a.shape()](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{g.view(input_shape)};
  });
  return out;
}

// Flattens dimensions [start_dim, end] into one.
template <class T>
Tensor<T> flatten(const Tensor<T>& a, int start_dim = 0) {
  const int start = a.rank() == 0 ? 0 : a.shape().normalize_dim(start_dim, "flatten");
  std::vector<int64_t> dims(a.shape().dims().begin(), a.shape().dims().begin() + start);
  dims.push_back(-1);
  if (a.numel() == 0) {
    int64_t rest = 1;
    for (int d = start; d < a.rank(); ++d) rest *= a.shape()[d];
    dims.back() = rest;
  }
  return reshape(a, dims);
}

}  // namespace tessera::ops
