// Reference AdamW step over a flat buffer: a plain loop, templated on T, in PyTorch's order of operations. It is the
// test oracle of kernels/adamw.hpp and the double path of optim::AdamW (through kernels/dispatch.hpp).
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::kernels::reference {

// torch.optim.AdamW's single-tensor path, element by element (scalars formed in double, then rounded to T):
//   param = param (1 - lr wd)                                             (mul_, skipped when wd = 0)
//   m     = lerp(m, grad, 1 - b1)                                         (lerp_)
//   v     = v b2 + (1 - b2) grad grad                                     (mul_, then addcmul_)
//   param = param + ((-lr / (1 - b1^step)) m) / (sqrt(v) / sqrt(1 - b2^step) + eps)    (addcdiv_)
// lerp(a, b, w) is ATen's: a + w (b - a) when |w| < 0.5, else b - (b - a)(1 - w). step counts from 1.
template <class T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1, double beta2, double eps,
                double weight_decay, int step) {
  const T decay = static_cast<T>(1.0 - lr * weight_decay);
  const T beta1_weight = static_cast<T>(1.0 - beta1);
  const bool small_weight = std::abs(1.0 - beta1) < 0.5;
  const T b2 = static_cast<T>(beta2), one_minus_b2 = static_cast<T>(1.0 - beta2);
  const T bias_correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(beta2, step)));
  const T neg_step_size = static_cast<T>(-(lr / (1.0 - std::pow(beta1, step))));
  const T e = static_cast<T>(eps);
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i];
    T p = param[i];
    if (weight_decay != 0.0) p = p * decay;
    const T diff = g - m[i];
    m[i] = small_weight ? m[i] + beta1_weight * diff : g - diff * (T(1) - beta1_weight);
    v[i] = v[i] * b2 + one_minus_b2 * g * g;
    const T denom = std::sqrt(v[i]) / bias_correction2_sqrt + e;
    param[i] = p + neg_step_size * m[i] / denom;
  }
}

}  // namespace tessera::kernels::reference
