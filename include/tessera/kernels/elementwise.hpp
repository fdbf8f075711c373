// Element-wise loops on raw buffers: unary maps, binary maps with broadcasting, and reduction of a broadcast
// gradient back to its operand's shape. Layout: row-major; a stride of 0 repeats an operand along that dimension.
#pragma once

#include <cassert>
#include <cstdint>
#include <type_traits>

namespace tessera::kernels {

inline constexpr int kElementwiseMaxRank = 6;
inline constexpr int64_t kParallelGrain = 1 << 15;  // below this many elements threads cost more than they save

// out[i] = f(inp[i]) for i in [0, n).
template <class T, class F>
void map_unary(T* out, const T* inp, int64_t n, F f) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = f(inp[i]);
}

// out[i] = f(a[i], b[i]) for i in [0, n).
template <class T, class F>
void map_binary(T* out, const T* a, const T* b, int64_t n, F f) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
}

// out (dims[0..rank)) = f(a, b) where a and b are read through element strides (0 on broadcast dimensions).
template <class T, class F>
void map_binary_strided(T* out, const T* a, const int64_t* a_strides, const T* b, const int64_t* b_strides,
                        const int64_t* dims, int rank, F f) {
  assert(rank >= 1 && rank <= kElementwiseMaxRank);
  const int64_t inner = dims[rank - 1];
  const int64_t a_inner = a_strides[rank - 1], b_inner = b_strides[rank - 1];
  int64_t outer = 1;
  for (int d = 0; d < rank - 1; ++d) outer *= dims[d];
#pragma omp parallel for schedule(static) if (outer * inner > kParallelGrain)
  for (int64_t row = 0; row < outer; ++row) {
    int64_t a_offset = 0, b_offset = 0, rest = row;
    for (int d = rank - 2; d >= 0; --d) {
      const int64_t index = rest % dims[d];
      rest /= dims[d];
      a_offset += index * a_strides[d];
      b_offset += index * b_strides[d];
    }
    T* o = out + row * inner;
    const T* pa = a + a_offset;
    const T* pb = b + b_offset;
    for (int64_t i = 0; i < inner; ++i) o[i] = f(pa[i * a_inner], pb[i * b_inner]);
  }
}

// out[r, j] = f(a[r, j], row[j]) for r in [0, rows), j in [0, cols): a bias added to every row. out and a are
// read by rows ld_out and ld_a elements apart, row is (cols). row_first swaps the operands: out = f(row[j], a[r, j]).
template <bool row_first = false, class T, class F>
void map_binary_rows(T* out, int64_t ld_out, const T* a, int64_t ld_a, const T* row, int64_t rows, int64_t cols,
                     F f) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = a + r * ld_a;
    T* o = out + r * ld_out;
    for (int64_t j = 0; j < cols; ++j) o[j] = row_first ? f(row[j], x[j]) : f(x[j], row[j]);
  }
}

// out[r, j] = inp[r, j] for r in [0, rows), j in [0, cols), rows ld_out and ld_inp elements apart.
template <class T>
void copy_rows(T* out, int64_t ld_out, const T* inp, int64_t ld_inp, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) out[r * ld_out + j] = inp[r * ld_inp + j];
}

// sums[j] += inp[0, j] + inp[1, j] + ... + inp[rows-1, j], added in row order for every column (the gradient of
// a bias). inp is (rows, cols) row-major, sums is (cols). Threads take disjoint blocks of columns and each column
// is summed in the same order on any number of threads, so the result does not depend on the thread count.
template <class T>
void column_sums(T* sums, const T* inp, int64_t rows, int64_t cols) {
  constexpr int64_t kBlock = 32;  // columns per task
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  auto sum_block = [=](int64_t j0, auto width) {
    T acc[kBlock];
    for (int64_t j = 0; j < width; ++j) acc[j] = sums[j0 + j];
    for (int64_t r = 0; r < rows; ++r) {
      const T* x = inp + r * cols + j0;
      for (int64_t j = 0; j < width; ++j) acc[j] += x[j];
    }
    for (int64_t j = 0; j < width; ++j) sums[j0 + j] = acc[j];
  };
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain && blocks > 1)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t j0 = block * kBlock;
    if (cols - j0 >= kBlock)
      sum_block(j0, std::integral_constant<int64_t, kBlock>{});
    else
      sum_block(j0, cols - j0);
  }
}

// reduced (zero-initialised by the caller) += inp summed over the dimensions where reduced_strides is 0.
// inp is contiguous with dims[0..rank); reduced is read/written through reduced_strides. Sequential in input
// order, so the result does not depend on the thread count.
template <class T>
void sum_to_strided(T* reduced, const int64_t* reduced_strides, const T* inp, const int64_t* dims, int rank) {
  assert(rank >= 1 && rank <= kElementwiseMaxRank);
  int64_t index[kElementwiseMaxRank] = {};
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= dims[d];
  int64_t offset = 0;
  for (int64_t i = 0; i < n; ++i) {
    reduced[offset] += inp[i];
    for (int d = rank - 1; d >= 0; --d) {  // advance the multi-index like an odometer
      offset += reduced_strides[d];
      if (++index[d] < dims[d]) break;
      offset -= reduced_strides[d] * dims[d];
      index[d] = 0;
    }
  }
}

}  // namespace tessera::kernels
