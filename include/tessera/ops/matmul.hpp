// Differentiable matrix products: matmul (1-D, 2-D and batched with NumPy broadcasting of the batch dimensions),
// linear (x·weightᵀ + bias, the op of nn::Linear), and two fused forms: linear_residual (residual + linear, the
// product accumulated onto the residual) and linear_gelu (gelu(linear), bias and GELU in the GEMM's epilogue), all
// on the GEMM kernel with transpose flags.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "tessera/autograd/grad_mode.hpp"
#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"
#include "tessera/kernels/elementwise.hpp"
#include "tessera/kernels/gemm/gemm.hpp"
#include "tessera/ops/broadcast.hpp"

namespace tessera::ops {

namespace detail {

// A size as the kernel's int argument; throws naming `op` when it does not fit.
inline int kernel_int(int64_t value, const char* op) {
  TESSERA_CHECK(value <= std::numeric_limits<int>::max(), op, ": size ", value, " exceeds the GEMM kernel's int range");
  return static_cast<int>(value);
}

// True when offsets[i] == i * offsets[1] for every i (one stride describes them all).
inline bool evenly_spaced(const std::vector<int64_t>& offsets) {
  const int64_t stride = offsets.size() > 1 ? offsets[1] : 0;
  for (size_t i = 0; i < offsets.size(); ++i)
    if (offsets[i] != static_cast<int64_t>(i) * stride) return false;
  return true;
}

// C_i = op(A_i)·op(B_i) + beta·C_i for every item i, with op(A_i) (M,K), op(B_i) (K,N) and C_i (M,N) stored
// contiguously at a_offsets[i], b_offsets[i], c_offsets[i] (A_i stored (K,M) when trans_a, B_i (N,K) when
// trans_b). Evenly spaced items with distinct C go to one batched kernel call; otherwise items run one after
// another in index order, so items that share a C (beta = 1) accumulate in a fixed order.
template <class T>
void gemm_items(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A,
                const std::vector<int64_t>& a_offsets, const T* B, const std::vector<int64_t>& b_offsets, T beta, T* C,
                const std::vector<int64_t>& c_offsets, const char* op) {
  if (M == 0 || N == 0 || c_offsets.empty()) return;
  const int m = kernel_int(M, op), n = kernel_int(N, op), k = kernel_int(K, op);
  const int lda = std::max(1, trans_a ? m : k), ldb = std::max(1, trans_b ? k : n), ldc = n;
  const size_t count = c_offsets.size();
  const bool distinct_c = count == 1 || (c_offsets[1] != 0);
  if (count > 1 && distinct_c && evenly_spaced(a_offsets) && evenly_spaced(b_offsets) && evenly_spaced(c_offsets)) {
    kernels::matmul_any_batched<T>(trans_a, trans_b, m, n, k, T(1), A, lda, a_offsets[1], B, ldb, b_offsets[1], beta, C,
                                   ldc, c_offsets[1], kernel_int(static_cast<int64_t>(count), op));
    return;
  }
  for (size_t i = 0; i < count; ++i)
    kernels::matmul_any<T>(trans_a, trans_b, m, n, k, T(1), A + a_offsets[i], lda, B + b_offsets[i], ldb, beta,
                           C + c_offsets[i], ldc);
}

// How matmul lays out a product: items of (M,K)x(K,N), item i reading A at a_offsets[i], B at b_offsets[i] and
// writing C at c_offsets[i] = i·M·N (offsets in elements).
struct MatmulPlan {
  int64_t M = 1, K = 1, N = 1;
  Shape out_shape;
  std::vector<int64_t> a_offsets, b_offsets, c_offsets;
};

// Offsets (in elements) of each operand matrix for every entry of the broadcast batch shape.
inline std::vector<int64_t> batch_offsets(const Shape& operand_batch, const Shape& batch, int64_t matrix_size) {
  const int64_t count = batch.numel();
  std::vector<int64_t> offsets(static_cast<size_t>(count), 0);
  if (batch.rank() == 0) return offsets;
  const auto strides = broadcast_strides(operand_batch, batch);
  for (int64_t i = 0; i < count; ++i) {
    int64_t rest = i, offset = 0;
    for (int d = batch.rank() - 1; d >= 0; --d) {
      offset += (rest % batch[d]) * strides[static_cast<size_t>(d)];
      rest /= batch[d];
    }
    offsets[static_cast<size_t>(i)] = offset * matrix_size;
  }
  return offsets;
}

inline MatmulPlan plan_matmul(const Shape& a, const Shape& b) {
  TESSERA_CHECK(a.rank() >= 1 && b.rank() >= 1, "matmul: both operands need rank >= 1, got shapes ", a, " and ", b);
  MatmulPlan plan;
  const int64_t a_rows = a.rank() >= 2 ? a[a.rank() - 2] : 1;
  const int64_t b_depth = b.rank() >= 2 ? b[b.rank() - 2] : b[0];
  plan.K = a[a.rank() - 1];
  plan.N = b.rank() >= 2 ? b[b.rank() - 1] : 1;
  TESSERA_CHECK(plan.K == b_depth, "matmul: shapes ", a, " and ", b, " do not multiply (inner dimensions ", plan.K,
                " vs ", b_depth, ")");
  const Shape a_batch(a.dims().first(static_cast<size_t>(std::max(a.rank() - 2, 0))));
  const Shape b_batch(b.dims().first(static_cast<size_t>(std::max(b.rank() - 2, 0))));

  for (int i = 1; i <= std::min(a_batch.rank(), b_batch.rank()); ++i) {
    const int64_t da = a_batch[a_batch.rank() - i], db = b_batch[b_batch.rank() - i];
    TESSERA_CHECK(da == db || da == 1 || db == 1, "matmul: batch dimensions of shapes ", a, " and ", b,
                  " cannot be broadcast together (", da, " vs ", db, ")");
  }
  std::vector<int64_t> out;
  if (b_batch.rank() == 0) {
    // B is one matrix: every row of A's batch meets it, so fold A's batch into M (one large product).
    out.assign(a_batch.dims().begin(), a_batch.dims().end());
    plan.M = a_batch.numel() * a_rows;
    plan.a_offsets = {0};
    plan.b_offsets = {0};
  } else {
    const Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");
    out.assign(batch.dims().begin(), batch.dims().end());
    plan.M = a_rows;
    plan.a_offsets = batch_offsets(a_batch, batch, plan.M * plan.K);
    plan.b_offsets = batch_offsets(b_batch, batch, plan.K * plan.N);
  }
  for (size_t i = 0; i < plan.a_offsets.size(); ++i)
    plan.c_offsets.push_back(static_cast<int64_t>(i) * plan.M * plan.N);
  if (a.rank() >= 2) out.push_back(a_rows);
  if (b.rank() >= 2) out.push_back(plan.N);
  TESSERA_CHECK(out.size() <= static_cast<size_t>(kMaxRank), "matmul: result of shapes ", a, " and ", b,
                " would exceed rank ", kMaxRank);
  plan.out_shape = Shape(std::span<const int64_t>(out));
  return plan;
}

}  // namespace detail

// Matrix product with NumPy semantics: (..., M, K) x (..., K, N) -> (broadcast batch..., M, N); a 1-D first
// operand is a row (its M dimension is dropped from the result), a 1-D second operand a column (N dropped).
template <class T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b) {
  const auto plan = detail::plan_matmul(a.shape(), b.shape());
  Tensor<T> out = Tensor<T>::empty(plan.out_shape);
  detail::gemm_items<T>(false, false, plan.M, plan.N, plan.K, a.data(), plan.a_offsets, b.data(), plan.b_offsets, T(0),
                        out.data(), plan.c_offsets, "matmul");
  autograd::record<T>(out, "matmul", {a, b},
                      [plan, a = a.detach(), b = b.detach()](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
                        Tensor<T> ga, gb;
                        if (needs[0]) {  // dA = dC·Bᵀ, summed over the items that share an A
                          ga = Tensor<T>::zeros(a.shape());
                          detail::gemm_items<T>(false, true, plan.M, plan.K, plan.N, g.data(), plan.c_offsets, b.data(),
                                                plan.b_offsets, T(1), ga.data(), plan.a_offsets, "matmul backward");
                        }
                        if (needs[1]) {  // dB = Aᵀ·dC, summed over the items that share a B
                          gb = Tensor<T>::zeros(b.shape());
                          detail::gemm_items<T>(true, false, plan.K, plan.N, plan.M, a.data(), plan.a_offsets, g.data(),
                                                plan.c_offsets, T(1), gb.data(), plan.b_offsets, "matmul backward");
                        }
                        return autograd::Grads<T>{ga, gb};
                      });
  return out;
}

