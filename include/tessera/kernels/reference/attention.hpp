// Reference multi-head self-attention: plain loops in T (float or double), the test oracle for kernels/attention
// and the double path of ops::attention. Same layouts, arguments and dropout mask as the fast kernel.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tessera/kernels/attention.hpp"

namespace tessera::kernels::reference {

// qkv is (B,N,3,H,d), out is (B,N,H·d), probs is (B,H,N,N) or null. Per (b, h), with s = d^-1/2:
// S = q kᵀ · s, P = softmax(S) by rows (saved in probs), out[b,:,h] = (P ∘ M) v with M the dropout multiplier.
template <class T>
void attention_forward(T* out, T* probs, const T* qkv, int B, int N, int H, int d, double dropout_p = 0.0,
                       uint64_t dropout_seed = 0) {
  const int64_t C = int64_t(H) * d, row = 3 * C;
  const T scale = T(1) / std::sqrt(static_cast<T>(d));
  const uint64_t threshold = attention_dropout_threshold(dropout_p);
  const T keep_scale = static_cast<T>(1.0 / (1.0 - dropout_p));
  std::vector<T> p(static_cast<size_t>(N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t tile = b * H + h;
      const T* base = qkv + b * N * row + h * d;
      for (int64_t i = 0; i < N; ++i) {
        const T* q = base + i * row;
        T row_max = -INFINITY;
        for (int64_t j = 0; j < N; ++j) {
          const T* k = base + j * row + C;
          T dot = T(0);
          for (int64_t c = 0; c < d; ++c) dot += q[c] * k[c];
          p[j] = dot * scale;
          row_max = std::max(row_max, p[j]);
        }
        T sum = T(0);
        for (int64_t j = 0; j < N; ++j) {
          p[j] = std::exp(p[j] - row_max);
          sum += p[j];
        }
        for (int64_t j = 0; j < N; ++j) {
          p[j] /= sum;
          if (probs) probs[(tile * N + i) * N + j] = p[j];
          if (dropout_p > 0.0)
            p[j] *= attention_dropout_keep(dropout_seed, uint64_t((tile * N + i) * N + j), threshold) ? keep_scale
                                                                                                       : T(0);
        }
        T* o = out + (b * N + i) * C + h * d;
        for (int64_t c = 0; c < d; ++c) {
          T acc = T(0);
          for (int64_t j = 0; j < N; ++j) acc += p[j] * base[j * row + 2 * C + c];
          o[c] = acc;
        }
      }
    }
}

// dqkv (B,N,3,H,d) += gradient of out given dout (B,N,H·d), from qkv and the saved probs (B,H,N,N). Per (b, h):
// Pd = P ∘ M, dv += Pdᵀ dout, dP = (dout vᵀ) ∘ M, dS = P ∘ (dP − rowsum(dP ∘ P)), dq += s·dS k, dk += s·dSᵀ q.
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* probs, int B, int N, int H, int d,
                        double dropout_p = 0.0, uint64_t dropout_seed = 0) {
  const int64_t C = int64_t(H) * d, row = 3 * C;
  const T scale = T(1) / std::sqrt(static_cast<T>(d));
  const uint64_t threshold = attention_dropout_threshold(dropout_p);
  const T keep_scale = static_cast<T>(1.0 / (1.0 - dropout_p));
  std::vector<T> mask(static_cast<size_t>(N) * N), dS(static_cast<size_t>(N) * N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t tile = b * H + h;
      const int64_t offset = b * N * row + h * d;
      const T* P = probs + tile * N * N;
      auto q = [&](int64_t i, int64_t c) { return qkv[offset + i * row + c]; };
      auto k = [&](int64_t i, int64_t c) { return qkv[offset + i * row + C + c]; };
      auto v = [&](int64_t i, int64_t c) { return qkv[offset + i * row + 2 * C + c]; };
      auto go = [&](int64_t i, int64_t c) { return dout[(b * N + i) * C + h * d + c]; };
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) {
          T m = T(1);
          if (dropout_p > 0.0)
            m = attention_dropout_keep(dropout_seed, uint64_t((tile * N + i) * N + j), threshold) ? keep_scale : T(0);
          mask[i * N + j] = m;
        }
      for (int64_t j = 0; j < N; ++j)
        for (int64_t c = 0; c < d; ++c) {
          T acc = T(0);
          for (int64_t i = 0; i < N; ++i) acc += P[i * N + j] * mask[i * N + j] * go(i, c);
          dqkv[offset + j * row + 2 * C + c] += acc;
        }
      for (int64_t i = 0; i < N; ++i) {
        T dot = T(0);
        for (int64_t j = 0; j < N; ++j) {
          T dp = T(0);
          for (int64_t c = 0; c < d; ++c) dp += go(i, c) * v(j, c);
          dS[i * N + j] = dp * mask[i * N + j];
          dot += dS[i * N + j] * P[i * N + j];
        }
        for (int64_t j = 0; j < N; ++j) dS[i * N + j] = P[i * N + j] * (dS[i * N + j] - dot);
      }
      for (int64_t i = 0; i < N; ++i)
        for (int64_t c = 0; c < d; ++c) {
          T dq = T(0), dk = T(0);
          for (int64_t j = 0; j < N; ++j) {
            dq += dS[i * N + j] * k(j, c);
            dk += dS[j * N + i] * q(j, c);
          }
          dqkv[offset + i * row + c] += scale * dq;
          dqkv[offset + i * row + C + c] += scale * dk;
        }
    }
}

}  // namespace tessera::kernels::reference
