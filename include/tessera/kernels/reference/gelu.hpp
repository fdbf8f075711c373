// Reference exact GELU: plain loops, templated on T (test oracle). Layout: flat buffers of n elements.
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::kernels::reference {

// out = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (the same as (1 + erf(x / sqrt 2)) / 2, without cancellation).
template <class T>
void gelu_forward(T* out, const T* inp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] * T(0.5) * std::erfc(-inp[i] / std::sqrt(T(2)));
}

// dinp += dout (Phi(x) + x e^{-x^2/2} / sqrt(2 pi)).
template <class T>
void gelu_backward(T* dinp, const T* dout, const T* inp, int64_t n) {
  const T inv_sqrt_2pi = T(1) / std::sqrt(T(2) * T(3.14159265358979323846));
  for (int64_t i = 0; i < n; ++i) {
    const T x = inp[i];
    const T cdf = T(0.5) * std::erfc(-x / std::sqrt(T(2)));
    const T pdf = std::exp(-x * x / 2) * inv_sqrt_2pi;
    dinp[i] += dout[i] * (cdf + x * pdf);
  }
}

}  // namespace tessera::kernels::reference
