// Fast batch normalisation over NCHW (BatchNorm2d) in float, forward and backward, in training mode (batch
// statistics, running-statistics update) and evaluation mode (fixed statistics); the dispatch:: overloads at the bottom
// pick these for float and the reference for double.
// Legend: B images, C channels, HW = H W pixels per channel of one image, n = B HW values per channel.
// Layout: inp, out, dout, dinp (B, C, HW); weight, bias, dweight, dbias, mean, rstd, running_mean, running_var (C).
// Each channel's sums are formed by one thread, row (b) after row in order, and added in double: the results do not
// depend on the thread count.
#pragma once

#include <cassert>
#include <cmath>
#include <cstdint>

#include "tessera/kernels/reference/batch_norm.hpp"
#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

namespace batch_norm_detail {

// Over the channel's rows: sum of dout, and sum of dout (x - mean).
template <class V>
inline void gradient_sums(double& g_sum, double& gx_sum, const float* dout, const float* inp, float mean, int B, int C,
                          int HW, int c) {
  struct Sums {
    V g, gx;
  };
  const V vm = V::broadcast(mean);
  g_sum = 0.0;
  gx_sum = 0.0;
  for (int b = 0; b < B; ++b) {
    const int64_t offset = (int64_t{b} * C + c) * HW;
    const float* x = inp + offset;
    const float* g = dout + offset;
    const Sums zero{V::broadcast(0.0f), V::broadcast(0.0f)};
    const Sums sums = simd::reduce_chunks<V>(
        HW, zero,
        [&](const simd::Chunk& ch) {
          const V go = simd::load_chunk<V>(g, ch);
          return Sums{go, go * (simd::load_chunk<V>(x, ch, mean) - vm)};
        },
        [](const Sums& a, const Sums& s) {
          return Sums{a.g + s.g, a.gx + s.gx};
        });
    g_sum += reduce_add(sums.g);
    gx_sum += reduce_add(sums.gx);
  }
}

}  // namespace batch_norm_detail

// Training: per channel, mean = sum x / n, biased var = sum (x - mean)^2 / n (two passes: sum, then squared
// deviations), rstd = 1 / sqrt(var + eps); out = x scale + shift with scale = rstd weight, shift = bias - mean scale.
// When given, running_mean = (1 - momentum) running_mean + momentum mean and running_var = (1 - momentum)
// running_var + momentum var n / (n - 1) (needs n > 1). weight, bias may be null (1 and 0); mean, rstd, running_mean,
// running_var may be null. Channels are shared out over the threads.
template <class V = simd::VecNative>
inline void batch_norm_forward(float* out, float* mean, float* rstd, float* running_mean, float* running_var,
                               const float* inp, const float* weight, const float* bias, int B, int C, int HW,
                               float eps, float momentum) {
  assert(B >= 1 && C >= 1 && HW >= 1);
  const int64_t n = int64_t{B} * HW;
  assert(running_var == nullptr || n > 1);
#pragma omp parallel for schedule(dynamic) if (n * C >= simd::kParallelMinElements)
  for (int c = 0; c < C; ++c) {
    double sum = 0.0;
    for (int b = 0; b < B; ++b) sum += simd::row_sum<V>(inp + (int64_t{b} * C + c) * HW, HW);
    const float m = static_cast<float>(sum / static_cast<double>(n));
    const V vm = V::broadcast(m);
    double square_sum = 0.0;
    for (int b = 0; b < B; ++b) {
      const float* x = inp + (int64_t{b} * C + c) * HW;
      square_sum += reduce_add(simd::reduce_chunks<V>(
          HW, V::broadcast(0.0f),
          [&](const simd::Chunk& ch) {
            const V d = simd::load_chunk<V>(x, ch, m) - vm;
            return d * d;
          },
          simd::add<V>));
    }
    const double var = square_sum / static_cast<double>(n);
    const float s = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
    const float scale = s * (weight ? weight[c] : 1.0f);
    const V vscale = V::broadcast(scale), vshift = V::broadcast((bias ? bias[c] : 0.0f) - m * scale);
    for (int b = 0; b < B; ++b) {
      const int64_t offset = (int64_t{b} * C + c) * HW;
      const float* x = inp + offset;
      float* y = out + offset;
      simd::for_each_chunk<V>(HW, [&](const simd::Chunk& ch) {
        simd::store_chunk(y, ch, fmadd(simd::load_chunk<V>(x, ch), vscale, vshift));
      });
    }
    if (mean) mean[c] = m;
    if (rstd) rstd[c] = s;
    if (running_mean) running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * m;
    if (running_var)
      running_var[c] = static_cast<float>((1.0 - double(momentum)) * double(running_var[c]) +
                                          double(momentum) * var * double(n) / double(n - 1));
  }
}