namespace detail {

// The sizes of linear: rows = every dimension of x but the last, in and out features, as the kernels' ints.
struct LinearSizes {
  int rows = 0, in = 0, out = 0;
  int ld_in() const { return std::max(in, 1); }
  int ld_out() const { return std::max(out, 1); }
};

template <class T>
LinearSizes check_linear(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias, const char* op) {
  TESSERA_CHECK(weight.rank() == 2, op, ": weight must be (out_features, in_features), got shape ", weight.shape());
  TESSERA_CHECK(x.rank() >= 1 && x.size(-1) == weight.size(1), op, ": input of shape ", x.shape(),
                " does not match weight of shape ", weight.shape(), " (expected ", weight.size(1),
                " input features in the last dimension)");
  if (bias.defined())
    TESSERA_CHECK(bias.shape() == Shape{weight.size(0)}, op, ": bias of shape ", bias.shape(),
                  " does not match weight of shape ", weight.shape(), " (expected (", weight.size(0), "))");
  int64_t leading = 1;  // rows of x and y: every dimension but the last
  for (int d = 0; d + 1 < x.rank(); ++d) leading *= x.shape()[d];
  return {kernel_int(leading, op), kernel_int(weight.size(1), op), kernel_int(weight.size(0), op)};
}

// y (rows, out) = x·weightᵀ + bias, then the epilogue's GELU when gelu (pre-activation into pre when not null).
template <class T>
void linear_forward(T* y, const T* x, const T* weight, const T* bias, const LinearSizes& s, bool gelu = false,
                    T* pre = nullptr) {
  if (s.rows == 0 || s.out == 0) return;
  kernels::GemmEpilogueT<T> epilogue;
  epilogue.bias = bias;
  epilogue.gelu = gelu;
  epilogue.pre_activation = pre;
  kernels::matmul_any_ex<T>(false, true, s.rows, s.out, s.in, T(1), x, s.ld_in(), weight, s.ld_in(), T(0), y,
                            s.ld_out(), epilogue);
}

// The gradients of y = x·weightᵀ + bias from dy (rows, out): dx = dy·W, dW = dyᵀ·x, db = column sums of dy (in
// row order), each only when needs asks for it.
template <class T>
autograd::Grads<T> linear_backward(const T* dy, const Tensor<T>& x, const Tensor<T>& weight, const LinearSizes& s,
                                   const autograd::NeedsGrad& needs) {
  Tensor<T> gx, gw, gb;
  if (needs[0]) {
    gx = Tensor<T>::empty(x.shape());
    if (s.rows > 0 && s.in > 0)
      kernels::matmul_any<T>(false, false, s.rows, s.in, s.out, T(1), dy, s.ld_out(), weight.data(), s.ld_in(), T(0),
                             gx.data(), s.ld_in());
  }
  if (needs[1]) {
    gw = Tensor<T>::empty(weight.shape());
    if (s.out > 0 && s.in > 0)
      kernels::matmul_any<T>(true, false, s.out, s.in, s.rows, T(1), dy, s.ld_out(), x.data(), s.ld_in(), T(0),
                             gw.data(), s.ld_in());
  }
  if (needs.size() > 2 && needs[2]) {
    gb = Tensor<T>::zeros(Shape{s.out});
    kernels::column_sums(gb.data(), dy, s.rows, s.out);
  }
  return autograd::Grads<T>{gx, gw, gb};
}

}  // namespace detail

