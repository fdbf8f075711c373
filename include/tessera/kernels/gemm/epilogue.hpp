// The fused GEMM epilogue: a per-column bias (added by the micro-kernel's store) and the exact (erf) GELU,
// applied to a finished block of C while it is still in cache, vectorised with kernels/simd.hpp.
#pragma once

#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

// What gemm_ex applies after C = alpha * op(A) op(B) + beta * C:  C = act(C + bias).
//   bias: (N) per column of C, or nullptr for none.
//   gelu: act(x) = 0.5 x (1 + erf(x / sqrt(2))); otherwise act is the identity.
//   pre_activation: with gelu, (M,N) with C's row stride ldc, receives x = the value before act (for the
//   backward pass); nullptr to skip. Ignored without gelu.
template <class T>
struct GemmEpilogueT {
  const T* bias = nullptr;
  bool gelu = false;
  T* pre_activation = nullptr;

  bool active() const { return bias != nullptr || gelu; }
};
using GemmEpilogue = GemmEpilogueT<float>;

namespace gemm_impl {

// The activation part of the epilogue on rows [i0, i0 + rows), columns [j0, j0 + cols) of C (row stride
// ldc), whose bias is already added: with gelu, copies x to the pre-activation and writes
// gelu(x) = x Phi(x), computed exactly as kernels::gelu_forward does (simd::normal_cdf_pdf on the same
// vector type), so the fused and the separate GELU give the same bits.
// (The bias is added by the micro-kernel's store, see store_rule.)
inline void apply_activation(const GemmEpilogue& epilogue, float* C, int64_t ldc, int i0, int rows, int j0, int cols) {
  using V = simd::VecNative;
  if (!epilogue.gelu) return;
  for (int r = 0; r < rows; ++r) {
    const int64_t offset = int64_t(i0 + r) * ldc + j0;
    float* c = C + offset;
    float* pre = epilogue.pre_activation ? epilogue.pre_activation + offset : nullptr;
    simd::for_each_chunk<V>(cols, [&](const simd::Chunk& ch) {
      const V x = simd::load_chunk<V>(c, ch);
      if (pre) simd::store_chunk(pre, ch, x);
      simd::store_chunk(c, ch, x * simd::normal_cdf_pdf(x).cdf);
    });
  }
}

}  // namespace gemm_impl
}  // namespace tessera::kernels
