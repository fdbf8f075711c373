// The fast float GEMM, the public entry point of kernels/gemm/: gemm, gemm_ex (fused bias/GELU epilogue),
// gemm_batched, and matmul_any / matmul_any_ex / matmul_any_batched for code templated on float or double.
// The folder, in BLIS's shape: blocking.hpp (constants), problem.hpp (one GEMM), plan.hpp (blocking
// decisions), front.hpp (the path of one GEMM), driver.hpp (the loops around the macro-kernel),
// macro_kernel.hpp, microkernel_*.hpp, pack.hpp, epilogue.hpp, deep.hpp (deep K split), batched.hpp.
#pragma once

#include <cassert>
#include <cstdint>
#include <type_traits>

#include "tessera/core/threads.hpp"
#include "tessera/kernels/gemm/batched.hpp"
#include "tessera/kernels/gemm/epilogue.hpp"
#include "tessera/kernels/gemm/front.hpp"
#include "tessera/kernels/gemm/microkernel_avx2.hpp"
#include "tessera/kernels/gemm/microkernel_avx512.hpp"
#include "tessera/kernels/gemm/microkernel_scalar.hpp"
#include "tessera/kernels/gemm/problem.hpp"
#include "tessera/kernels/reference/gemm.hpp"

namespace tessera::kernels {
namespace gemm_impl {

#if defined(__AVX512F__)
using DefaultKernel = Avx512Kernel;
#elif defined(__AVX2__) && defined(__FMA__)
using DefaultKernel = Avx2Kernel;
#else
using DefaultKernel = ScalarKernel<4, 8>;
#endif

}  // namespace gemm_impl

// C = alpha * op(A) op(B) + beta * C in float, row-major.
// op(A) is (M,K): A is stored (M,K) with row stride lda, or (K,M) when trans_a.
// op(B) is (K,N): B is stored (K,N) with row stride ldb, or (N,K) when trans_b.
// C is (M,N) with row stride ldc. beta == 0 overwrites C without reading it; K == 0 or alpha == 0 gives
// C = beta * C without reading A or B. Uses tessera::num_threads() threads; results are bit-identical for
// any thread count.
inline void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                 int ldb, float beta, float* C, int ldc) {
  gemm_impl::gemm_with<gemm_impl::DefaultKernel>(
      gemm_impl::make_problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, GemmEpilogue{}),
      tessera::num_threads());
}

// gemm with a fused epilogue: C = act(alpha * op(A) op(B) + beta * C + bias), see GemmEpilogue.
inline void gemm_ex(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc, const GemmEpilogue& epilogue) {
  gemm_impl::gemm_with<gemm_impl::DefaultKernel>(
      gemm_impl::make_problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue),
      tessera::num_threads());
}

// `batch` independent gemm calls: item b uses A + b*stride_a, B + b*stride_b, C + b*stride_c (strides in
// elements), each with the sizes and row strides of gemm. Threads share out (item, row slice) units.
inline void gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                         int64_t stride_a, const float* B, int ldb, int64_t stride_b, float beta, float* C, int ldc,
                         int64_t stride_c, int batch) {
  assert(batch >= 0);
  gemm_impl::gemm_batched_with<gemm_impl::DefaultKernel>(
      gemm_impl::make_problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, GemmEpilogue{}), stride_a,
      stride_b, stride_c, batch, tessera::num_threads());
}

// matmul_any, matmul_any_ex, matmul_any_batched: the GEMM for code templated on T (float or double).
// float goes to the fast gemm / gemm_ex / gemm_batched; double goes to reference::gemm (plain loops,
// single-threaded: meant for gradient checks on small shapes). Same arguments and contract as gemm.
template <class T>
inline void matmul_any(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                       int ldb, T beta, T* C, int ldc) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "matmul_any: T must be float or double");
  if constexpr (std::is_same_v<T, float>)
    gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    reference::gemm<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
inline void matmul_any_ex(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                          int ldb, T beta, T* C, int ldc, const GemmEpilogueT<T>& epilogue) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "matmul_any_ex: T must be float or double");
  if constexpr (std::is_same_v<T, float>)
    gemm_ex(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue);
  else
    reference::gemm_ex<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue.bias, epilogue.gelu,
                          epilogue.pre_activation);
}

template <class T>
inline void matmul_any_batched(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
                               int64_t stride_a, const T* B, int ldb, int64_t stride_b, T beta, T* C, int ldc,
                               int64_t stride_c, int batch) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "matmul_any_batched: T must be float or double");
  if constexpr (std::is_same_v<T, float>) {
    gemm_batched(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch);
  } else {
    for (int b = 0; b < batch; ++b)
      reference::gemm<T>(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
                         C + b * stride_c, ldc);
  }
}

}  // namespace tessera::kernels
