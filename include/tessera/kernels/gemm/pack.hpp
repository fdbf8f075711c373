// Packing for the GEMM: copies a block of op(A) or op(B) into the interleaved slivers the micro-kernel
// streams, so transposes and strides are paid once per block and never inside the micro-kernel.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace tessera::kernels::gemm_impl {

#if defined(__AVX2__)
// In-register transpose of an 8x8 block: on return r[k] holds what was column k.
inline void transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]);
  const __m256 t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]);
  const __m256 t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]);
  const __m256 t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]);
  const __m256 t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Stores the first `count` (1..8) lanes of v at p.
inline void store_lanes(float* p, __m256 v, int count) {
  if (count == 8) {
    _mm256_storeu_ps(p, v);
  } else {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(count), lane), v);
  }
}
#endif

// Interleaves `lines` source lines into a sliver W wide:
//   dst[k * W + r] = src[r * ld + k]  for r < lines, k < len;   dst[k * W + r] = 0  for lines <= r < W.
// Source line r is contiguous in k; this is the transposing case (rows of A, or columns of B when trans_b).
// With AVX2, 8x8 blocks are transposed in registers and stored 8 lanes wide even where fewer belong to
// the row: the extra lanes spill into the start of the next row, which a later store overwrites (row
// groups go right to left, k upwards). Stores that would reach past the sliver's end are masked to their
// own row, so nothing is written outside the sliver.
template <int W>
inline void pack_transposed(const float* src, int64_t ld, int lines, int len, float* dst) {
  int k = 0;
#if defined(__AVX2__)
  constexpr int last_group = (W - 1) / 8 * 8;
  for (; k + 8 <= len; k += 8) {
    for (int r0 = last_group; r0 >= 0; r0 -= 8) {
      __m256 v[8];
      for (int q = 0; q < 8; ++q)
        v[q] = r0 + q < lines ? _mm256_loadu_ps(src + (r0 + q) * ld + k) : _mm256_setzero_ps();
      transpose8x8(v);
      for (int q = 0; q < 8; ++q) {
        float* row = dst + (k + q) * W + r0;
        if ((k + q) * W + r0 + 8 <= len * W)
          _mm256_storeu_ps(row, v[q]);
        else
          store_lanes(row, v[q], std::min(8, W - r0));
      }
    }
  }
#endif
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
