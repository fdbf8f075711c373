// What one float GEMM is (its sizes, operands, scalars and epilogue, and the row or column slices the drivers
// cut it into), and the per-call scratch its panels are packed into.
// Assumes: row-major operands with row strides of at least their row length; M, N, K >= 0.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <new>

#include "tessera/kernels/gemm/epilogue.hpp"

namespace tessera::kernels::gemm_impl {

// One GEMM: C (M,N) = act(alpha * op(A) op(B) + beta * C + bias), row-major with row strides lda, ldb, ldc.
struct Problem {
  bool trans_a, trans_b;
  int M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  GemmEpilogue epilogue;

  double flops() const { return 2.0 * M * N * K; }

  // Rows [r0, r0 + rows) of op(A), C and the pre-activation, as a problem of its own.
  Problem row_slice(int r0, int rows) const {
    Problem slice = *this;
    slice.M = rows;
    slice.A = trans_a ? A + r0 : A + r0 * lda;
    slice.C = C + r0 * ldc;
    if (slice.epilogue.pre_activation) slice.epilogue.pre_activation += r0 * ldc;
    return slice;
  }

  // Columns [j0, j0 + cols) of op(B), C, the bias and the pre-activation, as a problem of its own.
  Problem column_slice(int j0, int cols) const {
    Problem slice = *this;
    slice.N = cols;
    slice.B = trans_b ? B + j0 * ldb : B + j0;
    slice.C = C + j0;
    if (slice.epilogue.bias) slice.epilogue.bias += j0;
    if (slice.epilogue.pre_activation) slice.epilogue.pre_activation += j0;
    return slice;
  }
};

// The Problem of the BLAS-style arguments of gemm / gemm_ex (see kernels/gemm/gemm.hpp).
inline Problem make_problem(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                            const float* B, int ldb, float beta, float* C, int ldc, const GemmEpilogue& epilogue) {
  assert(M >= 0 && N >= 0 && K >= 0);
  assert(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N);
  return Problem{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue};
}

// 64-byte aligned scratch for packed panels, owned by one call: never static, so concurrent calls are safe.
class PackBuffer {
 public:
  explicit PackBuffer(int64_t floats)
      : data_(static_cast<float*>(
            ::operator new(size_t(std::max<int64_t>(floats, 16)) * sizeof(float), std::align_val_t{64}))) {}
  ~PackBuffer() { ::operator delete(data_, std::align_val_t{64}); }
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  float* data() const { return data_; }

 private:
  float* data_;
};

}  // namespace tessera::kernels::gemm_impl
