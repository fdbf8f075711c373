// Fused multi-head self-attention on floats, forward and backward: q, k, v come straight from the packed qkv
// projection (no permuted copies), each (batch, head) tile is one task of an OpenMP loop, and the small products
// run on an AVX2 micro-kernel.
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>

#include <omp.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "tessera/core/storage.hpp"

namespace tessera::kernels {

// Dimension legend: B batch, N tokens, H heads, d head width, C = H·d.
// qkv is (B, N, 3, H, d): token n of batch b holds [q heads | k heads | v heads], so q, k and v of head h are
// (N, d) matrices with row stride 3·C starting at offsets h·d, C + h·d and 2·C + h·d of the batch's first row.
// out is (B, N, C): head h writes columns [h·d, (h+1)·d). probs is (B, H, N, N), the softmax before dropout.

// Attention dropout drops element (i, j) of tile t = b·H + h when the 53-bit uniform drawn from hash(seed, index),
// index = (t·N + i)·N + j, is below p; kept elements are scaled by 1/(1-p). The mask is a pure function of the seed
// and the position, so forward and backward regenerate it identically on any number of threads.
inline uint64_t attention_dropout_threshold(double p) { return static_cast<uint64_t>(std::ceil(p * 0x1.0p53)); }

inline bool attention_dropout_keep(uint64_t seed, uint64_t index, uint64_t threshold) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;  // splitmix64 of the counter
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (z >> 11) >= threshold;
}

