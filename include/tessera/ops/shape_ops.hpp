// Differentiable shape ops that move elements: transpose, permute, concat, slice, select and index_select.
// Results are contiguous copies (tensors are always contiguous); each backward moves the gradient back.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/elementwise.hpp"

namespace tessera::ops {

namespace detail {

// Calls visit(row, offset) for every row of a contiguous (dims[0..rank)) walk, where offset is the element offset
// of the row's first element under `strides`; rows are the last dimension, so a row spans dims[rank-1] elements.
template <class F>
void for_each_strided_row(const int64_t* strides, const int64_t* dims, int rank, F visit) {
  int64_t rows = 1;
  for (int d = 0; d + 1 < rank; ++d) rows *= dims[d];
  [[maybe_unused]] const int64_t inner = rank ? dims[rank - 1] : 1;  // unused without OpenMP
#pragma omp parallel for schedule(static) if (rows * inner > kernels::kParallelGrain)
  for (int64_t row = 0; row < rows; ++row) {
    int64_t rest = row, offset = 0;
    for (int d = rank - 2; d >= 0; --d) {
      offset += (rest % dims[d]) * strides[d];
      rest /= dims[d];
    }
    visit(row, offset);
  }
}

// out (contiguous, dims[0..rank)) = the elements of inp read through `strides`.
template <class T>
void gather_strided(T* out, const T* inp, const int64_t* strides, const int64_t* dims, int rank) {
  const int64_t inner = rank ? dims[rank - 1] : 1, step = rank ? strides[rank - 1] : 0;
  for_each_strided_row(strides, dims, rank, [&](int64_t row, int64_t offset) {
    T* o = out + row * inner;
    const T* in = inp + offset;
    for (int64_t i = 0; i < inner; ++i) o[i] = in[i * step];
  });
}

// dst read through `strides` += src (contiguous, dims[0..rank)); the strided positions must be distinct.
template <class T>
void scatter_add_strided(T* dst, const int64_t* strides, const T* src, const int64_t* dims, int rank) {
  const int64_t inner = rank ? dims[rank - 1] : 1, step = rank ? strides[rank - 1] : 0;
  for_each_strided_row(strides, dims, rank, [&](int64_t row, int64_t offset) {
    const T* s = src + row * inner;
    T* d = dst + offset;
    for (int64_t i = 0; i < inner; ++i) d[i * step] += s[i];
  });
}

inline std::string list_str(std::span<const int> values) {
  std::ostringstream s;
  s << '(';
  for (size_t i = 0; i < values.size(); ++i) s << (i ? ", " : "") << values[i];
  return s.str() + ')';
}

// Elements per index of dimension `dim` (product of the later dimensions) and rows before it.
inline int64_t inner_size(const Shape& shape, int dim) {
  int64_t n = 1;
  for (int d = dim + 1; d < shape.rank(); ++d) n *= shape[d];
  return n;
}
inline int64_t outer_size(const Shape& shape, int dim) {
  int64_t n = 1;
  for (int d = 0; d < dim; ++d) n *= shape[d];
  return n;
}

template <class T>
Tensor<T> permute_impl(const Tensor<T>& a, const std::vector<int>& order, const char* op) {
  const int rank = a.rank();
  std::array<int64_t, kMaxRank> dims{}, strides{};
  const auto own = a.shape().strides();
  for (int i = 0; i < rank; ++i) {
    dims[static_cast<size_t>(i)] = a.shape()[order[static_cast<size_t>(i)]];
    strides[static_cast<size_t>(i)] = own[static_cast<size_t>(order[static_cast<size_t>(i)])];
  }
  Tensor<T> out = Tensor<T>::empty(Shape(std::span<const int64_t>(dims.data(), static_cast<size_t>(rank))));
  gather_strided(out.data(), a.data(), strides.data(), dims.data(), rank);
  autograd::record<T>(out, op, {a}, [order](const Tensor<T>& g, const autograd::NeedsGrad&) {
    std::vector<int> inverse(order.size());
    for (size_t i = 0; i < order.size(); ++i) inverse[static_cast<size_t>(order[i])] = static_cast<int>(i);
    return autograd::Grads<T>{permute_impl(g, inverse, "permute")};
  });
  return out;
}

}  // namespace detail

// Reorders the dimensions: result dimension i is input dimension dims[i] (negative indices count from the end).
template <class T>
Tensor<T> permute(const Tensor<T>& a, std::vector<int> dims) {
  TESSERA_CHECK(static_cast<int>(dims.size()) == a.rank(), "permute: ", dims.size(),
                " dimensions given for shape ", a.shape(), " (rank ", a.rank(), ")");
  std::vector<bool> seen(dims.size(), false);
  for (int& d : dims) {
    d = a.shape().normalize_dim(d, "permute");
    TESSERA_CHECK(!seen[static_cast<size_t>(d)], "permute: dims ", detail::list_str(dims),
                  " are not a permutation of the dimensions of shape ", a.shape());
    seen[static_cast<size_t>(d)] = true;
  }
  return detail::permute_impl(a, dims, "permute");
}

// Swaps two dimensions.
template <class T>
Tensor<T> transpose(const Tensor<T>& a, int dim0, int dim1) {
  dim0 = a.shape().normalize_dim(dim0, "transpose");
  dim1 = a.shape().normalize_dim(dim1, "transpose");
  std::vector<int> order(static_cast<size_t>(a.rank()));
  for (int i = 0; i < a.rank(); ++i) order[static_cast<size_t>(i)] = i;
  std::swap(order[static_cast<size_t>(dim0)], order[static_cast<size_t>(dim1)]);
  return detail::permute_impl(a, order, "transpose");
}

// Joins tensors along `dim`; they must agree in every other dimension.
template <class T>
Tensor<T> concat(const std::vector<Tensor<T>>& tensors, int dim) {
  TESSERA_CHECK(!tensors.empty(), "concat: needs at least one tensor");
  const Shape& first = tensors[0].shape();
  TESSERA_CHECK(first.rank() >= 1, "concat: cannot join tensors of rank 0 (shape ", first, ")");
  dim = first.normalize_dim(dim, "concat");
  int64_t total = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const Shape& s = tensors[t].shape();
    TESSERA_CHECK(s.rank() == first.rank() && s.with_dim(dim, 0) == first.with_dim(dim, 0), "concat: tensor ", t,
                  " has shape ", s, " but tensor 0 has shape ", first, "; they must agree outside dimension ", dim);
    total += s[dim];
  }
  Tensor<T> out = Tensor<T>::empty(first.with_dim(dim, total));
  const int64_t outer = detail::outer_size(first, dim), inner = detail::inner_size(first, dim);
  int64_t start = 0;  // where each tensor's block begins within one output row of total·inner elements
  std::vector<int64_t> starts;
  for (const auto& t : tensors) {
    starts.push_back(start);
    const int64_t block = t.size(dim) * inner;
    for (int64_t o = 0; o < outer; ++o)
      std::copy(t.data() + o * block, t.data() + (o + 1) * block, out.data() + o * total * inner + start);
    start += block;
  }
  std::vector<Shape> shapes;
  for (const auto& t : tensors) shapes.push_back(t.shape());
  autograd::record<T>(out, "concat", tensors,
                      [shapes, starts, dim, outer, inner, total](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
                        autograd::Grads<T> grads(shapes.size());
                        for (size_t t = 0; t < shapes.size(); ++t) {
                          if (!needs[t]) continue;
                          grads[t] = Tensor<T>::empty(shapes[t]);
                          const int64_t block = shapes[t][dim] * inner;
                          for (int64_t o = 0; o < outer; ++o) {
                            const T* from = g.data() + o * total * inner + starts[t];
                            std::copy(from, from + block, grads[t].data() + o * block);
                          }
                        }
                        return grads;
                      });
  return out;
}

