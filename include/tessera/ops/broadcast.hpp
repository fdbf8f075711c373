// NumPy broadcasting for ops: the broadcast shape of two operands, and reducing a gradient back to an operand's shape.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/elementwise.hpp"

namespace tessera::ops {

// The shape both operands broadcast to; throws naming `op` and both shapes when they are incompatible.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const int rank = std::max(a.rank(), b.rank());
  std::array<int64_t, kMaxRank> dims{};
  for (int i = 0; i < rank; ++i) {
    const int ia = a.rank() - rank + i, ib = b.rank() - rank + i;
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    TESSERA_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b,
                  " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    dims[static_cast<size_t>(i)] = da == 1 ? db : da;
  }
  return Shape(std::span<const int64_t>(dims.data(), static_cast<size_t>(rank)));
}

// Element strides for reading `operand` as if it had shape `target` (0 where it is broadcast).
inline std::array<int64_t, kMaxRank> broadcast_strides(const Shape& operand, const Shape& target) {
  std::array<int64_t, kMaxRank> strides{};
  const auto own = operand.strides();
  const int offset = target.rank() - operand.rank();
  for (int i = 0; i < operand.rank(); ++i)
    strides[static_cast<size_t>(i + offset)] = operand[i] == 1 ? 0 : own[static_cast<size_t>(i)];
  return strides;
}

// When `operand` broadcast to `target` repeats one row over leading dimensions — it is (1, ..., 1, s_k, ..., s_r)
// or (s_k, ..., s_r) with s_k.. equal to target's last dimensions, like a bias — the length of that row; else 0.
inline int64_t broadcast_row_length(const Shape& operand, const Shape& target) {
  const int offset = target.rank() - operand.rank();
  int first = 0;  // operand's leading dimensions of size 1
  while (first < operand.rank() && operand[first] == 1) ++first;
  int64_t row = 1;
  for (int i = first; i < operand.rank(); ++i) {
    if (operand[i] != target[i + offset]) return 0;
    row *= operand[i];
  }
  return row;
}

// Sums `gradient` (of the broadcast shape) over the broadcast dimensions so it has `shape`.
template <class T>
Tensor<T> sum_to_shape(const Tensor<T>& gradient, const Shape& shape) {
  if (gradient.shape() == shape) return gradient;
  Tensor<T> reduced = Tensor<T>::zeros(shape);
  if (gradient.numel() == 0) return reduced;
  if (gradient.rank() == 0) {
    reduced.data()[0] = gradient.data()[0];
    return reduced;
  }
  if (const int64_t row = broadcast_row_length(shape, gradient.shape()); row > 0) {
    // The bias case: column sums of gradient seen as (rows, row), in row order like the general walk below.
    kernels::column_sums(reduced.data(), gradient.data(), gradient.numel() / row, row);
    return reduced;
  }
  const auto strides = broadcast_strides(shape, gradient.shape());
  kernels::sum_to_strided(reduced.data(), strides.data(), gradient.data(), gradient.shape().dims().data(),
                          gradient.rank());
  return reduced;
}

}  // namespace tessera::ops