namespace attention_detail {

inline int round_up8(int n) { return (n + 7) / 8 * 8; }

// dst (rows, cols_pad) row-major = src (rows, cols) read with row stride ld_src; columns [cols, cols_pad) stay as
// the caller left them (zero from allocation).
inline void pack_rows(float* dst, int cols_pad, const float* src, int64_t ld_src, int rows, int cols) {
  for (int r = 0; r < rows; ++r) std::copy(src + r * ld_src, src + r * ld_src + cols, dst + int64_t(r) * cols_pad);
}

// dst (cols, rows_pad) row-major = transpose of src (rows, cols) read with row stride ld_src; columns
// [rows, round_up8(rows)) of dst are written as zeros, later ones are left alone.
inline void pack_transposed(float* dst, int rows_pad, const float* src, int64_t ld_src, int rows, int cols) {
  int c0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
  // 8 x 8 blocks through registers: unpack pairs, then 64-bit shuffles, then 128-bit lane swaps.
  for (; c0 + 8 <= cols; c0 += 8)
    for (int r0 = 0; r0 < rows; r0 += 8) {
      __m256 x[8];
      for (int i = 0; i < 8; ++i)
        x[i] = r0 + i < rows ? _mm256_loadu_ps(src + (r0 + i) * ld_src + c0) : _mm256_setzero_ps();
      const __m256 t0 = _mm256_unpacklo_ps(x[0], x[1]), t1 = _mm256_unpackhi_ps(x[0], x[1]);
      const __m256 t2 = _mm256_unpacklo_ps(x[2], x[3]), t3 = _mm256_unpackhi_ps(x[2], x[3]);
      const __m256 t4 = _mm256_unpacklo_ps(x[4], x[5]), t5 = _mm256_unpackhi_ps(x[4], x[5]);
      const __m256 t6 = _mm256_unpacklo_ps(x[6], x[7]), t7 = _mm256_unpackhi_ps(x[6], x[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float* d = dst + int64_t(c0) * rows_pad + r0;
      _mm256_storeu_ps(d + 0 * int64_t(rows_pad), _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(d + 1 * int64_t(rows_pad), _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * int64_t(rows_pad), _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * int64_t(rows_pad), _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * int64_t(rows_pad), _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(d + 5 * int64_t(rows_pad), _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * int64_t(rows_pad), _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * int64_t(rows_pad), _mm256_permute2f128_ps(u3, u7, 0x31));
    }
#endif
  const int r_end = round_up8(rows);
  for (int c = c0; c < cols; ++c)
    for (int r = 0; r < r_end; ++r) dst[int64_t(c) * rows_pad + r] = r < rows ? src[r * ld_src + c] : 0.0f;
}

// Prefetches the cache lines of a few row blocks (the next tile's operands) a handful at a time: the kernels call
// step() after every micro-tile, so the fetch overlaps arithmetic instead of stalling on a burst of misses.
class LinePrefetcher {
 public:
  void reset() { *this = LinePrefetcher(); }

  // The block of `rows` rows of `cols` floats, row stride ld; for_write asks for the lines in a writable state.
  void add(const float* p, int64_t ld, int rows, int cols, bool for_write) {
    assert(count_ < kMaxBlocks);
    if (rows <= 0 || cols <= 0) return;
    blocks_[count_++] = {reinterpret_cast<uintptr_t>(p), ld * 4, rows, int64_t(cols) * 4, for_write};
    lines_ += int64_t(rows) * ((int64_t(cols) * 4 + 63) / 64 + 1);
    if (count_ == 1) start_row();
  }

  // Spreads the queued lines over `steps` calls of step().
  void pace(int64_t steps) { per_step_ = int(std::max<int64_t>(1, (lines_ + steps - 1) / std::max<int64_t>(1, steps))); }

  void step() {
    for (int i = 0; i < per_step_ && block_ < count_; ++i) {
      if (blocks_[block_].for_write)
        __builtin_prefetch(reinterpret_cast<const void*>(cursor_), 1, 3);
      else
        __builtin_prefetch(reinterpret_cast<const void*>(cursor_), 0, 3);
      cursor_ += 64;
      if (cursor_ > last_) {
        if (++row_ == blocks_[block_].rows) row_ = 0, ++block_;
        if (block_ < count_) start_row();
      }
    }
  }

 private:
  static constexpr int kMaxBlocks = 8;
  struct Block {
    uintptr_t base;
    int64_t ld_bytes;
    int rows;
    int64_t row_bytes;
    bool for_write;
  };
  void start_row() {
    const Block& b = blocks_[block_];
    const uintptr_t start = b.base + uintptr_t(row_ * b.ld_bytes);
    cursor_ = start & ~uintptr_t(63);
    last_ = (start + uintptr_t(b.row_bytes) - 1) & ~uintptr_t(63);
  }

  Block blocks_[kMaxBlocks];
  int count_ = 0, block_ = 0, row_ = 0, per_step_ = 1;
  int64_t lines_ = 0;
  uintptr_t cursor_ = 0, last_ = 0;
};

#if defined(__AVX2__) && defined(__FMA__)

inline __m256i tail_mask(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float horizontal_max(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// e^x for x <= 0 (softmax arguments): x = n·ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial (Cephes expf
// coefficients), 2^n through the exponent bits; below -87 the result flushes towards zero. Relative error ~2 ulp.
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

// C (MR, 8·NV) = alpha · A (MR, K) · Bp (K, 8·NV) [+ C when accumulate], storing only the first n_store columns.
// A and Bp are row-major with row strides lda and ldb.
template <int MR, int NV>
inline void tile_kernel(int K, const float* A, int64_t lda, const float* Bp, int64_t ldb, float* C,
                        int64_t ldc, float alpha, bool accumulate, int n_store) {
  // Every loop over r and v is unrolled so the accumulators live in registers (12 of the 16 for 6 x 16).
  __m256 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  const float* a = A;
  const float* b = Bp;
  for (int p = 0; p < K; ++p, ++a, b += ldb) {
    __m256 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r * lda);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
  const __m256 alpha_v = _mm256_set1_ps(alpha);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    float* c = C + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const int col = 8 * v;
      __m256 x = _mm256_mul_ps(acc[r][v], alpha_v);
      if (n_store - col >= 8) {
        if (accumulate) x = _mm256_add_ps(x, _mm256_loadu_ps(c + col));
        _mm256_storeu_ps(c + col, x);
      } else if (n_store > col) {
        const __m256i mask = tail_mask(n_store - col);
        if (accumulate) x = _mm256_add_ps(x, _mm256_maskload_ps(c + col, mask));
        _mm256_maskstore_ps(c + col, mask, x);
      }
    }
  }
}

#else

template <int MR, int NV>
inline void tile_kernel(int K, const float* A, int64_t lda, const float* Bp, int64_t ldb, float* C,
                        int64_t ldc, float alpha, bool accumulate, int n_store) {
  constexpr int NR = 8 * NV;
  float acc[MR][NR] = {};
  for (int p = 0; p < K; ++p)
    for (int r = 0; r < MR; ++r) {
      const float ar = A[r * lda + p];
      for (int j = 0; j < NR; ++j) acc[r][j] += ar * Bp[p * ldb + j];
    }
  const int cols = std::min(NR, n_store);
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < cols; ++j) C[r * ldc + j] = alpha * acc[r][j] + (accumulate ? C[r * ldc + j] : 0.0f);
}

#endif

// rows <= 6 for NV = 2 (6 x 16 tiles), rows <= 12 for NV = 1 (12 x 8 tiles: 12 accumulators again).
template <int NV>
inline void tile_rows(int rows, int K, const float* A, int64_t lda, const float* Bp, int64_t ldb,
                      float* C, int64_t ldc, float alpha, bool accumulate, int n_store) {
#define TESSERA_ATTENTION_TILE(MR) \
  case MR: tile_kernel<MR, NV>(K, A, lda, Bp, ldb, C, ldc, alpha, accumulate, n_store); break
  if constexpr (NV == 2) {
    switch (rows) {
      TESSERA_ATTENTION_TILE(1); TESSERA_ATTENTION_TILE(2); TESSERA_ATTENTION_TILE(3);
      TESSERA_ATTENTION_TILE(4); TESSERA_ATTENTION_TILE(5); TESSERA_ATTENTION_TILE(6);
      default: assert(false);
    }
  } else {
    switch (rows) {
      TESSERA_ATTENTION_TILE(1); TESSERA_ATTENTION_TILE(2); TESSERA_ATTENTION_TILE(3);
      TESSERA_ATTENTION_TILE(4); TESSERA_ATTENTION_TILE(5); TESSERA_ATTENTION_TILE(6);
      TESSERA_ATTENTION_TILE(7); TESSERA_ATTENTION_TILE(8); TESSERA_ATTENTION_TILE(9);
      TESSERA_ATTENTION_TILE(10); TESSERA_ATTENTION_TILE(11); TESSERA_ATTENTION_TILE(12);
      default: assert(false);
    }
  }
#undef TESSERA_ATTENTION_TILE
}

// C (M, Nc) = alpha · A (M, K) · Bp (K, Nc) [+ C when accumulate], one thread. A is row-major with row stride lda;
// Bp is row-major with row stride ldb and readable (any values) up to column round_up8(Nc); C has row stride ldc
// and only its first n_store <= round_up8(Nc) columns are written. Column blocks of 16 (6-row tiles) and a last
// block of 8 (12-row tiles). Rows go in chunks whose slice of A stays in L1 beside one (K, 16) panel of Bp while
// the chunk sweeps all column blocks, when that reads less from L2 than sweeping all rows per column block.
inline void small_gemm(int M, int Nc, int K, const float* A, int64_t lda, const float* Bp, int64_t ldb, float* C,
                       int64_t ldc, float alpha, bool accumulate, int n_store, LinePrefetcher& prefetch) {
  constexpr int64_t kL1Floats = 6 * 1024;  // 24 KiB of the 32 KiB L1 for the A chunk and one Bp panel
  const int n_pad = round_up8(Nc);
  const int64_t column_blocks = (n_pad + 15) / 16;
  const int64_t fit = (kL1Floats - 16 * int64_t(K)) / std::max(1, K) / 12 * 12;
  int chunk = M;
  if (fit >= 12 && fit < M) {
    const int64_t chunked = int64_t(M) * K + int64_t(n_pad) * K * ((M + fit - 1) / fit);
    const int64_t by_columns = int64_t(M) * K * column_blocks + int64_t(n_pad) * K;
    if (chunked < by_columns) chunk = int(fit);
  }
  for (int m0 = 0; m0 < M; m0 += chunk) {
    const int m1 = std::min(M, m0 + chunk);
    for (int j0 = 0; j0 < n_pad; j0 += 16) {
      const int store = std::min(16, n_store - j0);
      if (store <= 0) break;
      const bool wide = n_pad - j0 >= 16;
      const int mr = wide ? 6 : 12;
      for (int i0 = m0; i0 < m1; i0 += mr) {
        const int rows = std::min(mr, m1 - i0);
        const float* a = A + i0 * lda;
        float* c = C + i0 * ldc + j0;
        if (wide)
          tile_rows<2>(rows, K, a, lda, Bp + j0, ldb, c, ldc, alpha, accumulate, store);
        else
          tile_rows<1>(rows, K, a, lda, Bp + j0, ldb, c, ldc, alpha, accumulate, store);
        prefetch.step();
      }
    }
  }
}

// Tiles per scheduling chunk: runs of consecutive tiles (so the prefetched next tile is usually the thread's own),
// short enough to balance the threads.
inline int64_t tile_chunk(int64_t tiles) { return std::clamp<int64_t>(tiles / (8 * omp_get_max_threads()), 1, 8); }

// How many micro-tiles small_gemm runs for an (M, Nc) result.
inline int64_t micro_tiles(int M, int Nc) {
  const int n_pad = round_up8(Nc);
  return int64_t(n_pad / 16) * ((M + 5) / 6) + (n_pad % 16 ? (M + 11) / 12 : 0);
}

// Each row of S (N, N) with row stride ld becomes its softmax, in place; only columns [0, N) are read or written.
inline void softmax_rows(float* S, int64_t ld, int N) {
  for (int i = 0; i < N; ++i) {
    float* s = S + i * ld;
#if defined(__AVX2__) && defined(__FMA__)
    const int full = N / 8 * 8;
    const int tail = N - full;
    const __m256i mask = tail_mask(tail);
    const __m256 mask_ps = _mm256_castsi256_ps(mask);
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < full; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
    if (tail)
      vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(s + full, mask), mask_ps));
    const __m256 row_max = _mm256_set1_ps(horizontal_max(vmax));
    __m256 vsum = _mm256_setzero_ps();
    for (int j = 0; j < full; j += 8) {
      const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(s + j), row_max));
      _mm256_storeu_ps(s + j, e);
      vsum = _mm256_add_ps(vsum, e);
    }
    __m256 e_tail = _mm256_setzero_ps();
    if (tail) {
      e_tail = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(_mm256_maskload_ps(s + full, mask), row_max)), mask_ps);
      vsum = _mm256_add_ps(vsum, e_tail);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / horizontal_sum(vsum));
    for (int j = 0; j < full; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
    if (tail) _mm256_maskstore_ps(s + full, mask, _mm256_mul_ps(e_tail, inv));
#else
    float row_max = -INFINITY;
    for (int j = 0; j < N; ++j) row_max = std::max(row_max, s[j]);
    float sum = 0.0f;
    for (int j = 0; j < N; ++j) {
      s[j] = std::exp(s[j] - row_max);
      sum += s[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < N; ++j) s[j] *= inv;
#endif
  }
}

