// AVX2 + FMA vector type for the GEMM micro-kernel (8 floats per ymm register) and the 6x16 kernel built on it.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include "tessera/kernels/gemm/microkernel_simd.hpp"

namespace tessera::kernels::gemm_impl {

struct Avx2Vec {
  using reg = __m256;
  static constexpr int width = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
};

// 6 rows x 16 columns: 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
using Avx2Kernel = SimdKernel<Avx2Vec, 6, 2>;

}  // namespace tessera::kernels::gemm_impl
#endif