// Evaluation (fixed statistics, mean = running_mean and rstd = 1 / sqrt(running_var + eps) from the caller):
// out = x scale + shift per channel, scale = rstd weight, shift = bias - mean scale. weight, bias may be null.
template <class V = simd::VecNative>
inline void batch_norm_forward_eval(float* out, const float* inp, const float* mean, const float* rstd,
                                    const float* weight, const float* bias, int B, int C, int HW) {
  assert(B >= 0 && C >= 1 && HW >= 1);
#pragma omp parallel for schedule(dynamic, \
                                  simd::rows_per_task(HW)) if (int64_t{B} * C * HW >= simd::kParallelMinElements)
  for (int row = 0; row < B * C; ++row) {
    const int c = row % C;
    const float scale = rstd[c] * (weight ? weight[c] : 1.0f);
    const V vscale = V::broadcast(scale), vshift = V::broadcast((bias ? bias[c] : 0.0f) - mean[c] * scale);
    const float* x = inp + int64_t{row} * HW;
    float* y = out + int64_t{row} * HW;
    simd::for_each_chunk<V>(HW, [&](const simd::Chunk& ch) {
      simd::store_chunk(y, ch, fmadd(simd::load_chunk<V>(x, ch), vscale, vshift));
    });
  }
}

// Training backward, through the batch statistics. With xhat = (x - mean) rstd, sums over the channel's n values:
//   dinp    += weight rstd (dout - sum(dout) / n - xhat sum(dout xhat) / n)
//   dweight += sum(dout xhat),  dbias += sum(dout).
// mean and rstd are the forward's; weight may be null (1); dinp, dweight, dbias may be null (not wanted).
template <class V = simd::VecNative>
inline void batch_norm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                const float* weight, const float* mean, const float* rstd, int B, int C, int HW) {
  assert(B >= 1 && C >= 1 && HW >= 1);
  const int64_t n = int64_t{B} * HW;
#pragma omp parallel for schedule(dynamic) if (n * C >= simd::kParallelMinElements)
  for (int c = 0; c < C; ++c) {
    double g_sum, gx_sum;
    batch_norm_detail::gradient_sums<V>(g_sum, gx_sum, dout, inp, mean[c], B, C, HW, c);
    gx_sum *= double(rstd[c]);  // sum(dout xhat)
    if (dweight) dweight[c] += static_cast<float>(gx_sum);
    if (dbias) dbias[c] += static_cast<float>(g_sum);
    if (!dinp) continue;
    const V vm = V::broadcast(mean[c]), vs = V::broadcast(rstd[c]);
    const V vscale = V::broadcast((weight ? weight[c] : 1.0f) * rstd[c]);
    const V g_mean = V::broadcast(static_cast<float>(g_sum / double(n)));
    const V gx_mean = V::broadcast(static_cast<float>(gx_sum / double(n)));
    for (int b = 0; b < B; ++b) {
      const int64_t offset = (int64_t{b} * C + c) * HW;
      const float* x = inp + offset;
      const float* g = dout + offset;
      float* dx = dinp + offset;
      simd::for_each_chunk<V>(HW, [&](const simd::Chunk& ch) {
        const V xhat = (simd::load_chunk<V>(x, ch) - vm) * vs;
        const V d = fnmadd(xhat, gx_mean, simd::load_chunk<V>(g, ch) - g_mean);
        simd::store_chunk(dx, ch, fmadd(d, vscale, simd::load_chunk<V>(dx, ch)));
      });
    }
  }
}

// Evaluation backward (fixed statistics): dinp += weight rstd dout, dweight += sum(dout xhat), dbias += sum(dout),
// xhat = (x - mean) rstd. Arguments as batch_norm_backward's, mean and rstd being the fixed statistics.
template <class V = simd::VecNative>
inline void batch_norm_backward_eval(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                     const float* weight, const float* mean, const float* rstd, int B, int C, int HW) {
  assert(B >= 0 && C >= 1 && HW >= 1);
#pragma omp parallel for schedule(dynamic) if (int64_t{B} * C * HW >= simd::kParallelMinElements)
  for (int c = 0; c < C; ++c) {
    if (dweight || dbias) {
      double g_sum, gx_sum;
      batch_norm_detail::gradient_sums<V>(g_sum, gx_sum, dout, inp, mean[c], B, C, HW, c);
      if (dweight) dweight[c] += static_cast<float>(gx_sum * double(rstd[c]));
      if (dbias) dbias[c] += static_cast<float>(g_sum);
    }
    if (!dinp) continue;
    const V vscale = V::broadcast((weight ? weight[c] : 1.0f) * rstd[c]);
    for (int b = 0; b < B; ++b) {
      const int64_t offset = (int64_t{b} * C + c) * HW;
      const float* g = dout + offset;
      float* dx = dinp + offset;
      simd::for_each_chunk<V>(HW, [&](const simd::Chunk& ch) {
        simd::store_chunk(dx, ch, fmadd(simd::load_chunk<V>(g, ch), vscale, simd::load_chunk<V>(dx, ch)));
      });
    }
  }
}

}  // namespace tessera::kernels
