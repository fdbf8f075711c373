// Reference softmax and log-softmax over the last dimension: plain loops, templated on T (test oracles).
// Layout: inp, out, dout, dinp are (rows, cols) row-major.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace tessera::kernels::reference {

// The two numbers both forwards need of a row x: its max m and sum_j e^{x_j - m}, summed in column order.
template <class T>
struct MaxAndExpSum {
  T max, exp_sum;
};

template <class T>
MaxAndExpSum<T> max_and_exp_sum(const T* x, int cols) {
  T m = x[0];
  for (int c = 1; c < cols; ++c) m = std::max(m, x[c]);
  T sum = 0;
  for (int c = 0; c < cols; ++c) sum += std::exp(x[c] - m);
  return {m, sum};
}

// out[r, c] = e^{x_c - max x} / sum_j e^{x_j - max x}.
template <class T>
void softmax_forward(T* out, const T* inp, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    const T* x = inp + static_cast<int64_t>(r) * cols;
    T* y = out + static_cast<int64_t>(r) * cols;
    const auto [m, sum] = max_and_exp_sum(x, cols);
    for (int c = 0; c < cols; ++c) y[c] = std::exp(x[c] - m) / sum;
  }
}

// dinp[r, c] += out_c (dout_c - sum_j dout_j out_j).
template <class T>
void softmax_backward(T* dinp, const T* dout, const T* out, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    const int64_t offset = static_cast<int64_t>(r) * cols;
    T dot = 0;
    for (int c = 0; c < cols; ++c) dot += dout[offset + c] * out[offset + c];
    for (int c = 0; c < cols; ++c) dinp[offset + c] += out[offset + c] * (dout[offset + c] - dot);
  }
}

// out[r, c] = x_c - max x - log sum_j e^{x_j - max x}.
template <class T>
void log_softmax_forward(T* out, const T* inp, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    const T* x = inp + static_cast<int64_t>(r) * cols;
    T* y = out + static_cast<int64_t>(r) * cols;
    const auto [m, sum] = max_and_exp_sum(x, cols);
    const T log_sum = std::log(sum);
    for (int c = 0; c < cols; ++c) y[c] = x[c] - m - log_sum;
  }
}

// dinp[r, c] += dout_c - e^{out_c} sum_j dout_j.
template <class T>
void log_softmax_backward(T* dinp, const T* dout, const T* out, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    const int64_t offset = static_cast<int64_t>(r) * cols;
    T sum = 0;
    for (int c = 0; c < cols; ++c) sum += dout[offset + c];
    for (int c = 0; c < cols; ++c) dinp[offset + c] += dout[offset + c] - std::exp(out[offset + c]) * sum;
  }
}

}  // namespace tessera::kernels::reference