// dS row (length N) = scale · P ∘ (dP − Σ_j dP_j P_j), in place over dP; P is read up to column N only.
inline void softmax_backward_row(float* dP, const float* P, int N, float scale) {
#if defined(__AVX2__) && defined(__FMA__)
  const int full = N / 8 * 8;
  const int tail = N - full;
  const __m256i mask = tail_mask(tail);
  __m256 vdot = _mm256_setzero_ps();
  for (int j = 0; j < full; j += 8) vdot = _mm256_fmadd_ps(_mm256_loadu_ps(dP + j), _mm256_loadu_ps(P + j), vdot);
  if (tail) vdot = _mm256_fmadd_ps(_mm256_maskload_ps(dP + full, mask), _mm256_maskload_ps(P + full, mask), vdot);
  const __m256 dot = _mm256_set1_ps(horizontal_sum(vdot));
  const __m256 sc = _mm256_set1_ps(scale);
  for (int j = 0; j < full; j += 8) {
    const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(P + j), sc);
    _mm256_storeu_ps(dP + j, _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(dP + j), dot)));
  }
  if (tail) {
    const __m256 p = _mm256_mul_ps(_mm256_maskload_ps(P + full, mask), sc);
    _mm256_maskstore_ps(dP + full, mask, _mm256_mul_ps(p, _mm256_sub_ps(_mm256_maskload_ps(dP + full, mask), dot)));
  }
