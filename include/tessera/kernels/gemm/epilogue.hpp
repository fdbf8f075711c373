// The fused GEMM epilogue: a per-column bias and the exact (erf) GELU, applied to a finished tile of C
// while it is still in L1.
#pragma once

#include <cmath>
#include <cstdint>

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

inline float gelu_exact(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }

// Applies the epilogue to rows [i0, i0 + rows) and columns [j0, j0 + cols) of C (row stride ldc).
inline void apply_epilogue(const GemmEpilogue& epilogue, float* C, int64_t ldc, int i0, int rows, int j0, int cols) {
  for (int r = 0; r < rows; ++r) {
    const int64_t offset = int64_t(i0 + r) * ldc + j0;
    float* c = C + offset;
    if (epilogue.bias) {
      const float* bias = epilogue.bias + j0;
      for (int j = 0; j < cols; ++j) c[j] += bias[j];
    }
    if (epilogue.gelu) {
      if (epilogue.pre_activation) {
        float* pre = epilogue.pre_activation + offset;
        for (int j = 0; j < cols; ++j) pre[j] = c[j];
      }
      for (int j = 0; j < cols; ++j) c[j] = gelu_exact(c[j]);
    }
  }
}

}  // namespace gemm_impl
}  // namespace tessera::kernels
