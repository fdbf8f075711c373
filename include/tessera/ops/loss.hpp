// Differentiable losses: cross_entropy of logits against class indices, mean over the batch, with PyTorch's label
// smoothing. The kernels are reached through kernels/dispatch.hpp (float: fast kernels, double: reference loops).
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"

namespace tessera::ops {

// Mean over the batch of -Σ_c q_c log softmax(logits)_c, q = (1 - label_smoothing) onehot(target) +
// label_smoothing / C, as torch.nn.functional.cross_entropy(logits, targets, label_smoothing=...).
// logits is (B, C), targets holds B class indices in [0, C); the result is a scalar (shape ()).
template <class T>
Tensor<T> cross_entropy(const Tensor<T>& logits, std::span<const int64_t> targets, double label_smoothing = 0.0) {
  TESSERA_CHECK(logits.rank() == 2, "cross_entropy: logits must be (batch, classes), got shape ", logits.shape());
  const int64_t batch = logits.size(0), classes = logits.size(1);
  TESSERA_CHECK(batch >= 1 && classes >= 1, "cross_entropy: logits of shape ", logits.shape(),
                " are empty (the mean loss needs at least one row and one class)");
  TESSERA_CHECK(batch <= std::numeric_limits<int>::max() && classes <= std::numeric_limits<int>::max(),
                "cross_entropy: logits of shape ", logits.shape(), " exceed the kernels' int range");
  TESSERA_CHECK(static_cast<int64_t>(targets.size()) == batch, "cross_entropy: ", targets.size(),
                " targets given for logits of shape ", logits.shape(), " (expected ", batch, ")");
  for (size_t r = 0; r < targets.size(); ++r)
    TESSERA_CHECK(targets[r] >= 0 && targets[r] < classes, "cross_entropy: target ", targets[r], " at position ", r,
                  " is out of range for ", classes, " classes (logits shape ", logits.shape(), ")");
  TESSERA_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
                "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int rows = static_cast<int>(batch), cols = static_cast<int>(classes);
  const T smoothing = static_cast<T>(label_smoothing);
  Tensor<T> losses = Tensor<T>::empty(Shape{batch}), probs = Tensor<T>::empty(logits.shape());
  kernels::dispatch::cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), rows, cols,
                                           smoothing);
  T total = T(0);  // in row order, so the result does not depend on threads
  for (int64_t r = 0; r < batch; ++r) total += losses.data()[r];
  Tensor<T> out = Tensor<T>::full(Shape{}, total / static_cast<T>(batch));
  autograd::record<T>(out, "cross_entropy", {logits},
                      [probs, labels = std::vector<int64_t>(targets.begin(), targets.end()), rows, cols,
                       smoothing](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        // d(mean)/d(losses[r]) = 1 / B, times the upstream gradient of the scalar.
                        Tensor<T> dlosses = Tensor<T>::full(Shape{rows}, g.item() / static_cast<T>(rows));
                        Tensor<T> dlogits = Tensor<T>::zeros(probs.shape());
                        kernels::dispatch::cross_entropy_backward(dlogits.data(), dlosses.data(), probs.data(),
                                                                  labels.data(), rows, cols, smoothing);
                        return autograd::Grads<T>{dlogits};
                      });
  return out;
}

template <class T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const std::vector<int64_t>& targets, double label_smoothing = 0.0) {
  return cross_entropy(logits, std::span<const int64_t>(targets), label_smoothing);
}

}  // namespace tessera::ops
