// The one float/double dispatch of the kernels: an overload per element type for each kernel an op calls.
// Rule: float runs the fast kernel (kernels/<name>.hpp); double runs the reference loops
// (kernels/reference/<name>.hpp), single-threaded and meant for gradient checks on small shapes. ops/, nn/ and
// optim/ call these overloads and never branch on the element type. GEMMs dispatch by the same rule through
// matmul_any, matmul_any_ex and matmul_any_batched (gemm/gemm.hpp); element-wise maps (elementwise.hpp) are
// templates on T, the same code for both.
#pragma once

#include <cstdint>

#include "tessera/kernels/adamw.hpp"
#include "tessera/kernels/attention.hpp"
#include "tessera/kernels/batch_norm.hpp"
#include "tessera/kernels/conv2d.hpp"
#include "tessera/kernels/cross_entropy.hpp"
#include "tessera/kernels/gelu.hpp"
#include "tessera/kernels/layer_norm.hpp"
#include "tessera/kernels/patchify.hpp"
#include "tessera/kernels/reference/adamw.hpp"
#include "tessera/kernels/reference/attention.hpp"
#include "tessera/kernels/reference/batch_norm.hpp"
#include "tessera/kernels/reference/conv2d.hpp"
#include "tessera/kernels/reference/cross_entropy.hpp"
#include "tessera/kernels/reference/gelu.hpp"
#include "tessera/kernels/reference/layer_norm.hpp"
#include "tessera/kernels/reference/patchify.hpp"
#include "tessera/kernels/reference/softmax.hpp"
#include "tessera/kernels/softmax.hpp"

namespace tessera::kernels::dispatch {

// gelu (kernels/gelu.hpp)
inline void gelu_forward(float* out, const float* inp, int64_t n) { kernels::gelu_forward(out, inp, n); }
inline void gelu_forward(double* out, const double* inp, int64_t n) { reference::gelu_forward(out, inp, n); }

inline void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  kernels::gelu_backward(dinp, dout, inp, n);
}
inline void gelu_backward(double* dinp, const double* dout, const double* inp, int64_t n) {
  reference::gelu_backward(dinp, dout, inp, n);
}

// softmax and log_softmax (kernels/softmax.hpp)
inline void softmax_forward(float* out, const float* inp, int rows, int cols) {
  kernels::softmax_forward(out, inp, rows, cols);
}
inline void softmax_forward(double* out, const double* inp, int rows, int cols) {
  reference::softmax_forward(out, inp, rows, cols);
}

inline void softmax_backward(float* dinp, const float* dout, const float* out, int rows, int cols) {
  kernels::softmax_backward(dinp, dout, out, rows, cols);
}
inline void softmax_backward(double* dinp, const double* dout, const double* out, int rows, int cols) {
  reference::softmax_backward(dinp, dout, out, rows, cols);
}

inline void log_softmax_forward(float* out, const float* inp, int rows, int cols) {
  kernels::log_softmax_forward(out, inp, rows, cols);
}
inline void log_softmax_forward(double* out, const double* inp, int rows, int cols) {
  reference::log_softmax_forward(out, inp, rows, cols);
}

inline void log_softmax_backward(float* dinp, const float* dout, const float* out, int rows, int cols) {
  kernels::log_softmax_backward(dinp, dout, out, rows, cols);
}
inline void log_softmax_backward(double* dinp, const double* dout, const double* out, int rows, int cols) {
  reference::log_softmax_backward(dinp, dout, out, rows, cols);
}

// layer_norm (kernels/layer_norm.hpp)
inline void layer_norm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                               const float* bias, int rows, int cols, float eps) {
  kernels::layer_norm_forward(out, mean, rstd, inp, weight, bias, rows, cols, eps);
}
inline void layer_norm_forward(double* out, double* mean, double* rstd, const double* inp, const double* weight,
                               const double* bias, int rows, int cols, double eps) {
  reference::layer_norm_forward(out, mean, rstd, inp, weight, bias, rows, cols, eps);
}

inline void layer_norm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                const float* weight, const float* mean, const float* rstd, int rows, int cols) {
  kernels::layer_norm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, rows, cols);
}
inline void layer_norm_backward(double* dinp, double* dweight, double* dbias, const double* dout, const double* inp,
                                const double* weight, const double* mean, const double* rstd, int rows, int cols) {
  reference::layer_norm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, rows, cols);
}

// cross_entropy (kernels/cross_entropy.hpp)
inline void cross_entropy_forward(float* losses, float* probs, const float* logits, const int64_t* targets, int rows,
                                  int classes, float label_smoothing) {
  kernels::cross_entropy_forward(losses, probs, logits, targets, rows, classes, label_smoothing);
}
inline void cross_entropy_forward(double* losses, double* probs, const double* logits, const int64_t* targets, int rows,
                                  int classes, double label_smoothing) {
  reference::cross_entropy_forward(losses, probs, logits, targets, rows, classes, label_smoothing);
}

inline void cross_entropy_backward(float* dlogits, const float* dlosses, const float* probs, const int64_t* targets,
                                   int rows, int classes, float label_smoothing) {
  kernels::cross_entropy_backward(dlogits, dlosses, probs, targets, rows, classes, label_smoothing);
}
inline void cross_entropy_backward(double* dlogits, const double* dlosses, const double* probs,
                                   const int64_t* targets, int rows, int classes, double label_smoothing) {
  reference::cross_entropy_backward(dlogits, dlosses, probs, targets, rows, classes, label_smoothing);
}

