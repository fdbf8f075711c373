// Layer normalisation over the last dimension, forward and backward, SIMD over a row and OpenMP over rows.
// Layout: inp, out, dout, dinp are (rows, cols) row-major; weight, bias, dweight, dbias are (cols); mean, rstd (rows).
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <memory>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

// Rows per chunk of layer_norm_backward's weight/bias reduction: partial sums are formed per chunk and added
// in chunk order, so dweight and dbias do not depend on the thread count.
inline constexpr int kLayerNormChunkRows = 32;

// out = (x - mean) * rstd * weight + bias per row, mean = sum x / cols, rstd = 1 / sqrt(var + eps) with the
// biased variance var = sum (x - mean)^2 / cols. The statistics take two passes over the row (sum, then squared
// deviations), which avoids the cancellation of sum/sum-of-squares; the row stays in L1, so memory is read once.
// inp, out are (rows, cols); weight, bias are (cols) or null (1 and 0); mean, rstd are (rows) or null (not saved).
template <class V = simd::VecNative>
inline void layer_norm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                               const float* bias, int rows, int cols, float eps) {
  assert(rows >= 0 && cols >= 1);
  simd::parallel_rows(rows, cols, [&](int r) {
    const float* x = inp + int64_t{r} * cols;
    float* y = out + int64_t{r} * cols;
    const float m = simd::row_sum<V>(x, cols) / static_cast<float>(cols);
    const V vm = V::broadcast(m);
    const float square_sum = reduce_add(simd::reduce_chunks<V>(
        cols, V::broadcast(0.0f),
        [&](const simd::Chunk& ch) {
          const V d = simd::load_chunk<V>(x, ch, m) - vm;
          return d * d;
        },
        simd::add<V>));
    const float s = 1.0f / std::sqrt(square_sum / static_cast<float>(cols) + eps);
    const V vs = V::broadcast(s);
    simd::for_each_chunk<V>(cols, [&](const simd::Chunk& ch) {
      V v = (simd::load_chunk<V>(x, ch) - vm) * vs;
      if (weight) v = v * simd::load_chunk<V>(weight, ch);
      if (bias) v = v + simd::load_chunk<V>(bias, ch);
      simd::store_chunk(y, ch, v);
    });
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = s;
  });
}

// With xhat = (x - mean) * rstd and g = dout * weight:
//   dinp    += (g - mean_j(g) - xhat * mean_j(g * xhat)) * rstd
//   dweight += sum over rows of dout * xhat,  dbias += sum over rows of dout.
// dinp, dout, inp are (rows, cols); weight is (cols) or null (ones); mean, rstd are (rows) from the forward;
// dweight, dbias are (cols) or null (not wanted). Row chunks of kLayerNormChunkRows reduce into their own
// partial buffers in parallel; the partials are then added into dweight/dbias in chunk order.
template <class V = simd::VecNative>
inline void layer_norm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                const float* weight, const float* mean, const float* rstd, int rows, int cols) {
  assert(rows >= 0 && cols >= 1);
  const int chunks = (rows + kLayerNormChunkRows - 1) / kLayerNormChunkRows;
  const bool want_params = dweight != nullptr || dbias != nullptr;
  const int64_t partial_stride = 2 * int64_t{cols};  // per chunk: dweight partial, then dbias partial
  std::unique_ptr<float[]> partials(want_params ? new float[chunks * partial_stride] : nullptr);
  const float inv_cols = 1.0f / static_cast<float>(cols);
  struct Sums {
    V g, gx;  // sum of g = dout * weight, sum of g * xhat
  };
#pragma omp parallel for schedule(dynamic) if (int64_t{rows} * cols >= simd::kParallelMinElements)
  for (int chunk = 0; chunk < chunks; ++chunk) {
    float* pw = want_params ? partials.get() + chunk * partial_stride : nullptr;
    float* pb = want_params ? pw + cols : nullptr;
    if (want_params)
      for (int64_t c = 0; c < partial_stride; ++c) pw[c] = 0.0f;
    const int row_end = std::min(rows, (chunk + 1) * kLayerNormChunkRows);
    for (int r = chunk * kLayerNormChunkRows; r < row_end; ++r) {
      const int64_t offset = int64_t{r} * cols;
      const float* x = inp + offset;
      const float* g = dout + offset;
      float* dx = dinp + offset;
      const V vm = V::broadcast(mean[r]);
      const V vs = V::broadcast(rstd[r]);
      const Sums zero{V::broadcast(0.0f), V::broadcast(0.0f)};
      const Sums sums = simd::reduce_chunks<V>(
          cols, zero,
          [&](const simd::Chunk& ch) {
            const V xhat = (simd::load_chunk<V>(x, ch) - vm) * vs;
            V gw = simd::load_chunk<V>(g, ch);
            if (weight) gw = gw * simd::load_chunk<V>(weight, ch);
            return Sums{gw, gw * xhat};
          },
          [](const Sums& a, const Sums& b) {
            return Sums{a.g + b.g, a.gx + b.gx};
          });
      const V g_mean = V::broadcast(reduce_add(sums.g) * inv_cols);
      const V gx_mean = V::broadcast(reduce_add(sums.gx) * inv_cols);
      simd::for_each_chunk<V>(cols, [&](const simd::Chunk& ch) {
        const V xhat = (simd::load_chunk<V>(x, ch) - vm) * vs;
        const V go = simd::load_chunk<V>(g, ch);
        const V gw = weight ? go * simd::load_chunk<V>(weight, ch) : go;
        const V d = fnmadd(xhat, gx_mean, gw - g_mean);
        simd::store_chunk(dx, ch, fmadd(d, vs, simd::load_chunk<V>(dx, ch)));
        if (want_params) {
          simd::store_chunk(pw, ch, fmadd(go, xhat, simd::load_chunk<V>(pw, ch)));
          simd::store_chunk(pb, ch, simd::load_chunk<V>(pb, ch) + go);
        }
      });
    }
  }
  if (!want_params) return;
  for (int chunk = 0; chunk < chunks; ++chunk) {
    const float* pw = partials.get() + chunk * partial_stride;
    const float* pb = pw + cols;
    simd::for_each_chunk<V>(cols, [&](const simd::Chunk& ch) {
      if (dweight) simd::store_chunk(dweight, ch, simd::load_chunk<V>(dweight, ch) + simd::load_chunk<V>(pw, ch));
      if (dbias) simd::store_chunk(dbias, ch, simd::load_chunk<V>(dbias, ch) + simd::load_chunk<V>(pb, ch));
    });
  }
}

}  // namespace tessera::kernels
