// Differentiable activations: gelu (exact erf form) element-wise, softmax and log_softmax over the last dimension.
// The kernels are reached through kernels/dispatch.hpp (float: fast kernels, double: reference loops).
#pragma once

#include <cstdint>
#include <limits>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"

namespace tessera::ops {

namespace detail {

// A tensor seen as (rows, cols) over its last dimension, with the kernels' int sizes. Closures take rows and cols
// as init-captures (rows = rows): clang before 16 cannot capture structured bindings.
struct RowsCols {
  int rows = 0, cols = 0;
};

inline RowsCols rows_over_last_dim(const Shape& shape, const char* op) {
  TESSERA_CHECK(shape.rank() >= 1, op, ": needs a tensor of rank >= 1 (it works over the last dimension), got shape ",
                shape);
  const int64_t cols = shape[shape.rank() - 1], rows = cols ? shape.numel() / cols : 0;
  TESSERA_CHECK(rows <= std::numeric_limits<int>::max() && cols <= std::numeric_limits<int>::max(), op,
                ": shape ", shape, " exceeds the kernels' int range");
  return {static_cast<int>(rows), static_cast<int>(cols)};
}

}  // namespace detail

// gelu(x) = x Φ(x) = x (1 + erf(x / √2)) / 2, PyTorch's default (approximate = "none").
template <class T>
Tensor<T> gelu(const Tensor<T>& a) {
  Tensor<T> out = Tensor<T>::empty(a.shape());
  kernels::dispatch::gelu_forward(out.data(), a.data(), a.numel());
  autograd::record<T>(out, "gelu", {a}, [a = a.detach()](const Tensor<T>& g, const autograd::NeedsGrad&) {
    Tensor<T> ga = Tensor<T>::zeros(a.shape());
    kernels::dispatch::gelu_backward(ga.data(), g.data(), a.data(), a.numel());
    return autograd::Grads<T>{ga};
  });
  return out;
}

// softmax over the last dimension, stable (the row maximum is subtracted before exponentiating).
template <class T>
Tensor<T> softmax(const Tensor<T>& a) {
  const auto [rows, cols] = detail::rows_over_last_dim(a.shape(), "softmax");
  Tensor<T> out = Tensor<T>::empty(a.shape());
  if (rows > 0 && cols > 0) kernels::dispatch::softmax_forward(out.data(), a.data(), rows, cols);
  autograd::record<T>(out, "softmax", {a},
                      [out = out.detach(), rows = rows, cols = cols](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        Tensor<T> ga = Tensor<T>::zeros(out.shape());
                        if (rows > 0 && cols > 0)
                          kernels::dispatch::softmax_backward(ga.data(), g.data(), out.data(), rows, cols);
                        return autograd::Grads<T>{ga};
                      });
  return out;
}

// log_softmax over the last dimension: x - max x - log Σ e^{x - max x}, stable for large logits.
template <class T>
Tensor<T> log_softmax(const Tensor<T>& a) {
  const auto [rows, cols] = detail::rows_over_last_dim(a.shape(), "log_softmax");
  Tensor<T> out = Tensor<T>::empty(a.shape());
  if (rows > 0 && cols > 0) kernels::dispatch::log_softmax_forward(out.data(), a.data(), rows, cols);
  autograd::record<T>(out, "log_softmax", {a},
                      [out = out.detach(), rows = rows, cols = cols](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        Tensor<T> ga = Tensor<T>::zeros(out.shape());
                        if (rows > 0 && cols > 0)
                          kernels::dispatch::log_softmax_backward(ga.data(), g.data(), out.data(), rows, cols);
                        return autograd::Grads<T>{ga};
                      });
  return out;
}

}  // namespace tessera::ops