#else
  float dot = 0.0f;
  for (int j = 0; j < N; ++j) dot += dP[j] * P[j];
  for (int j = 0; j < N; ++j) dP[j] = scale * P[j] * (dP[j] - dot);
#endif
}

// Multiplier row i of tile t: 0 where dropped, keep_scale where kept (columns [0, N)).
inline void dropout_row(float* multiplier, uint64_t seed, uint64_t threshold, float keep_scale, int64_t tile, int i,
                        int N) {
  const uint64_t base = (uint64_t(tile) * uint64_t(N) + uint64_t(i)) * uint64_t(N);
  for (int j = 0; j < N; ++j) multiplier[j] = attention_dropout_keep(seed, base + j, threshold) ? keep_scale : 0.0f;
}

}  // namespace attention_detail

// Forward. qkv is (B,N,3,H,d), out is (B,N,H·d), probs is (B,H,N,N) or null (nothing saved).
// Per tile (b, h): S = q kᵀ · d^-1/2, P = softmax of each row of S, probs[b,h] = P, out[b,:,h] = (P ∘ M) v, where M
// is the dropout multiplier (1 when dropout_p == 0). P is computed in place in probs[b,h] (or in a per-thread
// (N, N8) buffer when probs is null), next to copies of q (N, d8), kᵀ (d, N8) and v (N, d8), X8 = X rounded up to
// a multiple of 8. The copies make every operand contiguous: rows of qkv lie 3·C floats apart, a stride that maps
// them onto few L1 sets.
// While a tile computes, the next tile's rows are prefetched.
inline void attention_forward(float* out, float* probs, const float* qkv, int B, int N, int H, int d,
                              double dropout_p = 0.0, uint64_t dropout_seed = 0) {
  using namespace attention_detail;
  assert(B >= 0 && N >= 0 && H >= 0 && d >= 1 && dropout_p >= 0.0 && dropout_p < 1.0);
  const int64_t C = int64_t(H) * d, row = 3 * C, NN = int64_t(N) * N;
  const int N8 = round_up8(N), d8 = round_up8(d);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const bool dropout = dropout_p > 0.0;
  const uint64_t threshold = attention_dropout_threshold(dropout_p);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - dropout_p));
  const int64_t tiles = int64_t(B) * H;
  const int64_t chunk = tile_chunk(tiles);
  auto q_of = [&](int64_t t) { return qkv + t / H * N * row + t % H * d; };
  auto out_of = [&](int64_t t) { return out + t / H * N * C + t % H * d; };