// y = x·weightᵀ + bias: x is (..., in), weight (out, in), bias (out) or undefined; y is (..., out). The bias is
// added in the GEMM's epilogue.
template <class T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>()) {
  const detail::LinearSizes sizes = detail::check_linear(x, weight, bias, "linear");
  Tensor<T> y = Tensor<T>::empty(x.shape().with_dim(-1, weight.size(0)));
  detail::linear_forward<T>(y.data(), x.data(), weight.data(), bias.defined() ? bias.data() : nullptr, sizes);
  autograd::record<T>(y, "linear", {x, weight, bias},
                      [x = x.detach(), weight = weight.detach(), sizes](const Tensor<T>& g,
                                                                        const autograd::NeedsGrad& needs) {
                        return detail::linear_backward<T>(g.data(), x, weight, sizes, needs);
                      });
  return y;
}

// y = residual + (x·weightᵀ + bias), as add(residual, linear(x, weight, bias)) but in one pass: residual is copied
// into y and the GEMM accumulates onto it (beta = 1) with the bias in its epilogue, so the product is never stored
// on its own. residual has y's shape; the other shapes as linear. The sum is rounded as (residual + x·Wᵀ) + bias.
template <class T>
Tensor<T> linear_residual(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias,
                          const Tensor<T>& residual) {
  const detail::LinearSizes sizes = detail::check_linear(x, weight, bias, "linear_residual");
  const Shape out_shape = x.shape().with_dim(-1, weight.size(0));
  TESSERA_CHECK(residual.shape() == out_shape, "linear_residual: residual of shape ", residual.shape(),
                " does not match the output shape ", out_shape, " (input ", x.shape(), ", weight ", weight.shape(), ")");
  Tensor<T> y = Tensor<T>::empty(out_shape);
  kernels::copy_rows(y.data(), sizes.out, residual.data(), sizes.out, sizes.rows, sizes.out);
  if (sizes.rows > 0 && sizes.out > 0) {
    kernels::GemmEpilogueT<T> epilogue;
    epilogue.bias = bias.defined() ? bias.data() : nullptr;
    kernels::matmul_any_ex<T>(false, true, sizes.rows, sizes.out, sizes.in, T(1), x.data(), sizes.ld_in(),
                              weight.data(), sizes.ld_in(), T(1), y.data(), sizes.ld_out(), epilogue);
  }
  autograd::record<T>(y, "linear_residual", {x, weight, bias, residual},
                      [x = x.detach(), weight = weight.detach(), sizes](const Tensor<T>& g,
                                                                        const autograd::NeedsGrad& needs) {
                        autograd::Grads<T> grads = detail::linear_backward<T>(g.data(), x, weight, sizes, needs);
                        grads.push_back(needs[3] ? g : Tensor<T>());
                        return grads;
                      });
  return y;
}

