// Element-wise loops on raw buffers: unary maps, binary maps with broadcasting, and reduction of a broadcast
// gradient back to its operand's shape. Layout: row-major; a stride of 0 repeats an operand along that dimension.
#pragma once

#include <cassert>
#include <cstdint>

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