#pragma omp parallel if (tiles > 1)
  {
    AlignedBuffer<float> scratch(probs && !dropout ? 0 : int64_t(N) * N8), Qp(int64_t(N) * d8), Kt(int64_t(d) * N8),
        Vp(int64_t(N) * d8), mult(dropout ? N : 0);
    LinePrefetcher prefetch;
#pragma omp for schedule(dynamic, chunk)
    for (int64_t t = 0; t < tiles; ++t) {
      const float* q = q_of(t);
      const float* k = q + C;
      const float* v = q + 2 * C;
      prefetch.reset();
      if (t + 1 < tiles) {
        const float* next = q_of(t + 1);
        prefetch.add(next + C, row, N, d, false);
        prefetch.add(next, row, N, d, false);
        if (probs) prefetch.add(probs + (t + 1) * NN, N, N, N, true);
        prefetch.add(next + 2 * C, row, N, d, false);
        prefetch.add(out_of(t + 1), C, N, d, true);
        prefetch.pace(micro_tiles(N, N) + micro_tiles(N, d));
      }
      float* P = probs ? probs + t * NN : scratch.data();
      const int64_t ld = probs ? N : N8;
      pack_rows(Qp.data(), d8, q, row, N, d);
      pack_transposed(Kt.data(), N8, k, row, N, d);
      small_gemm(N, N, d, Qp.data(), d8, Kt.data(), N8, P, ld, scale, false, probs ? N : N8, prefetch);
      softmax_rows(P, ld, N);
      const float* Pa = P;
      int64_t ld_pa = ld;
      if (dropout) {
        for (int i = 0; i < N; ++i) {
          dropout_row(mult.data(), dropout_seed, threshold, keep_scale, t, i, N);
          for (int j = 0; j < N; ++j) scratch.data()[int64_t(i) * N8 + j] = P[i * ld + j] * mult.data()[j];
        }
        Pa = scratch.data();
        ld_pa = N8;
      }
      pack_rows(Vp.data(), d8, v, row, N, d);
      small_gemm(N, d, N, Pa, ld_pa, Vp.data(), d8, out_of(t), C, 1.0f, false, d, prefetch);
    }
  }
}

