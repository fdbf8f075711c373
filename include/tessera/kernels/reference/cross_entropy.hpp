// Reference cross-entropy with label smoothing, fused with log-softmax: plain loops, templated on T (test oracle).
// Layout: logits, probs, dlogits are (rows, classes) row-major; targets, losses, dlosses are (rows).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace tessera::kernels::reference {

// losses[r] = -sum_c q_c log softmax(x)_c with q = (1 - s) onehot(target) + s / classes; probs (or null) = softmax.
template <class T>
void cross_entropy_forward(T* losses, T* probs, const T* logits, const int64_t* targets, int rows, int classes,
                           T label_smoothing) {
  for (int r = 0; r < rows; ++r) {
    const T* x = logits + static_cast<int64_t>(r) * classes;
    T m = x[0];
    for (int c = 1; c < classes; ++c) m = std::max(m, x[c]);
    T sum = 0;
    for (int c = 0; c < classes; ++c) sum += std::exp(x[c] - m);
    const T lse = m + std::log(sum);
    T loss = 0;
    for (int c = 0; c < classes; ++c) {
      const T q = (c == targets[r] ? 1 - label_smoothing : T(0)) + label_smoothing / classes;
      loss -= q * (x[c] - lse);
      if (probs) probs[static_cast<int64_t>(r) * classes + c] = std::exp(x[c] - lse);
    }
    losses[r] = loss;
  }
}

// dlogits[r, c] += dlosses[r] (probs_c - q_c).
template <class T>
void cross_entropy_backward(T* dlogits, const T* dlosses, const T* probs, const int64_t* targets, int rows, int classes,
                            T label_smoothing) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < classes; ++c) {
      const int64_t i = static_cast<int64_t>(r) * classes + c;
      const T q = (c == targets[r] ? 1 - label_smoothing : T(0)) + label_smoothing / classes;
      dlogits[i] += dlosses[r] * (probs[i] - q);
    }
  }
}

}  // namespace tessera::kernels::reference