template <class T>
Tensor<T> concat(std::initializer_list<Tensor<T>> tensors, int dim) {
  return concat(std::vector<Tensor<T>>(tensors), dim);
}

// Elements start, start+step, ... below end of dimension `dim`, with Python's rules: negative start/end count
// from the end and both are clamped to [0, size]; step must be positive.
template <class T>
Tensor<T> slice(const Tensor<T>& a, int dim, int64_t start, int64_t end, int64_t step = 1) {
  dim = a.shape().normalize_dim(dim, "slice");
  TESSERA_CHECK(step > 0, "slice: step must be positive, got ", step, " (shape ", a.shape(), ", dimension ", dim, ")");
  const int64_t n = a.shape()[dim];
  auto clamp_index = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  start = clamp_index(start);
  end = clamp_index(end);
  const int64_t count = end > start ? (end - start + step - 1) / step : 0;
  const Shape out_shape = a.shape().with_dim(dim, count);
  auto strides = a.shape().strides();
  const int64_t base = start * strides[static_cast<size_t>(dim)];
  strides[static_cast<size_t>(dim)] *= step;
  Tensor<T> out = Tensor<T>::empty(out_shape);
  if (out.numel() > 0)
    detail::gather_strided(out.data(), a.data() + base, strides.data(), out_shape.dims().data(), out_shape.rank());
  autograd::record<T>(out, "slice", {a},
                      [shape = a.shape(), out_shape, strides, base](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        Tensor<T> ga = Tensor<T>::zeros(shape);
                        if (g.numel() > 0)
                          detail::scatter_add_strided(ga.data() + base, strides.data(), g.data(),
                                                      out_shape.dims().data(), out_shape.rank());
                        return autograd::Grads<T>{ga};
                      });
  return out;
}

