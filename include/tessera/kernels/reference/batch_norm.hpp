// Reference batch normalisation over NCHW (BatchNorm2d): plain loops, templated on T (test oracle and the double
// path). Legend: B images, C channels, HW = H W pixels per channel of one image, n = B HW values per channel.
// Layout: inp, out, dout, dinp (B, C, HW); weight, bias, dweight, dbias, mean, rstd, running_mean, running_var (C).
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::kernels::reference {

// Training: per channel c, mean = sum x / n and the biased variance var = sum (x - mean)^2 / n over the batch and
// the pixels; out = (x - mean) rstd weight + bias with rstd = 1 / sqrt(var + eps). When given, the running
// statistics move towards the batch's (PyTorch's update, with the unbiased variance):
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var n / (n - 1)        (needs n > 1)
// weight, bias may be null (1 and 0); mean, rstd (saved for the backward) and running_mean, running_var may be null.
template <class T>
void batch_norm_forward(T* out, T* mean, T* rstd, T* running_mean, T* running_var, const T* inp, const T* weight,
                        const T* bias, int B, int C, int HW, T eps, T momentum) {
  const int64_t n = int64_t{B} * HW;
  for (int c = 0; c < C; ++c) {
    T sum = 0;
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < HW; ++i) sum += inp[(int64_t{b} * C + c) * HW + i];
    const T m = sum / T(n);
    T square_sum = 0;
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < HW; ++i) {
        const T d = inp[(int64_t{b} * C + c) * HW + i] - m;
        square_sum += d * d;
      }
    const T var = square_sum / T(n);
    const T s = 1 / std::sqrt(var + eps);
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < HW; ++i) {
        const int64_t at = (int64_t{b} * C + c) * HW + i;
        out[at] = (inp[at] - m) * s * (weight ? weight[c] : T(1)) + (bias ? bias[c] : T(0));
      }
    if (mean) mean[c] = m;
    if (rstd) rstd[c] = s;
    if (running_mean) running_mean[c] = (1 - momentum) * running_mean[c] + momentum * m;
    if (running_var) running_var[c] = (1 - momentum) * running_var[c] + momentum * var * T(n) / T(n - 1);
  }
}

// Evaluation (or any fixed statistics): out = (x - mean[c]) rstd[c] weight[c] + bias[c], with mean = running_mean
// and rstd = 1 / sqrt(running_var + eps) computed by the caller. weight, bias may be null (1 and 0).
template <class T>
void batch_norm_forward_eval(T* out, const T* inp, const T* mean, const T* rstd, const T* weight, const T* bias, int B,
                             int C, int HW) {
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c)
      for (int i = 0; i < HW; ++i) {
        const int64_t at = (int64_t{b} * C + c) * HW + i;
        out[at] = (inp[at] - mean[c]) * rstd[c] * (weight ? weight[c] : T(1)) + (bias ? bias[c] : T(0));
      }
}

// Training backward, through the batch statistics. With xhat = (x - mean) rstd and sums over the channel's n values:
//   dinp    += weight rstd (dout - sum(dout) / n - xhat sum(dout xhat) / n)
//   dweight += sum(dout xhat),  dbias += sum(dout).
// mean and rstd are the forward's; weight may be null (1); dinp, dweight, dbias may be null (not wanted).
template <class T>
void batch_norm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const T* mean,
                         const T* rstd, int B, int C, int HW) {
  const int64_t n = int64_t{B} * HW;
  for (int c = 0; c < C; ++c) {
    T g_sum = 0, gx_sum = 0;
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < HW; ++i) {
        const int64_t at = (int64_t{b} * C + c) * HW + i;
        g_sum += dout[at];
        gx_sum += dout[at] * (inp[at] - mean[c]) * rstd[c];
      }
    if (dweight) dweight[c] += gx_sum;
    if (dbias) dbias[c] += g_sum;
    if (!dinp) continue;
    const T scale = (weight ? weight[c] : T(1)) * rstd[c];
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < HW; ++i) {
        const int64_t at = (int64_t{b} * C + c) * HW + i;
        const T xhat = (inp[at] - mean[c]) * rstd[c];
        dinp[at] += scale * (dout[at] - g_sum / T(n) - xhat * gx_sum / T(n));
      }
  }
}

// Evaluation backward (fixed statistics): dinp += weight rstd dout, dweight += sum(dout xhat), dbias += sum(dout),
// xhat = (x - mean) rstd. Arguments as batch_norm_backward's, mean and rstd being the fixed statistics.
template <class T>
void batch_norm_backward_eval(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                              const T* mean, const T* rstd, int B, int C, int HW) {
  for (int c = 0; c < C; ++c) {
    T g_sum = 0, gx_sum = 0;
    const T scale = (weight ? weight[c] : T(1)) * rstd[c];
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < HW; ++i) {
        const int64_t at = (int64_t{b} * C + c) * HW + i;
        g_sum += dout[at];
        gx_sum += dout[at] * (inp[at] - mean[c]) * rstd[c];
        if (dinp) dinp[at] += scale * dout[at];
      }
    if (dweight) dweight[c] += gx_sum;
    if (dbias) dbias[c] += g_sum;
  }
}

}  // namespace tessera::kernels::reference