// patchify (kernels/patchify.hpp)
inline void patchify_forward(float* patches, const float* image, int B, int C, int H, int W, int p) {
  kernels::patchify_forward(patches, image, B, C, H, W, p);
}
inline void patchify_forward(double* patches, const double* image, int B, int C, int H, int W, int p) {
  reference::patchify_forward(patches, image, B, C, H, W, p);
}

inline void patchify_backward(float* dimage, const float* dpatches, int B, int C, int H, int W, int p) {
  kernels::patchify_backward(dimage, dpatches, B, C, H, W, p);
}
inline void patchify_backward(double* dimage, const double* dpatches, int B, int C, int H, int W, int p) {
  reference::patchify_backward(dimage, dpatches, B, C, H, W, p);
}

// fused multi-head attention (kernels/attention.hpp)
inline void attention_forward(float* out, float* probs, const float* qkv, int B, int N, int H, int d,
                              double dropout_p, uint64_t dropout_seed) {
  kernels::attention_forward(out, probs, qkv, B, N, H, d, dropout_p, dropout_seed);
}
inline void attention_forward(double* out, double* probs, const double* qkv, int B, int N, int H, int d,
                              double dropout_p, uint64_t dropout_seed) {
  reference::attention_forward(out, probs, qkv, B, N, H, d, dropout_p, dropout_seed);
}

inline void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs, int B, int N,
                               int H, int d, double dropout_p, uint64_t dropout_seed) {
  kernels::attention_backward(dqkv, dout, qkv, probs, B, N, H, d, dropout_p, dropout_seed);
}
inline void attention_backward(double* dqkv, const double* dout, const double* qkv, const double* probs, int B, int N,
                               int H, int d, double dropout_p, uint64_t dropout_seed) {
  reference::attention_backward(dqkv, dout, qkv, probs, B, N, H, d, dropout_p, dropout_seed);
}

// adamw (kernels/adamw.hpp)
inline void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, double lr, double beta1,
                       double beta2, double eps, double weight_decay, int step) {
  kernels::adamw_step(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
}
inline void adamw_step(double* param, const double* grad, double* m, double* v, int64_t n, double lr, double beta1,
                       double beta2, double eps, double weight_decay, int step) {
  reference::adamw_step(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
}

// conv2d (kernels/conv2d.hpp)
inline void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, const Conv2dSizes& s) {
  kernels::conv2d_forward(out, inp, weight, bias, s);
}
inline void conv2d_forward(double* out, const double* inp, const double* weight, const double* bias,
                           const Conv2dSizes& s) {
  reference::conv2d_forward<double>(out, inp, weight, bias, s);
}
inline void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const Conv2dSizes& s) {
  kernels::conv2d_backward(dinp, dweight, dbias, dout, inp, weight, s);
}
inline void conv2d_backward(double* dinp, double* dweight, double* dbias, const double* dout, const double* inp,
                            const double* weight, const Conv2dSizes& s) {
  reference::conv2d_backward<double>(dinp, dweight, dbias, dout, inp, weight, s);
}

// batch_norm (kernels/batch_norm.hpp)
inline void batch_norm_forward(float* out, float* mean, float* rstd, float* running_mean, float* running_var,
                               const float* inp, const float* weight, const float* bias, int B, int C, int HW,
                               float eps, float momentum) {
  kernels::batch_norm_forward(out, mean, rstd, running_mean, running_var, inp, weight, bias, B, C, HW, eps, momentum);
}
inline void batch_norm_forward(double* out, double* mean, double* rstd, double* running_mean, double* running_var,
                               const double* inp, const double* weight, const double* bias, int B, int C, int HW,
                               double eps, double momentum) {
  reference::batch_norm_forward<double>(out, mean, rstd, running_mean, running_var, inp, weight, bias, B, C, HW, eps,
                                        momentum);
}
inline void batch_norm_forward_eval(float* out, const float* inp, const float* mean, const float* rstd,
                                    const float* weight, const float* bias, int B, int C, int HW) {
  kernels::batch_norm_forward_eval(out, inp, mean, rstd, weight, bias, B, C, HW);
}
inline void batch_norm_forward_eval(double* out, const double* inp, const double* mean, const double* rstd,
                                    const double* weight, const double* bias, int B, int C, int HW) {
  reference::batch_norm_forward_eval<double>(out, inp, mean, rstd, weight, bias, B, C, HW);
}
inline void batch_norm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                const float* weight, const float* mean, const float* rstd, int B, int C, int HW) {
  kernels::batch_norm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, C, HW);
}
inline void batch_norm_backward(double* dinp, double* dweight, double* dbias, const double* dout, const double* inp,
                                const double* weight, const double* mean, const double* rstd, int B, int C, int HW) {
  reference::batch_norm_backward<double>(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, C, HW);
}
inline void batch_norm_backward_eval(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                     const float* weight, const float* mean, const float* rstd, int B, int C, int HW) {
  kernels::batch_norm_backward_eval(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, C, HW);
}
inline void batch_norm_backward_eval(double* dinp, double* dweight, double* dbias, const double* dout,
                                     const double* inp, const double* weight, const double* mean, const double* rstd,
                                     int B, int C, int HW) {
  reference::batch_norm_backward_eval<double>(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, C, HW);
}

}  // namespace tessera::kernels::dispatch