// The sub-tensor at `index` of dimension `dim`, which the result drops (negative index counts from the end).
template <class T>
Tensor<T> select(const Tensor<T>& a, int dim, int64_t index) {
  dim = a.shape().normalize_dim(dim, "select");
  const int64_t n = a.shape()[dim];
  TESSERA_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dimension ", dim,
                " of shape ", a.shape());
  if (index < 0) index += n;
  const int64_t outer = detail::outer_size(a.shape(), dim), inner = detail::inner_size(a.shape(), dim);
  std::vector<int64_t> dims(a.shape().dims().begin(), a.shape().dims().end());
  dims.erase(dims.begin() + dim);
  Tensor<T> out = Tensor<T>::empty(Shape(std::span<const int64_t>(dims)));
  for (int64_t o = 0; o < outer; ++o) {
    const T* from = a.data() + (o * n + index) * inner;
    std::copy(from, from + inner, out.data() + o * inner);
  }
  autograd::record<T>(out, "select", {a},
                      [shape = a.shape(), outer, inner, n, index](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        Tensor<T> ga = Tensor<T>::zeros(shape);
                        for (int64_t o = 0; o < outer; ++o)
                          std::copy(g.data() + o * inner, g.data() + (o + 1) * inner,
                                    ga.data() + (o * n + index) * inner);
                        return autograd::Grads<T>{ga};
                      });
  return out;
}

// The entries indices[0], indices[1], ... of dimension `dim`, in that order (repeats allowed; the backward adds
// the gradients of repeated entries, in index order).
template <class T>
Tensor<T> index_select(const Tensor<T>& a, int dim, std::span<const int64_t> indices) {
  dim = a.shape().normalize_dim(dim, "index_select");
  const int64_t n = a.shape()[dim];
  for (size_t j = 0; j < indices.size(); ++j)
    TESSERA_CHECK(indices[j] >= 0 && indices[j] < n, "index_select: index ", indices[j], " (position ", j,
                  ") is out of range for dimension ", dim, " of shape ", a.shape());
  const int64_t count = static_cast<int64_t>(indices.size());
  const int64_t outer = detail::outer_size(a.shape(), dim), inner = detail::inner_size(a.shape(), dim);
  Tensor<T> out = Tensor<T>::empty(a.shape().with_dim(dim, count));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < count; ++j) {
      const T* from = a.data() + (o * n + indices[static_cast<size_t>(j)]) * inner;
      std::copy(from, from + inner, out.data() + (o * count + j) * inner);
    }
  autograd::record<T>(out, "index_select", {a},
                      [shape = a.shape(), picked = std::vector<int64_t>(indices.begin(), indices.end()), outer, inner,
                       n](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        Tensor<T> ga = Tensor<T>::zeros(shape);
                        const int64_t count = static_cast<int64_t>(picked.size());
                        for (int64_t o = 0; o < outer; ++o)
                          for (int64_t j = 0; j < count; ++j) {
                            const T* from = g.data() + (o * count + j) * inner;
                            T* to = ga.data() + (o * n + picked[static_cast<size_t>(j)]) * inner;
                            for (int64_t i = 0; i < inner; ++i) to[i] += from[i];
                          }
                        return autograd::Grads<T>{ga};
                      });
  return out;
}

template <class T>
Tensor<T> index_select(const Tensor<T>& a, int dim, const std::vector<int64_t>& indices) {
  return index_select(a, dim, std::span<const int64_t>(indices));
}

}  // namespace tessera::ops
