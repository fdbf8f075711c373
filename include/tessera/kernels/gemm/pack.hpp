// Packing for the GEMM: copies a block of op(A) or op(B) into the interleaved slivers the micro-kernel
// streams, so transposes and strides are paid once per block and never inside the micro-kernel.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/kernels/simd.hpp"

namespace tessera::kernels::gemm_impl {

// Interleaves `lines` source lines into a sliver W wide:
//   dst[k * W + r] = src[r * ld + k]  for r < lines, k < len;   dst[k * W + r] = 0  for lines <= r < W.
// Source line r is contiguous in k; this is the transposing case (rows of A, or columns of B when trans_b).
// Square blocks of V::width lines are transposed in registers (simd::transpose) and stored a whole vector wide
// even where fewer lanes belong to the row: the extra lanes spill into the start of the next row, which a later
// store overwrites (line groups go right to left, k upwards). Stores that would reach past the sliver's end are
// cut to their own row (store_partial), so nothing is written outside the sliver.
template <int W, class V = simd::VecNative>
inline void pack_transposed(const float* src, int64_t ld, int lines, int len, float* dst) {
  int k = 0;
  if constexpr (V::width > 1) {
    constexpr int w = V::width;
    constexpr int last_group = (W - 1) / w * w;
    for (; k + w <= len; k += w) {
      for (int r0 = last_group; r0 >= 0; r0 -= w) {
        V v[w];
        for (int q = 0; q < w; ++q) v[q] = r0 + q < lines ? V::load(src + (r0 + q) * ld + k) : V::zero();
        simd::transpose(v);
        for (int q = 0; q < w; ++q) {
          float* row = dst + (k + q) * W + r0;
          if ((k + q) * W + r0 + w <= len * W)
            v[q].store(row);
          else
            v[q].store_partial(row, std::min(w, W - r0));
        }
      }
    }
  }
  for (; k < len; ++k) {
    for (int r = 0; r < lines; ++r) dst[k * W + r] = src[r * ld + k];
    for (int r = lines; r < W; ++r) dst[k * W + r] = 0.0f;
  }
}

// Copies `len` source lines, each holding `width` contiguous elements, into a sliver W wide:
//   dst[k * W + c] = src[k * ld + c]  for c < width;   dst[k * W + c] = 0  for width <= c < W.
// This is the direct case (columns of A when trans_a, rows of B).
template <int W>
inline void pack_direct(const float* src, int64_t ld, int width, int len, float* dst) {
  if (width == W) {
    for (int k = 0; k < len; ++k)
      for (int c = 0; c < W; ++c) dst[k * W + c] = src[k * ld + c];
  } else {
    for (int k = 0; k < len; ++k) {
      for (int c = 0; c < width; ++c) dst[k * W + c] = src[k * ld + c];
      for (int c = width; c < W; ++c) dst[k * W + c] = 0.0f;
    }
  }
}

// Packs rows [i0, i0 + rows) and depth [p0, p0 + kc) of op(A) (A is (M,K), or stored (K,M) when trans_a)
// into ceil(rows / MR) slivers of (kc, MR): sliver t holds rows i0 + t*MR.., element (r, k) at
// dst[t * kc * MR + k * MR + r]; rows past the block are zero.
template <int MR>
inline void pack_a(bool trans_a, const float* A, int64_t lda, int i0, int rows, int p0, int kc, float* dst) {
  for (int t = 0; t * MR < rows; ++t) {
    const int i = i0 + t * MR;
    const int lines = std::min(MR, rows - t * MR);
    float* sliver = dst + int64_t(t) * kc * MR;
    if (trans_a)
      pack_direct<MR>(A + int64_t(p0) * lda + i, lda, lines, kc, sliver);
    else
      pack_transposed<MR>(A + int64_t(i) * lda + p0, lda, lines, kc, sliver);
  }
}

// Packs one sliver of op(B) (B is (K,N), or stored (N,K) when trans_b): columns [j, j + cols), cols <= NR,
// depth [p0, p0 + kc) into dst as (kc, NR), element (k, c) at dst[k * NR + c]; columns past cols are zero.
template <int NR>
inline void pack_b_sliver(bool trans_b, const float* B, int64_t ldb, int j, int cols, int p0, int kc, float* dst) {
  if (trans_b)
    pack_transposed<NR>(B + int64_t(j) * ldb + p0, ldb, cols, kc, dst);
  else
    pack_direct<NR>(B + int64_t(p0) * ldb + j, ldb, cols, kc, dst);
}

// Packs slivers [s0, s1) of a panel of op(B) whose columns start at j and end before j + cols (cols may
// cut the last sliver), depth [p0, p0 + kc): sliver s at dst + s * kc * NR, laid out as pack_b_sliver
// lays it. Untransposed, the full slivers are copied row by row, so B is read in order: the hardware
// prefetcher follows that, where sliver by sliver it meets a new row every NR floats (twice as slow on
// the deep weight-gradient products).
template <int NR>
inline void pack_b_slivers(bool trans_b, const float* B, int64_t ldb, int j, int cols, int p0, int kc, int s0, int s1,
                           float* dst) {
  const int full_end = trans_b ? s0 : std::max(s0, std::min(s1, cols / NR));
  for (int k = 0; k < kc && full_end > s0; ++k) {
    const float* row = B + int64_t(p0 + k) * ldb + j;
    for (int s = s0; s < full_end; ++s) {
      float* out = dst + (int64_t(s) * kc + k) * NR;
      for (int c = 0; c < NR; ++c) out[c] = row[s * NR + c];
    }
  }
  for (int s = full_end; s < s1; ++s)
    pack_b_sliver<NR>(trans_b, B, ldb, j + s * NR, std::min(NR, cols - s * NR), p0, kc, dst + int64_t(s) * kc * NR);
}

}  // namespace tessera::kernels::gemm_impl