// y = gelu(x·weightᵀ + bias) with the exact (erf) GELU, as linear followed by gelu but in one pass: bias and GELU
// are applied in the GEMM's epilogue while each block of y is in cache, and the pre-activation is kept for
// backward (dpre = dy·gelu'(pre), then linear's gradients from dpre). Shapes as linear.
template <class T>
Tensor<T> linear_gelu(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>()) {
  const detail::LinearSizes sizes = detail::check_linear(x, weight, bias, "linear_gelu");
  const Shape out_shape = x.shape().with_dim(-1, weight.size(0));
  const bool records = autograd::grad_mode_enabled() && (x.requires_grad() || weight.requires_grad() ||
                                                         (bias.defined() && bias.requires_grad()));
  Tensor<T> y = Tensor<T>::empty(out_shape), pre;
  if (records) pre = Tensor<T>::empty(out_shape);
  detail::linear_forward<T>(y.data(), x.data(), weight.data(), bias.defined() ? bias.data() : nullptr, sizes, true,
                            pre.defined() ? pre.data() : nullptr);
  autograd::record<T>(
      y, "linear_gelu", {x, weight, bias},
      [x = x.detach(), weight = weight.detach(), pre, sizes](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
        Tensor<T> dpre(pre.shape());  // zeros: the GELU backward adds into it
        kernels::dispatch::gelu_backward(dpre.data(), g.data(), pre.data(), pre.numel());
        return detail::linear_backward<T>(dpre.data(), x, weight, sizes, needs);
      });
  return y;
}

}  // namespace tessera::ops
