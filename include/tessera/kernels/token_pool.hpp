// Weighted sum of a sequence's tokens (the pooling step of Compact Transformers' sequence pooling), forward and
// backward. B = batch, N = tokens, E = channels.
#pragma once

#include <cassert>
#include <cstdint>

namespace tessera::kernels {

// tokens is (B, N, E), weights is (B, N), out is (B, E):
//   out[b, e] = sum_n weights[b, n] * tokens[b, n, e], summed over n in ascending order.
template <class T>
void weighted_token_sum_forward(T* out, const T* tokens, const T* weights, int64_t B, int64_t N, int64_t E) {
  assert(B >= 0 && N >= 0 && E >= 0);
  for (int64_t b = 0; b < B; ++b) {
    T* o = out + b * E;
    for (int64_t e = 0; e < E; ++e) o[e] = T(0);
    for (int64_t n = 0; n < N; ++n) {
      const T w = weights[b * N + n];
      const T* x = tokens + (b * N + n) * E;
      for (int64_t e = 0; e < E; ++e) o[e] += w * x[e];
    }
  }
}

// dtokens (B, N, E) and dweights (B, N) += the gradients for dout (B, E); either may be null (not needed):
//   dtokens[b, n, e] += weights[b, n] * dout[b, e];   dweights[b, n] += sum_e tokens[b, n, e] * dout[b, e].
template <class T>
void weighted_token_sum_backward(T* dtokens, T* dweights, const T* dout, const T* tokens, const T* weights, int64_t B,
                                 int64_t N, int64_t E) {
  assert(B >= 0 && N >= 0 && E >= 0);
  for (int64_t b = 0; b < B; ++b) {
    const T* g = dout + b * E;
    for (int64_t n = 0; n < N; ++n) {
      if (dtokens) {
        const T w = weights[b * N + n];
        T* dx = dtokens + (b * N + n) * E;
        for (int64_t e = 0; e < E; ++e) dx[e] += w * g[e];
      }
      if (dweights) {
        const T* x = tokens + (b * N + n) * E;
        T dot = T(0);
        for (int64_t e = 0; e < E; ++e) dot += x[e] * g[e];
        dweights[b * N + n] += dot;
      }
    }
  }
}

}  // namespace tessera::kernels
