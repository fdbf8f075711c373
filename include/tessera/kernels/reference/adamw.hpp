// Reference AdamW step over a flat buffer: a plain loop, templated on T (test oracle), in PyTorch's order.
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::kernels::reference {

// param *= 1 - lr wd; m += (1 - b1)(g - m); v = v b2 + (1 - b2) g g;
// param += (-lr / (1 - b1^step)) m / (sqrt(v) / sqrt(1 - b2^step) + eps). Scalars are formed in double.
template <class T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1, double beta2, double eps,
                double weight_decay, int step) {
  const T decay = static_cast<T>(1.0 - lr * weight_decay);
  const T beta1_weight = static_cast<T>(1.0 - beta1);
  const T b2 = static_cast<T>(beta2), one_minus_b2 = static_cast<T>(1.0 - beta2);
  const T bias_correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(beta2, step)));
  const T neg_step_size = static_cast<T>(-(lr / (1.0 - std::pow(beta1, step))));
  const T e = static_cast<T>(eps);
  for (int64_t i = 0; i < n; ++i) {
    if (weight_decay != 0.0) param[i] *= decay;
    m[i] += beta1_weight * (grad[i] - m[i]);
    v[i] = v[i] * b2 + one_minus_b2 * grad[i] * grad[i];
    const T denom = std::sqrt(v[i]) / bias_correction2_sqrt + e;
    param[i] += neg_step_size * m[i] / denom;
  }
}

}  // namespace tessera::kernels::reference
