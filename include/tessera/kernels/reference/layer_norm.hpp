// Reference layer normalisation over the last dimension: plain loops, templated on T (test oracle).
// Layout: inp, out, dout, dinp are (rows, cols) row-major; weight, bias, dweight, dbias (cols); mean, rstd (rows).
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::kernels::reference {

// out = (x - mean) rstd weight + bias, mean = sum x / cols, rstd = 1 / sqrt(sum (x - mean)^2 / cols + eps).
// weight, bias may be null (1 and 0); mean, rstd may be null (not saved).
template <class T>
void layer_norm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, int rows, int cols,
                        T eps) {
  for (int r = 0; r < rows; ++r) {
    const T* x = inp + static_cast<int64_t>(r) * cols;
    T* y = out + static_cast<int64_t>(r) * cols;
    T sum = 0;
    for (int c = 0; c < cols; ++c) sum += x[c];
    const T m = sum / cols;
    T square_sum = 0;
    for (int c = 0; c < cols; ++c) square_sum += (x[c] - m) * (x[c] - m);
    const T s = 1 / std::sqrt(square_sum / cols + eps);
    for (int c = 0; c < cols; ++c) {
      const T xhat = (x[c] - m) * s;
      y[c] = xhat * (weight ? weight[c] : T(1)) + (bias ? bias[c] : T(0));
    }
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = s;
  }
}

// With xhat = (x - mean) rstd and g = dout weight:
//   dinp += (g - mean(g) - xhat mean(g xhat)) rstd,  dweight += sum_rows dout xhat,  dbias += sum_rows dout.
// weight may be null (ones); dweight, dbias may be null (not wanted).
template <class T>
void layer_norm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const T* mean,
                         const T* rstd, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    const int64_t offset = static_cast<int64_t>(r) * cols;
    T g_sum = 0, gx_sum = 0;
    for (int c = 0; c < cols; ++c) {
      const T xhat = (inp[offset + c] - mean[r]) * rstd[r];
      const T g = dout[offset + c] * (weight ? weight[c] : T(1));
      g_sum += g;
      gx_sum += g * xhat;
    }
    const T g_mean = g_sum / cols, gx_mean = gx_sum / cols;
    for (int c = 0; c < cols; ++c) {
      const T xhat = (inp[offset + c] - mean[r]) * rstd[r];
      const T g = dout[offset + c] * (weight ? weight[c] : T(1));
      dinp[offset + c] += (g - g_mean - xhat * gx_mean) * rstd[r];
      if (dweight) dweight[c] += dout[offset + c] * xhat;
      if (dbias) dbias[c] += dout[offset + c];
    }
  }
}

}  // namespace tessera::kernels::reference
