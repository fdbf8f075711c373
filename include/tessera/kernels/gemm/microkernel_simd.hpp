// The register-blocked GEMM micro-kernel written once over a vector type V of kernels/simd.hpp (VecAvx2,
// VecAvx512, or VecPair in tests): MR rows by NV vectors of accumulators live in registers for the whole depth.
#pragma once

#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels::gemm_impl {

// C tile (MR, NR = NV * V::width) at c (row stride ldc) from packed slivers a (kc,MR) and b (kc,NR),
// bias (NR) or nullptr. Per k: NV vectors of b[k, :] are loaded, each a[k, r] is broadcast and
// fused-multiply-added into acc[r][:], so acc[r][j] = sum_k a[k*MR + r] * b[k*NR + j] in increasing k (one
// FMA per term). Then every element is written by store_rule (microkernel_scalar.hpp), lane for lane the
// same operations: with beta == 0, C is not read.
template <class V, int MR, int NV>
struct SimdKernel {
  static constexpr int mr = MR;
  static constexpr int nr = NV * V::width;

  static void run(int kc, const float* __restrict a, const float* __restrict b, float* __restrict c, int64_t ldc,
                  float alpha, float beta, const float* bias) {
    V acc[MR][NV];
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) __builtin_prefetch(c + r * ldc, 1);

#pragma GCC unroll 2
    for (int k = 0; k < kc; ++k) {
      V bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * V::width);
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) {
        const V av = V::load_broadcast(a + r);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = fmadd(av, bv[v], acc[r][v]);
      }
      a += MR;
      b += nr;
    }

    const V alpha_v = V::broadcast(alpha);
    V bias_v[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bias_v[v] = bias ? V::load(bias + v * V::width) : V::zero();
    if (beta == 0.0f) {
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
          (bias ? fmadd(alpha_v, acc[r][v], bias_v[v]) : alpha_v * acc[r][v]).store(c + r * ldc + v * V::width);
    } else {
      const V beta_v = V::broadcast(beta);
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          float* p = c + r * ldc + v * V::width;
          const V x = fmadd(beta_v, V::load(p), alpha_v * acc[r][v]);
          (bias ? x + bias_v[v] : x).store(p);
        }
    }
  }
};

}  // namespace tessera::kernels::gemm_impl
