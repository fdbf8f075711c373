// Differentiable matrix products: matmul (1-D, 2-D and batched with NumPy broadcasting of the batch dimensions)
// and linear (x·weightᵀ + bias, the op of nn::Linear), both on the GEMM kernel with transpose flags.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/gemm.hpp"
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
  Tensor<T> out(plan.out_shape);
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

// y = x·weightᵀ + bias: x is (..., in), weight (out, in), bias (out) or undefined; y is (..., out). The bias is
// added in the GEMM's epilogue.
template <class T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>()) {
  TESSERA_CHECK(weight.rank() == 2, "linear: weight must be (out_features, in_features), got shape ", weight.shape());
  TESSERA_CHECK(x.rank() >= 1 && x.size(-1) == weight.size(1), "linear: input of shape ", x.shape(),
                " does not match weight of shape ", weight.shape(), " (expected ", weight.size(1),
                " input features in the last dimension)");
  if (bias.defined())
    TESSERA_CHECK(bias.shape() == Shape{weight.size(0)}, "linear: bias of shape ", bias.shape(),
                  " does not match weight of shape ", weight.shape(), " (expected (", weight.size(0), "))");
  Tensor<T> y(x.shape().with_dim(-1, weight.size(0)));
  int64_t leading = 1;  // rows of x and y: every dimension but the last
  for (int d = 0; d + 1 < x.rank(); ++d) leading *= x.shape()[d];
  const int rows = detail::kernel_int(leading, "linear");
  const int in = detail::kernel_int(weight.size(1), "linear"), out = detail::kernel_int(weight.size(0), "linear");
  const int ld_in = std::max(in, 1), ld_out = std::max(out, 1);
  if (rows > 0 && out > 0) {
    kernels::GemmEpilogueT<T> epilogue;
    epilogue.bias = bias.defined() ? bias.data() : nullptr;
    kernels::matmul_any_ex<T>(false, true, rows, out, in, T(1), x.data(), ld_in, weight.data(), ld_in, T(0), y.data(),
                              ld_out, epilogue);
  }
  autograd::record<T>(
      y, "linear", {x, weight, bias},
      [x = x.detach(), weight = weight.detach(), rows, in, out](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
        const int ld_in = std::max(in, 1), ld_out = std::max(out, 1);
        Tensor<T> gx, gw, gb;
        if (needs[0]) {  // dx = dy·W
          gx = Tensor<T>::zeros(x.shape());
          if (rows > 0 && in > 0)
            kernels::matmul_any<T>(false, false, rows, in, out, T(1), g.data(), ld_out, weight.data(), ld_in, T(0),
                                   gx.data(), ld_in);
        }
        if (needs[1]) {  // dW = dyᵀ·x
          gw = Tensor<T>::zeros(weight.shape());
          if (out > 0 && in > 0)
            kernels::matmul_any<T>(true, false, out, in, rows, T(1), g.data(), ld_out, x.data(), ld_in, T(0),
                                   gw.data(), ld_in);
        }
        if (needs[2]) {  // db = column sums of dy, in row order
          gb = Tensor<T>::zeros(Shape{out});
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t o = 0; o < out; ++o) gb.data()[o] += g.data()[r * out + o];
        }
        return autograd::Grads<T>{gx, gw, gb};
      });
  return y;
}

}  // namespace tessera::ops
