// Row softmax and log-softmax over the last dimension, forward and backward, SIMD over a row and OpenMP over rows.
// Layout: inp, out, dout, dinp are (rows, cols) row-major; every row is normalised on its own.
#pragma once

#include <cassert>
#include <cmath>
#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

namespace softmax_detail {

// Calls row(dx, g, y) with row r of dinp, dout and out for every row r, rows threaded as simd::parallel_rows.
template <class Row>
inline void backward_rows(float* dinp, const float* dout, const float* out, int rows, int cols, Row&& row) {
  assert(rows >= 0 && cols >= 1);
  simd::parallel_rows(rows, cols, [&](int r) {
    const int64_t offset = int64_t{r} * cols;
    row(dinp + offset, dout + offset, out + offset);
  });
}

}  // namespace softmax_detail

// y = softmax(x) over one row of cols floats; y may alias x. The one softmax of a row: softmax_forward and the
// fused attention both call it, so ops::softmax and attention give the same bits for the same row.
// Whole vectors, then one masked vector for the tail; its exponentials stay in a register until the final scaling
// (an overlapping last vector would reload what was just stored, and stall on store forwarding for short rows).
template <class V = simd::VecNative>
inline void softmax_forward_row(float* y, const float* x, int64_t cols) {
  constexpr int w = V::width;
  const int64_t full = cols / w * w;
  const int tail = static_cast<int>(cols - full);
  V vmax = V::broadcast(simd::kNegInf);
  for (int64_t j = 0; j < full; j += w) vmax = max(vmax, V::load(x + j));
  if (tail) vmax = max(vmax, V::load_partial(x + full, tail, simd::kNegInf));
  const V m = V::broadcast(reduce_max(vmax));
  V sum = V::zero();
  for (int64_t j = 0; j < full; j += w) {
    const V e = exp_nonpositive(V::load(x + j) - m);
    e.store(y + j);
    sum = sum + e;
  }
  V e_tail = V::zero();
  if (tail) {
    e_tail = exp_nonpositive(V::load_partial(x + full, tail, simd::kNegInf) - m);
    sum = sum + e_tail;
  }
  const V inv = V::broadcast(1.0f / reduce_add(sum));
  for (int64_t j = 0; j < full; j += w) (V::load(y + j) * inv).store(y + j);
  if (tail) (e_tail * inv).store_partial(y + full, tail);
}

// out[r, :] = softmax(inp[r, :]) = e^{x - max x} / sum e^{x - max x}.
// inp is (rows, cols), out is (rows, cols); out may alias inp.
template <class V = simd::VecNative>
inline void softmax_forward(float* out, const float* inp, int rows, int cols) {
  assert(rows >= 0 && cols >= 1);
  simd::parallel_rows(rows, cols, [&](int r) {
    softmax_forward_row<V>(out + int64_t{r} * cols, inp + int64_t{r} * cols, cols);
  });
}

// dinp += out * (dout - sum_j dout_j out_j), row by row.
// dinp, dout and out (the softmax_forward result) are (rows, cols).
template <class V = simd::VecNative>
inline void softmax_backward(float* dinp, const float* dout, const float* out, int rows, int cols) {
  softmax_detail::backward_rows(dinp, dout, out, rows, cols, [&](float* dx, const float* g, const float* y) {
    const V dot = V::broadcast(simd::row_dot<V>(g, y, cols));
    simd::for_each_chunk<V>(cols, [&](const simd::Chunk& ch) {
      const V d = fmadd(simd::load_chunk<V>(y, ch), simd::load_chunk<V>(g, ch) - dot, simd::load_chunk<V>(dx, ch));
      simd::store_chunk(dx, ch, d);
    });
  });
}

// out[r, :] = log_softmax(inp[r, :]) = (x - max x) - log sum e^{x - max x}.
// inp is (rows, cols), out is (rows, cols); out may alias inp.
template <class V = simd::VecNative>
inline void log_softmax_forward(float* out, const float* inp, int rows, int cols) {
  assert(rows >= 0 && cols >= 1);
  simd::parallel_rows(rows, cols, [&](int r) {
    const float* x = inp + int64_t{r} * cols;
    float* y = out + int64_t{r} * cols;
    const float m = simd::row_max<V>(x, cols);
    const V vm = V::broadcast(m);
    const V log_sum = V::broadcast(std::log(simd::row_exp_sum<V>(x, m, cols)));
    simd::for_each_chunk<V>(
        cols, [&](const simd::Chunk& ch) { simd::store_chunk(y, ch, (simd::load_chunk<V>(x, ch) - vm) - log_sum); });
  });
}

// dinp += dout - e^{out} * sum_j dout_j, row by row.
// dinp, dout and out (the log_softmax_forward result) are (rows, cols).
template <class V = simd::VecNative>
inline void log_softmax_backward(float* dinp, const float* dout, const float* out, int rows, int cols) {
  softmax_detail::backward_rows(dinp, dout, out, rows, cols, [&](float* dx, const float* g, const float* y) {
    const V sum = V::broadcast(simd::row_sum<V>(g, cols));
    simd::for_each_chunk<V>(cols, [&](const simd::Chunk& ch) {
      const V p = exp_nonpositive(simd::load_chunk<V>(y, ch));  // log-probabilities are <= 0
      simd::store_chunk(dx, ch, fnmadd(p, sum, simd::load_chunk<V>(dx, ch) + simd::load_chunk<V>(g, ch)));
    });
  });
}

}  // namespace tessera::kernels
