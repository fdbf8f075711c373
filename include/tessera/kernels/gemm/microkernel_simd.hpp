// The register-blocked GEMM micro-kernel written once over a SIMD vector type V (see microkernel_avx2.hpp
// and microkernel_avx512.hpp for V): MR rows by NV vectors of accumulators live in registers for the whole depth.
#pragma once

#include <cstdint>

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
    using reg = typename V::reg;
    reg acc[MR][NV];
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) __builtin_prefetch(c + r * ldc, 1);

#pragma GCC unroll 2
    for (int k = 0; k < kc; ++k) {
      reg bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * V::width);
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) {
        const reg av = V::broadcast(a + r);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = V::fmadd(av, bv[v], acc[r][v]);
      }
      a += MR;
      b += nr;
    }

    const reg alpha_v = V::set1(alpha);
    reg bias_v[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bias_v[v] = bias ? V::load(bias + v * V::width) : V::zero();
    if (beta == 0.0f) {
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
          V::store(c + r * ldc + v * V::width,
                   bias ? V::fmadd(alpha_v, acc[r][v], bias_v[v]) : V::mul(alpha_v, acc[r][v]));
    } else {
      const reg beta_v = V::set1(beta);
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          float* p = c + r * ldc + v * V::width;
          const reg x = V::fmadd(beta_v, V::load(p), V::mul(alpha_v, acc[r][v]));
          V::store(p, bias ? V::add(x, bias_v[v]) : x);
        }
    }
  }
};

}  // namespace tessera::kernels::gemm_impl
