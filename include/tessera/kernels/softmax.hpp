// Row softmax and log-softmax over the last dimension, forward and backward, SIMD over a row and OpenMP over rows.
// Layout: inp, out, dout, dinp are (rows, cols) row-major; every row is normalised on its own.
#pragma once

#include <cassert>
#include <cmath>
#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

// out[r, :] = softmax(inp[r, :]) = e^{x - max x} / sum e^{x - max x}.
// inp is (rows, cols), out is (rows, cols); out may alias inp.
template <class V = simd::VecNative>
inline void softmax_forward(float* out, const float* inp, int rows, int cols) {
  assert(rows >= 0 && cols >= 1);
#pragma omp parallel for schedule(dynamic, simd::rows_per_task(cols)) \
    if (int64_t{rows} * cols >= simd::kParallelMinElements)
  for (int r = 0; r < rows; ++r) {
    const float* x = inp + int64_t{r} * cols;
    float* y = out + int64_t{r} * cols;
    const float m = simd::row_max<V>(x, cols);
    const float sum = simd::row_exp_store<V>(y, x, m, cols);
    simd::row_scale<V>(y, y, 1.0f / sum, cols);
  }
}

// dinp += out * (dout - sum_j dout_j out_j), row by row.
// dinp, dout and out (the softmax_forward result) are (rows, cols).
template <class V = simd::VecNative>
inline void softmax_backward(float* dinp, const float* dout, const float* out, int rows, int cols) {
  assert(rows >= 0 && cols >= 1);
#pragma omp parallel for schedule(dynamic, simd::rows_per_task(cols)) \
    if (int64_t{rows} * cols >= simd::kParallelMinElements)
  for (int r = 0; r < rows; ++r) {
    const int64_t offset = int64_t{r} * cols;
    const float* g = dout + offset;
    const float* y = out + offset;
    float* dx = dinp + offset;
    const V dot = V::broadcast(simd::row_dot<V>(g, y, cols));
    simd::for_each_chunk<V>(cols, [&](const simd::Chunk& ch) {
      const V d = fmadd(simd::load_chunk<V>(y, ch), simd::load_chunk<V>(g, ch) - dot, simd::load_chunk<V>(dx, ch));
      simd::store_chunk(dx, ch, d);
    });
  }
}

// out[r, :] = log_softmax(inp[r, :]) = (x - max x) - log sum e^{x - max x}.
// inp is (rows, cols), out is (rows, cols); out may alias inp.
template <class V = simd::VecNative>
inline void log_softmax_forward(float* out, const float* inp, int rows, int cols) {
  assert(rows >= 0 && cols >= 1);
#pragma omp parallel for schedule(dynamic, simd::rows_per_task(cols)) \
    if (int64_t{rows} * cols >= simd::kParallelMinElements)
  for (int r = 0; r < rows; ++r) {
    const float* x = inp + int64_t{r} * cols;
    float* y = out + int64_t{r} * cols;
    const float m = simd::row_max<V>(x, cols);
    const V vm = V::broadcast(m);
    const V log_sum = V::broadcast(std::log(simd::row_exp_sum<V>(x, m, cols)));
    simd::for_each_chunk<V>(
        cols, [&](const simd::Chunk& ch) { simd::store_chunk(y, ch, (simd::load_chunk<V>(x, ch) - vm) - log_sum); });
  }
}

// dinp += dout - e^{out} * sum_j dout_j, row by row.
// dinp, dout and out (the log_softmax_forward result) are (rows, cols).
template <class V = simd::VecNative>
inline void log_softmax_backward(float* dinp, const float* dout, const float* out, int rows, int cols) {
  assert(rows >= 0 && cols >= 1);
#pragma omp parallel for schedule(dynamic, simd::rows_per_task(cols)) \
    if (int64_t{rows} * cols >= simd::kParallelMinElements)
  for (int r = 0; r < rows; ++r) {
    const int64_t offset = int64_t{r} * cols;
    const float* g = dout + offset;
    const float* y = out + offset;
    float* dx = dinp + offset;
    const V sum = V::broadcast(simd::row_sum<V>(g, cols));
    simd::for_each_chunk<V>(cols, [&](const simd::Chunk& ch) {
      const V p = exp_nonpositive(simd::load_chunk<V>(y, ch));  // log-probabilities are <= 0
      simd::store_chunk(dx, ch, fnmadd(p, sum, simd::load_chunk<V>(dx, ch) + simd::load_chunk<V>(g, ch)));
    });
  }
}

}  // namespace tessera::kernels
