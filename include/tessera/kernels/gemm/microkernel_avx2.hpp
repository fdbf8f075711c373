// The AVX2 + FMA GEMM micro-kernel: SimdKernel on simd::VecAvx2 (8 floats per ymm register), 6 rows x 16 columns.
#pragma once

#include "tessera/kernels/gemm/microkernel_simd.hpp"

#if defined(__AVX2__) && defined(__FMA__)
namespace tessera::kernels::gemm_impl {

// 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
using Avx2Kernel = SimdKernel<simd::VecAvx2, 6, 2>;

}  // namespace tessera::kernels::gemm_impl
#endif