// Backward. dqkv (B,N,3,H,d) += the gradient; dout is (B,N,H·d); qkv and probs are the forward's input and saved P;
// dropout_p and dropout_seed must be the forward's. Per tile, with Pd = P ∘ M and s = d^-1/2:
// dv += Pdᵀ dout, dP = (dout vᵀ) ∘ M, dS = s · P ∘ (dP − rowsum(dP ∘ P)), dq += dS k, dk += dSᵀ q.
// Per-thread buffers: dP/dS (N, N8), Pdᵀ then dSᵀ (N, N8) so that every product reads its left operand by rows,
// vᵀ (d, N8), dout, k, q (N, d8), and Pd, M (N, N8) with dropout.
inline void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs, int B, int N,
                               int H, int d, double dropout_p = 0.0, uint64_t dropout_seed = 0) {
  using namespace attention_detail;
  assert(B >= 0 && N >= 0 && H >= 0 && d >= 1 && dropout_p >= 0.0 && dropout_p < 1.0);
  const int64_t C = int64_t(H) * d, row = 3 * C, NN = int64_t(N) * N;
  const int N8 = round_up8(N), d8 = round_up8(d);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const bool dropout = dropout_p > 0.0;
  const uint64_t threshold = attention_dropout_threshold(dropout_p);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - dropout_p));
  const int64_t tiles = int64_t(B) * H;
  const int64_t chunk = tile_chunk(tiles);
  auto offset_of = [&](int64_t t) { return t / H * N * row + t % H * d; };
  auto dout_of = [&](int64_t t) { return dout + t / H * N * C + t % H * d; };
#pragma omp parallel if (tiles > 1)
  {
    AlignedBuffer<float> dS(int64_t(N) * N8), transposed(int64_t(N) * N8), Vt(int64_t(d) * N8), dOp(int64_t(N) * d8),
        Kp(int64_t(N) * d8), Qp(int64_t(N) * d8), Pd(dropout ? int64_t(N) * N8 : 0),
        mult(dropout ? int64_t(N) * N8 : 0);
    LinePrefetcher prefetch;
#pragma omp for schedule(dynamic, chunk)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t offset = offset_of(t);
      const float* q = qkv + offset;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* dq = dqkv + offset;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      const float* go = dout_of(t);
      const float* P = probs + t * NN;
      prefetch.reset();
      if (t + 1 < tiles) {
        const int64_t next = offset_of(t + 1);
        prefetch.add(dout_of(t + 1), C, N, d, false);
        prefetch.add(qkv + next + 2 * C, row, N, d, false);
        prefetch.add(probs + (t + 1) * NN, N, N, N, false);
        prefetch.add(dqkv + next + 2 * C, row, N, d, true);
        prefetch.add(qkv + next + C, row, N, d, false);
        prefetch.add(dqkv + next, row, N, d, true);
        prefetch.add(qkv + next, row, N, d, false);
        prefetch.add(dqkv + next + C, row, N, d, true);
        prefetch.pace(micro_tiles(N, N) + 3 * micro_tiles(N, d));
      }

      pack_rows(dOp.data(), d8, go, C, N, d);
      pack_transposed(Vt.data(), N8, v, row, N, d);
      if (dropout) {
        for (int i = 0; i < N; ++i) {
          float* m = mult.data() + int64_t(i) * N8;
          dropout_row(m, dropout_seed, threshold, keep_scale, t, i, N);
          for (int j = 0; j < N; ++j) Pd.data()[int64_t(i) * N8 + j] = P[int64_t(i) * N + j] * m[j];
        }
        pack_transposed(transposed.data(), N8, Pd.data(), N8, N, N);
      } else {
        pack_transposed(transposed.data(), N8, P, N, N, N);
      }
      small_gemm(N, d, N, transposed.data(), N8, dOp.data(), d8, dv, row, 1.0f, true, d, prefetch);
      small_gemm(N, N, d, dOp.data(), d8, Vt.data(), N8, dS.data(), N8, 1.0f, false, N8, prefetch);
      for (int i = 0; i < N; ++i) {
        float* ds = dS.data() + int64_t(i) * N8;
        if (dropout) {
          const float* m = mult.data() + int64_t(i) * N8;
          for (int j = 0; j < N; ++j) ds[j] *= m[j];
        }
        softmax_backward_row(ds, P + int64_t(i) * N, N, scale);
      }
      pack_rows(Kp.data(), d8, k, row, N, d);
      small_gemm(N, d, N, dS.data(), N8, Kp.data(), d8, dq, row, 1.0f, true, d, prefetch);
      pack_rows(Qp.data(), d8, q, row, N, d);
      pack_transposed(transposed.data(), N8, dS.data(), N8, N, N);
      small_gemm(N, d, N, transposed.data(), N8, Qp.data(), d8, dk, row, 1.0f, true, d, prefetch);
    }
  }
}

}  // namespace tessera::kernels
