// AVX-512 vector type for the GEMM micro-kernel (16 floats per zmm register) and the 12x32 kernel built on it.
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>

#include "tessera/kernels/gemm/microkernel_simd.hpp"

namespace tessera::kernels::gemm_impl {

struct Avx512Vec {
  using reg = __m512;
  static constexpr int width = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
};

// 12 rows x 32 columns: 24 accumulators + 2 B vectors + 1 broadcast of the 32 zmm registers.
using Avx512Kernel = SimdKernel<Avx512Vec, 12, 2>;

}  // namespace tessera::kernels::gemm_impl
#endif
