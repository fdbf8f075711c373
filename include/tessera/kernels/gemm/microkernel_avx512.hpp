// The AVX-512 GEMM micro-kernel: SimdKernel on simd::VecAvx512 (16 floats per zmm register), 12 rows x 32 columns.
#pragma once

#include "tessera/kernels/gemm/microkernel_simd.hpp"

#if defined(__AVX512F__)
namespace tessera::kernels::gemm_impl {

// 24 accumulators + 2 B vectors + 1 broadcast of the 32 zmm registers.
using Avx512Kernel = SimdKernel<simd::VecAvx512, 12, 2>;

}  // namespace tessera::kernels::gemm_impl
#endif
