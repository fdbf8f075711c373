// One AdamW step (decoupled weight decay) over a flat parameter buffer, in PyTorch's order of operations.
// Layout: param, grad, m (first moment), v (second moment) are contiguous buffers of n floats.
#pragma once

#include <cassert>
#include <cmath>
#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

// The per-step scalars of torch.optim.AdamW (single-tensor path), computed in double as Python does and rounded
// to float once, as PyTorch does when it applies a Python float to a float tensor.
struct AdamWScalars {
  float decay;         // 1 - lr * weight_decay
  float beta1_weight;  // 1 - beta1, the lerp weight of m towards grad
  float beta2;         // beta2
  float one_minus_beta2;
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  float eps;
  float neg_step_size;  // -lr / (1 - beta1^step)
};

inline AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int step) {
  const double bias_correction1 = 1.0 - std::pow(beta1, step);
  const double bias_correction2 = 1.0 - std::pow(beta2, step);
  return {static_cast<float>(1.0 - lr * weight_decay),
          static_cast<float>(1.0 - beta1),
          static_cast<float>(beta2),
          static_cast<float>(1.0 - beta2),
          static_cast<float>(std::sqrt(bias_correction2)),
          static_cast<float>(eps),
          static_cast<float>(-(lr / bias_correction1))};
}

// step is the 1-based count of steps taken including this one. Element-wise, in this order:
//   param = param * (1 - lr wd)                                         (mul_)
//   m     = fma(1 - beta1, grad - m, m)                                 (lerp_)
//   v     = fma((1 - beta2) grad, grad, v * beta2)                      (mul_, then addcmul_)
//   denom = sqrt(v) / sqrt(1 - beta2^step) + eps
//   param = param + ((-lr / (1 - beta1^step)) m) / denom               (addcdiv_)
// The SIMD paths round where ATen's CPU kernels do: against torch 2.x's AdamW on an AVX2 machine m and v come out
// bit-identical; param differs only where ATen's vectorised sqrt (not correctly rounded) is an ulp away from the
// IEEE sqrt used here. The scalar fallback follows the same order as far as the compiler does not contract.
// param, grad, m, v are (n); m and v start at zero before step 1.
template <class V = simd::VecNative>
inline void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, double lr, double beta1,
                       double beta2, double eps, double weight_decay, int step) {
  assert(n >= 0 && step >= 1);
  const AdamWScalars s = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  const bool decay = weight_decay != 0.0;
  const V decay_factor = V::broadcast(s.decay), w1 = V::broadcast(s.beta1_weight), b2 = V::broadcast(s.beta2);
  const V one_minus_b2 = V::broadcast(s.one_minus_beta2), bc2_sqrt = V::broadcast(s.bias_correction2_sqrt);
  const V veps = V::broadcast(s.eps), neg_step = V::broadcast(s.neg_step_size);
  simd::parallel_flat_blocks(n, [=](int64_t begin, int64_t count) {
    float *pb = param + begin, *mb = m + begin, *vb = v + begin;
    const float* gb = grad + begin;
    simd::for_each_chunk<V>(count, [=](const simd::Chunk& ch) {
      V p = simd::load_chunk<V>(pb, ch);
      const V g = simd::load_chunk<V>(gb, ch);
      V mi = simd::load_chunk<V>(mb, ch);
      V vi = simd::load_chunk<V>(vb, ch);
      if (decay) p = simd::no_contract(p * decay_factor);
      mi = fmadd(w1, g - mi, mi);
      vi = fmadd(simd::no_contract(one_minus_b2 * g), g, simd::no_contract(vi * b2));
      const V denom = sqrt(vi) / bc2_sqrt + veps;
      p = p + (neg_step * mi) / denom;
      simd::store_chunk(pb, ch, p);
      simd::store_chunk(mb, ch, mi);
      simd::store_chunk(vb, ch, vi);
    });
  });
}

}  // namespace tessera::kernels
