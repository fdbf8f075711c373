// Portable GEMM micro-kernel in plain C++ (the fallback without AVX2/AVX-512), and the store rule that
// every micro-kernel shares.
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::kernels::gemm_impl {

// The one rule for writing a finished sum into C, used by every micro-kernel and by edge tiles, so a
// value of C has the same bits whichever tile shape produced it:
//   beta == 0:  c = alpha * acc            (c is not read)
//   otherwise:  c = fma(beta, c, alpha * acc)
inline void store_rule(float* c, float alpha_acc, float beta) { *c = beta == 0.0f ? alpha_acc : std::fma(beta, *c, alpha_acc); }

// C tile (MR,NR) at c (row stride ldc) from packed slivers a (kc,MR) and b (kc,NR):
//   acc[r][j] = sum_k a[k*MR + r] * b[k*NR + j],  summed in increasing k;  c[r][j] = store_rule(...).
template <int MR, int NR>
struct ScalarKernel {
  static constexpr int mr = MR;
  static constexpr int nr = NR;

  static void run(int kc, const float* __restrict a, const float* __restrict b, float* __restrict c, int64_t ldc,
                  float alpha, float beta) {
    float acc[MR][NR] = {};
    for (int k = 0; k < kc; ++k) {
      for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NR; ++j) acc[r][j] += a[k * MR + r] * b[k * NR + j];
    }
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) store_rule(c + r * ldc + j, alpha * acc[r][j], beta);
  }
};

}  // namespace tessera::kernels::gemm_impl
