// Cross-entropy of logits against class targets, fused with log-softmax, with PyTorch's label smoothing;
// forward and backward, SIMD over a row of classes and OpenMP over rows.
// Layout: logits, probs, dlogits are (rows, classes) row-major; targets, losses, dlosses are (rows).
#pragma once

#include <cassert>
#include <cmath>
#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

// Per row, with p = softmax(x), smoothing s and q = (1 - s) onehot(target) + s / classes:
//   losses[r] = -sum_c q_c log p_c = (1 - s)(lse - x_target) + s (lse - mean_c x_c),  lse = log sum_c e^{x_c}.
// The mean-reduced loss of torch.nn.functional.cross_entropy(logits, targets, label_smoothing=s) is
// sum_r losses[r] / rows: the caller divides (and passes dlosses[r] = dloss / rows to the backward).
// logits is (rows, classes); targets is (rows) with values in [0, classes); losses is (rows);
// probs is (rows, classes) and receives p for the backward, or is null (loss only).
template <class V = simd::VecNative>
inline void cross_entropy_forward(float* losses, float* probs, const float* logits, const int64_t* targets, int rows,
                                  int classes, float label_smoothing) {
  assert(rows >= 0 && classes >= 1);
  simd::parallel_rows(rows, classes, [&](int r) {
    const float* x = logits + int64_t{r} * classes;
    const int64_t target = targets[r];
    assert(target >= 0 && target < classes);
    const float m = simd::row_max<V>(x, classes);
    const float mean_x = simd::row_sum<V>(x, classes) / static_cast<float>(classes);
    float exp_sum;
    if (probs) {
      float* p = probs + int64_t{r} * classes;
      exp_sum = simd::row_exp_store<V>(p, x, m, classes);
      simd::row_scale<V>(p, p, 1.0f / exp_sum, classes);
    } else {
      exp_sum = simd::row_exp_sum<V>(x, m, classes);
    }
    const float log_sum = std::log(exp_sum);  // lse - m
    const float nll = (m - x[target]) + log_sum;
    const float smooth = (m - mean_x) + log_sum;
    losses[r] = (1.0f - label_smoothing) * nll + label_smoothing * smooth;
  });
}

// dlogits[r, c] += dlosses[r] * (p_c - q_c), q as in the forward.
// dlogits, probs (from the forward) are (rows, classes); dlosses, targets are (rows).
template <class V = simd::VecNative>
inline void cross_entropy_backward(float* dlogits, const float* dlosses, const float* probs, const int64_t* targets,
                                   int rows, int classes, float label_smoothing) {
  assert(rows >= 0 && classes >= 1);
  const float off_target = label_smoothing / static_cast<float>(classes);
  const float on_target = 1.0f - label_smoothing + off_target;
  simd::parallel_rows(rows, classes, [&](int r) {
    const int64_t offset = int64_t{r} * classes;
    const float* p = probs + offset;
    float* dx = dlogits + offset;
    const int64_t target = targets[r];
    assert(target >= 0 && target < classes);
    const float d = dlosses[r];
    const float dx_target = dx[target];
    const V vd = V::broadcast(d), vq = V::broadcast(off_target);
    simd::for_each_chunk<V>(classes, [&](const simd::Chunk& ch) {
      simd::store_chunk(dx, ch, fmadd(vd, simd::load_chunk<V>(p, ch) - vq, simd::load_chunk<V>(dx, ch)));
    });
    dx[target] = dx_target + d * (p[target] - on_target);
  });
}

}  // namespace tessera::kernels
