// Portable GEMM micro-kernel in plain C++ (the fallback without AVX2/AVX-512), and the store rule that
// every micro-kernel shares.
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::kernels::gemm_impl {

// The one rule for writing a finished sum acc into C, used by every micro-kernel and by edge tiles, so a
// value of C has the same bits whichever tile shape produced it. With bias (the column's bias, on the last
// depth block only) and without:
//   beta == 0:  c = fma(alpha, acc, bias)              c = alpha * acc            (c is not read)
//   otherwise:  c = fma(beta, c, alpha * acc) + bias   c = fma(beta, c, alpha * acc)
// Every rounding is spelled out (fma or a lone product), so compiler contraction cannot change it.
inline void store_rule(float* c, float acc, float alpha, float beta, const float* bias) {
  if (beta == 0.0f)
    *c = bias ? std::fma(alpha, acc, *bias) : alpha * acc;
  else
    *c = bias ? std::fma(beta, *c, alpha * acc) + *bias : std::fma(beta, *c, alpha * acc);
}

// C tile (MR,NR) at c (row stride ldc) from packed slivers a (kc,MR) and b (kc,NR), bias (NR) or nullptr:
//   acc[r][j] = sum_k a[k*MR + r] * b[k*NR + j],  summed in increasing k;  c[r][j] by store_rule.
template <int MR, int NR>
struct ScalarKernel {
  static constexpr int mr = MR;
  static constexpr int nr = NR;

  static void run(int kc, const float* __restrict a, const float* __restrict b, float* __restrict c, int64_t ldc,
                  float alpha, float beta, const float* bias) {
    float acc[MR][NR] = {};
    for (int k = 0; k < kc; ++k) {
      for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NR; ++j) acc[r][j] += a[k * MR + r] * b[k * NR + j];
    }
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) store_rule(c + r * ldc + j, acc[r][j], alpha, beta, bias ? bias + j : nullptr);
  }
};

}  // namespace tessera::kernels::gemm_impl
