// Differentiable reductions over chosen dimensions (sum, mean, max) with keepdim.
#pragma once

#include <algorithm>
#include <limits>
#include <vector>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/elementwise.hpp"
#include "tessera/ops/broadcast.hpp"

namespace tessera::ops {

namespace detail {

// The reduced shape with reduced dimensions kept as 1 (and the list of reduced dimensions, sorted, unique).
struct Reduction {
  Shape kept;      // reduced dims set to 1
  Shape result;    // kept, or with the reduced dims removed
  int64_t count;   // elements folded into each result element
};

inline Reduction plan_reduction(const Shape& shape, std::vector<int> dims, bool keepdim, const char* op) {
  if (dims.empty())  // no dimension named: reduce over all of them
    for (int d = 0; d < shape.rank(); ++d) dims.push_back(d);
  std::vector<bool> reduced(static_cast<size_t>(shape.rank()), false);
  for (int& d : dims) {
    d = shape.normalize_dim(d, op);
    TESSERA_CHECK(!reduced[static_cast<size_t>(d)], op, ": dimension ", d, " is listed twice for shape ", shape);
    reduced[static_cast<size_t>(d)] = true;
  }
  std::vector<int64_t> kept, result;
  int64_t count = 1;
  for (int d = 0; d < shape.rank(); ++d) {
    if (reduced[static_cast<size_t>(d)]) {
      kept.push_back(1);
      if (keepdim) result.push_back(1);
      count *= shape[d];
    } else {
      kept.push_back(shape[d]);
      result.push_back(shape[d]);
    }
  }
  return {Shape(std::span<const int64_t>(kept)), Shape(std::span<const int64_t>(result)), count};
}

// Sum of `a` into the kept shape (zero-initialised), sequential so the order never depends on threads.
template <class T>
Tensor<T> sum_kept(const Tensor<T>& a, const Shape& kept) {
  Tensor<T> out = Tensor<T>::zeros(kept);
  if (a.numel() == 0) return out;
  if (a.rank() == 0) {
    out.data()[0] = a.data()[0];
    return out;
  }
  const auto strides = broadcast_strides(kept, a.shape());
  kernels::sum_to_strided(out.data(), strides.data(), a.data(), a.shape().dims().data(), a.rank());
  return out;
}

// Repeats g (of the kept shape) over `shape`, multiplied by `scale`.
template <class T>
Tensor<T> expand_scaled(const Tensor<T>& g_kept, const Shape& shape, T scale) {
  Tensor<T> ones = Tensor<T>::full(shape, scale);
  return broadcast_binary(ones, g_kept, "expand", [](T x, T y) { return x * y; });
}

}  // namespace detail

// Sum over `dims` (all dimensions when empty); keepdim leaves them as size 1.
template <class T>
Tensor<T> sum(const Tensor<T>& a, std::vector<int> dims = {}, bool keepdim = false) {
  const auto plan = detail::plan_reduction(a.shape(), std::move(dims), keepdim, "sum");
  Tensor<T> out = detail::sum_kept(a, plan.kept).view(plan.result);
  autograd::record<T>(out, "sum", {a}, [plan, shape = a.shape()](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{detail::expand_scaled(g.view(plan.kept), shape, T(1))};
  });
  return out;
}

template <class T>
Tensor<T> mean(const Tensor<T>& a, std::vector<int> dims = {}, bool keepdim = false) {
  const auto plan = detail::plan_reduction(a.shape(), std::move(dims), keepdim, "mean");
  TESSERA_CHECK(plan.count > 0, "mean: cannot average over an empty dimension of shape ", a.shape());
  const T scale = T(1) / static_cast<T>(plan.count);
  Tensor<T> out = detail::sum_kept(a, plan.kept).view(plan.result);
  kernels::map_unary(out.data(), out.data(), out.numel(), [scale](T x) { return x * scale; });
  autograd::record<T>(out, "mean", {a},
                      [plan, scale, shape = a.shape()](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        return autograd::Grads<T>{detail::expand_scaled(g.view(plan.kept), shape, scale)};
                      });
  return out;
}

// Maximum over `dims`. The gradient goes to the maximal elements, shared equally between ties.
template <class T>
Tensor<T> max(const Tensor<T>& a, std::vector<int> dims = {}, bool keepdim = false) {
  const auto plan = detail::plan_reduction(a.shape(), std::move(dims), keepdim, "max");
  TESSERA_CHECK(plan.count > 0, "max: cannot take the maximum over an empty dimension of shape ", a.shape());
  Tensor<T> kept = Tensor<T>::full(plan.kept, -std::numeric_limits<T>::infinity());
  if (a.rank() == 0) {
    kept.data()[0] = a.data()[0];
  } else {
    const auto strides = broadcast_strides(plan.kept, a.shape());
    // Reuse the odometer walk: fold with max instead of +.
    std::vector<int64_t> index(static_cast<size_t>(a.rank()), 0);
    int64_t offset = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
      T& m = kept.data()[offset];
      m = std::max(m, a.data()[i]);
      for (int d = a.rank() - 1; d >= 0; --d) {
        offset += strides[static_cast<size_t>(d)];
        if (++index[static_cast<size_t>(d)] < a.shape()[d]) break;
        offset -= strides[static_cast<size_t>(d)] * a.shape()[d];
        index[static_cast<size_t>(d)] = 0;
      }
    }
  }
  Tensor<T> out = kept.view(plan.result);
  autograd::record<T>(out, "max", {a},
                      [plan, a = a.detach(), kept = kept.detach()](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        auto is_max = [](T x, T m) { return x == m ? T(1) : T(0); };
                        Tensor<T> mask = detail::broadcast_binary(a, kept, "max", is_max);
                        Tensor<T> ties = detail::sum_kept(mask, plan.kept);
                        Tensor<T> share = detail::broadcast_binary(g.view(plan.kept), ties, "max",
                                                                   [](T x, T n) { return x / n; });
                        return autograd::Grads<T>{
                            detail::broadcast_binary(mask, share, "max", [](T x, T y) { return x * y; })};
                      });
  return out;
}

}  // namespace tessera::ops
