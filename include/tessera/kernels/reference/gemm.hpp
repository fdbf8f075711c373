// Reference GEMM: plain triple loops in T (float or double), the test oracle for kernels/gemm.
// Same contract as the fast kernel, including the fused bias / exact-GELU epilogue of gemm_ex.
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::kernels::reference {

// C = alpha * op(A) op(B) + beta * C, everything row-major.
// op(A) is (M,K): A is stored (M,K) with row stride lda, or (K,M) when trans_a.
// op(B) is (K,N): B is stored (K,N) with row stride ldb, or (N,K) when trans_b.
// C is (M,N) with row stride ldc. beta == 0 overwrites C without reading it, and alpha == 0 does not
// read A or B (as BLAS does).
template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
          T* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      T sum = T(0);
      for (int k = 0; k < K && alpha != T(0); ++k) {
        const T a = trans_a ? A[int64_t(k) * lda + i] : A[int64_t(i) * lda + k];
        const T b = trans_b ? B[int64_t(j) * ldb + k] : B[int64_t(k) * ldb + j];
        sum += a * b;
      }
      T& c = C[int64_t(i) * ldc + j];
      c = beta == T(0) ? alpha * sum : alpha * sum + beta * c;
    }
  }
}

// C = act(alpha * op(A) op(B) + beta * C + bias), bias (N) per column of C or nullptr.
// With gelu, act(x) = 0.5 x (1 + erf(x / sqrt(2))) and pre_activation (M,N, row stride ldc), when not
// nullptr, receives x; without gelu, act is the identity and pre_activation is ignored.
template <class T>
void gemm_ex(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
             T* C, int ldc, const T* bias, bool gelu, T* pre_activation) {
  gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      T& c = C[int64_t(i) * ldc + j];
      if (bias) c += bias[j];
      if (gelu) {
        if (pre_activation) pre_activation[int64_t(i) * ldc + j] = c;
        c = T(0.5) * c * (T(1) + std::erf(c / std::sqrt(T(2))));
      }
    }
  }
}

}  // namespace tessera::kernels::reference
