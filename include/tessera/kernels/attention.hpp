// Fused multi-head self-attention on floats, forward and backward: q, k, v come straight from the packed qkv
// projection (no permuted copies), each (batch, head) tile is one task of an OpenMP loop, and the small products,
// the softmax rows and the transposes run on the vector type V of kernels/simd.hpp (default: the widest the
// translation unit is compiled for, 16 lanes with AVX-512, 8 with AVX2).
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>

#include "tessera/core/rng.hpp"
#include "tessera/core/storage.hpp"
#include "tessera/core/threads.hpp"
#include "tessera/kernels/simd.hpp"
#include "tessera/kernels/softmax.hpp"

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
  return (splitmix64(seed + index * kSplitmix64Increment) >> 11) >= threshold;
}

namespace attention_detail {

// n rounded up to a whole number of vectors V: the padded width of every per-thread copy.
template <class V>
inline int round_up_to_vectors(int n) {
  return (n + V::width - 1) / V::width * V::width;
}

// dst (rows, cols_pad) row-major = src (rows, cols) read with row stride ld_src; columns [cols, cols_pad) stay as
// the caller left them (zero from allocation).
inline void pack_rows(float* dst, int cols_pad, const float* src, int64_t ld_src, int rows, int cols) {
  for (int r = 0; r < rows; ++r) std::copy(src + r * ld_src, src + r * ld_src + cols, dst + int64_t(r) * cols_pad);
}

// dst (cols, rows_pad) row-major = transpose of src (rows, cols) read with row stride ld_src, in square blocks of
// V::width through registers; columns [rows, round_up_to_vectors(rows)) of dst are written as zeros, later ones are
// left alone.
template <class V>
inline void pack_transposed(float* dst, int rows_pad, const float* src, int64_t ld_src, int rows, int cols) {
  constexpr int w = V::width;
  int c0 = 0;
  if constexpr (w > 1) {
    for (; c0 + w <= cols; c0 += w)
      for (int r0 = 0; r0 < rows; r0 += w) {
        V x[w];
#pragma GCC unroll 16
        for (int i = 0; i < w; ++i) x[i] = r0 + i < rows ? V::load(src + (r0 + i) * ld_src + c0) : V::zero();
        simd::transpose(x);
#pragma GCC unroll 16
        for (int i = 0; i < w; ++i) x[i].store(dst + int64_t(c0 + i) * rows_pad + r0);
      }
  }
  const int r_end = round_up_to_vectors<V>(rows);
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

// The register tiles of the small products, per vector width, so that the accumulators fit the register file:
// wide tiles of wide_rows x 2 vectors, and narrow tiles of narrow_rows x 1 vector for a last column block one
// vector wide. 16 ymm (AVX2): 6 x 2 and 12 x 1, 12 accumulators each; 32 zmm (AVX-512): 12 x 2 (24 accumulators)
// and 12 x 1. Every width of 16 lanes (VecAvx512, VecPair<VecAvx2>) takes the AVX-512 shape.
template <class V>
struct TileShape {
  static constexpr int wide_vectors = 2;
  static constexpr int wide_columns = wide_vectors * V::width;
  static constexpr int wide_rows = V::width >= 16 ? 12 : 6;
  static constexpr int narrow_rows = 12;
  static_assert(narrow_rows % wide_rows == 0, "row chunks are whole numbers of both tiles");
};

// A row-major operand: element (i, j) at p[i * ld + j].
struct TileOperand {
  const float* p;
  int64_t ld;
};

// One small product, C (M, Nc) = alpha · A (M, K) · B (K, Nc) [+ C when accumulate], C with row stride ldc. B is
// readable (any values) up to column round_up_to_vectors(Nc); only the first n_store columns of C are written
// (n_store <= round_up_to_vectors(Nc)).
struct SmallGemm {
  int M, Nc, K;
  TileOperand a, b;
  float* c;
  int64_t ldc;
  int n_store;
  float alpha = 1.0f;
  bool accumulate = false;
};

// Rows [i0, i0 + MR) and columns [j0, j0 + NV·width) of g's result, of which the first n_store columns are stored:
// per p < K, NV vectors of B's row p are loaded and A's (i, p) broadcast and fused-multiply-added into acc[i][:]
// (one rounding per term, in increasing p); then c = alpha · acc [+ c]. Every loop over r and v is unrolled so the
// accumulators live in registers.
template <class V, int MR, int NV>
inline void tile_kernel(const SmallGemm& g, int i0, int j0, int n_store) {
  constexpr int w = V::width;
  const int K = g.K;
  const int64_t lda = g.a.ld, ldb = g.b.ld, ldc = g.ldc;
  const float* a = g.a.p + i0 * lda;
  const float* b = g.b.p + j0;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  for (int p = 0; p < K; ++p, ++a, b += ldb) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * w);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V ar = V::load_broadcast(a + r * lda);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = fmadd(ar, bv[v], acc[r][v]);
    }
  }
  // g's fields are read into locals first: a vector store may alias anything (the intrinsics store through a
  // may_alias type), so g.accumulate read after one would be reloaded and tested again after every store.
  const V alpha = V::broadcast(g.alpha);
  const bool accumulate = g.accumulate;
  float* c = g.c + i0 * ldc + j0;
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const int col = v * w;
      float* cr = c + r * ldc + col;
      V x = acc[r][v] * alpha;
      if (n_store - col >= w) {
        if (accumulate) x = x + V::load(cr);
        x.store(cr);
      } else if (n_store > col) {
        if (accumulate) x = x + V::load_partial(cr, n_store - col, 0.0f);
        x.store_partial(cr, n_store - col);
      }
    }
}

// tile_kernel for a run of rows <= MR rows, the row count made a compile-time constant.
template <class V, int NV, int MR>
inline void tile_rows(int rows, const SmallGemm& g, int i0, int j0, int n_store) {
  if constexpr (MR > 1)
    if (rows < MR) return tile_rows<V, NV, MR - 1>(rows, g, i0, j0, n_store);
  tile_kernel<V, MR, NV>(g, i0, j0, n_store);
}

// g on one thread: column blocks of 2 vectors (wide tiles) and a last block of 1 vector (narrow tiles). Rows go in
// chunks whose slice of A stays in L1 beside one (K, 2 vectors) panel of B while the chunk sweeps all column
// blocks, when that reads less from L2 than sweeping all rows per column block.
template <class V>
inline void small_gemm(const SmallGemm& g, LinePrefetcher& prefetch) {
  using Shape = TileShape<V>;
  constexpr int64_t kL1Floats = 6 * 1024;  // 24 KiB of the 32 KiB L1 for the A chunk and one B panel
  const int M = g.M, K = g.K;
  const int n_pad = round_up_to_vectors<V>(g.Nc);
  const int64_t column_blocks = (n_pad + Shape::wide_columns - 1) / Shape::wide_columns;
  const int64_t fit =
      (kL1Floats - Shape::wide_columns * int64_t(K)) / std::max(1, K) / Shape::narrow_rows * Shape::narrow_rows;
  int chunk = M;
  if (fit >= Shape::narrow_rows && fit < M) {
    const int64_t chunked = int64_t(M) * K + int64_t(n_pad) * K * ((M + fit - 1) / fit);
    const int64_t by_columns = int64_t(M) * K * column_blocks + int64_t(n_pad) * K;
    if (chunked < by_columns) chunk = int(fit);
  }
  for (int m0 = 0; m0 < M; m0 += chunk) {
    const int m1 = std::min(M, m0 + chunk);
    for (int j0 = 0; j0 < n_pad; j0 += Shape::wide_columns) {
      const int store = std::min(Shape::wide_columns, g.n_store - j0);
      if (store <= 0) break;
      const bool wide = n_pad - j0 >= Shape::wide_columns;
      const int mr = wide ? Shape::wide_rows : Shape::narrow_rows;
      for (int i0 = m0; i0 < m1; i0 += mr) {
        const int rows = std::min(mr, m1 - i0);
        if (wide)
          tile_rows<V, Shape::wide_vectors, Shape::wide_rows>(rows, g, i0, j0, store);
        else
          tile_rows<V, 1, Shape::narrow_rows>(rows, g, i0, j0, store);
        prefetch.step();
      }
    }
  }
}

// Tiles per scheduling chunk: runs of consecutive tiles (so the prefetched next tile is usually the thread's own),
// short enough to balance the threads.
inline int64_t tile_chunk(int64_t tiles) { return std::clamp<int64_t>(tiles / (8 * tessera::num_threads()), 1, 8); }

// How many micro-tiles small_gemm<V> runs for an (M, Nc) result.
template <class V>
inline int64_t micro_tiles(int M, int Nc) {
  using Shape = TileShape<V>;
  const int n_pad = round_up_to_vectors<V>(Nc);
  return int64_t(n_pad / Shape::wide_columns) * ((M + Shape::wide_rows - 1) / Shape::wide_rows) +
         (n_pad % Shape::wide_columns ? (M + Shape::narrow_rows - 1) / Shape::narrow_rows : 0);
}

// Per-thread copies of one tile's q (N, dp) and kᵀ (d, Np), padded to whole vectors, and the product that makes
// the scores from them.
template <class V>
struct ScoreBuffers {
  int N, d;
  AlignedBuffer<float> Qp, Kt;
  ScoreBuffers(int N_, int d_)
      : N(N_), d(d_), Qp(int64_t(N_) * round_up_to_vectors<V>(d_)), Kt(int64_t(d_) * round_up_to_vectors<V>(N_)) {}

  // S (N, N) with row stride ld (N <= ld <= Np; columns [N, ld) get zeros) = q kᵀ · scale, where q and k are
  // (N, d) with row stride `row`.
  void scores(float* S, int64_t ld, const float* q, const float* k, int64_t row, float scale,
              LinePrefetcher& prefetch) {
    const int Np = round_up_to_vectors<V>(N), dp = round_up_to_vectors<V>(d);
    pack_rows(Qp.data(), dp, q, row, N, d);
    pack_transposed<V>(Kt.data(), Np, k, row, N, d);
    small_gemm<V>({.M = N, .Nc = N, .K = d, .a = {Qp.data(), dp}, .b = {Kt.data(), Np}, .c = S, .ldc = ld,
                   .n_store = int(ld), .alpha = scale},
                  prefetch);
  }
};

// Each of `rows` rows of S (row stride ld) becomes its softmax over columns [0, cols), in place, by
// kernels::softmax_forward's row function: the same bits as ops::softmax of the same row.
template <class V>
inline void softmax_rows(float* S, int64_t ld, int rows, int cols) {
  for (int i = 0; i < rows; ++i) softmax_forward_row<V>(S + i * ld, S + i * ld, cols);
}

// dS row (length N) = scale · P ∘ (dP − Σ_j dP_j P_j), in place over dP; P is read up to column N only. Whole
// vectors, then one masked vector for the tail (as softmax_forward_row, for the same reason).
template <class V>
inline void softmax_backward_row(float* dP, const float* P, int N, float scale) {
  constexpr int w = V::width;
  const int full = N / w * w, tail = N - full;
  V acc = V::zero();
  for (int j = 0; j < full; j += w) acc = fmadd(V::load(dP + j), V::load(P + j), acc);
  if (tail) acc = fmadd(V::load_partial(dP + full, tail, 0.0f), V::load_partial(P + full, tail, 0.0f), acc);
  const V dot = V::broadcast(reduce_add(acc)), s = V::broadcast(scale);
  for (int j = 0; j < full; j += w) ((V::load(P + j) * s) * (V::load(dP + j) - dot)).store(dP + j);
  if (tail)
    ((V::load_partial(P + full, tail, 0.0f) * s) * (V::load_partial(dP + full, tail, 0.0f) - dot))
        .store_partial(dP + full, tail);
}

// The dropout of one call: element (i, j) of tile t kept per attention_dropout_keep, kept ones scaled by keep_scale.
struct DropoutMask {
  bool on;
  uint64_t seed, threshold;
  float keep_scale;
  DropoutMask(double p, uint64_t seed_)
      : on(p > 0.0), seed(seed_), threshold(attention_dropout_threshold(p)),
        keep_scale(static_cast<float>(1.0 / (1.0 - p))) {}

  // Multiplier row i of tile t: 0 where dropped, keep_scale where kept (columns [0, N)).
  void row(float* multiplier, int64_t tile, int i, int N) const {
    const uint64_t base = (uint64_t(tile) * uint64_t(N) + uint64_t(i)) * uint64_t(N);
    for (int j = 0; j < N; ++j) multiplier[j] = attention_dropout_keep(seed, base + j, threshold) ? keep_scale : 0.0f;
  }
};

}  // namespace attention_detail

// scores (B, H, N, N) = q kᵀ · d^-1/2 of every tile, computed as attention_forward computes its S (same packing,
// same products), so softmax_forward of a row of scores gives attention_forward's row of probs bit for bit.
template <class V = simd::VecNative>
inline void attention_scores(float* scores, const float* qkv, int B, int N, int H, int d) {
  using namespace attention_detail;
  assert(B >= 0 && N >= 0 && H >= 0 && d >= 1);
  const int64_t C = int64_t(H) * d, row = 3 * C, NN = int64_t(N) * N, tiles = int64_t(B) * H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
#pragma omp parallel if (tiles > 1)
  {
    ScoreBuffers<V> buffers(N, d);
    LinePrefetcher prefetch;
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tiles; ++t) {
      const float* q = qkv + t / H * N * row + t % H * d;
      buffers.scores(scores + t * NN, N, q, q + C, row, scale, prefetch);
    }
  }
}

// Forward. qkv is (B,N,3,H,d), out is (B,N,H·d), probs is (B,H,N,N) or null (nothing saved).
// Per tile (b, h): S = q kᵀ · d^-1/2, P = softmax of each row of S, probs[b,h] = P, out[b,:,h] = (P ∘ M) v, where M
// is the dropout multiplier (1 when dropout_p == 0). P is computed in place in probs[b,h] (or in a per-thread
// (N, Np) buffer when probs is null), next to copies of q (N, dp), kᵀ (d, Np) and v (N, dp), Xp = X rounded up to
// a whole number of vectors. The copies make every operand contiguous: rows of qkv lie 3·C floats apart, a stride
// that maps them onto few L1 sets.
// While a tile computes, the next tile's rows are prefetched.
template <class V = simd::VecNative>
inline void attention_forward(float* out, float* probs, const float* qkv, int B, int N, int H, int d,
                              double dropout_p = 0.0, uint64_t dropout_seed = 0) {
  using namespace attention_detail;
  assert(B >= 0 && N >= 0 && H >= 0 && d >= 1 && dropout_p >= 0.0 && dropout_p < 1.0);
  const int64_t C = int64_t(H) * d, row = 3 * C, NN = int64_t(N) * N, tiles = int64_t(B) * H;
  const int Np = round_up_to_vectors<V>(N), dp = round_up_to_vectors<V>(d);
  const DropoutMask mask(dropout_p, dropout_seed);
  auto q_of = [&](int64_t t) { return qkv + t / H * N * row + t % H * d; };
  auto out_of = [&](int64_t t) { return out + t / H * N * C + t % H * d; };
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
#pragma omp parallel if (tiles > 1)
  {
    AlignedBuffer<float> scratch(probs && !mask.on ? 0 : int64_t(N) * Np), Vp(int64_t(N) * dp), mult(mask.on ? N : 0);
    ScoreBuffers<V> score_buffers(N, d);
    LinePrefetcher prefetch;
#pragma omp for schedule(dynamic, tile_chunk(tiles))
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
        prefetch.pace(micro_tiles<V>(N, N) + micro_tiles<V>(N, d));
      }
      float* P = probs ? probs + t * NN : scratch.data();
      const int64_t ld = probs ? N : Np;
      score_buffers.scores(P, ld, q, k, row, scale, prefetch);
      softmax_rows<V>(P, ld, N, N);
      const float* Pa = P;
      int64_t ld_pa = ld;
      if (mask.on) {
        for (int i = 0; i < N; ++i) {
          mask.row(mult.data(), t, i, N);
          for (int j = 0; j < N; ++j) scratch.data()[int64_t(i) * Np + j] = P[i * ld + j] * mult.data()[j];
        }
        Pa = scratch.data();
        ld_pa = Np;
      }
      pack_rows(Vp.data(), dp, v, row, N, d);
      small_gemm<V>({.M = N, .Nc = d, .K = N, .a = {Pa, ld_pa}, .b = {Vp.data(), dp}, .c = out_of(t), .ldc = C,
                     .n_store = d},
                    prefetch);
    }
  }
}

// Backward. dqkv (B,N,3,H,d) += the gradient; dout is (B,N,H·d); qkv and probs are the forward's input and saved P;
// dropout_p and dropout_seed must be the forward's. Per tile, with Pd = P ∘ M and s = d^-1/2:
// dv += Pdᵀ dout, dP = (dout vᵀ) ∘ M, dS = s · P ∘ (dP − rowsum(dP ∘ P)), dq += dS k, dk += dSᵀ q.
// Per-thread buffers: dP/dS (N, Np), Pdᵀ then dSᵀ (N, Np) so that every product reads its left operand by rows,
// vᵀ (d, Np), dout, k, q (N, dp), and Pd, M (N, Np) with dropout.
template <class V = simd::VecNative>
inline void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs, int B, int N,
                               int H, int d, double dropout_p = 0.0, uint64_t dropout_seed = 0) {
  using namespace attention_detail;
  assert(B >= 0 && N >= 0 && H >= 0 && d >= 1 && dropout_p >= 0.0 && dropout_p < 1.0);
  const int64_t C = int64_t(H) * d, row = 3 * C, NN = int64_t(N) * N, tiles = int64_t(B) * H;
  const int Np = round_up_to_vectors<V>(N), dp = round_up_to_vectors<V>(d);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const DropoutMask mask(dropout_p, dropout_seed);
  auto offset_of = [&](int64_t t) { return t / H * N * row + t % H * d; };
  auto dout_of = [&](int64_t t) { return dout + t / H * N * C + t % H * d; };
#pragma omp parallel if (tiles > 1)
  {
    AlignedBuffer<float> dS(int64_t(N) * Np), transposed(int64_t(N) * Np), Vt(int64_t(d) * Np), dOp(int64_t(N) * dp),
        Kp(int64_t(N) * dp), Qp(int64_t(N) * dp), Pd(mask.on ? int64_t(N) * Np : 0),
        mult(mask.on ? int64_t(N) * Np : 0);
    LinePrefetcher prefetch;
#pragma omp for schedule(dynamic, tile_chunk(tiles))
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
        prefetch.pace(micro_tiles<V>(N, N) + 3 * micro_tiles<V>(N, d));
      }

      pack_rows(dOp.data(), dp, go, C, N, d);
      pack_transposed<V>(Vt.data(), Np, v, row, N, d);
      if (mask.on) {
        for (int i = 0; i < N; ++i) {
          float* m = mult.data() + int64_t(i) * Np;
          mask.row(m, t, i, N);
          for (int j = 0; j < N; ++j) Pd.data()[int64_t(i) * Np + j] = P[int64_t(i) * N + j] * m[j];
        }
        pack_transposed<V>(transposed.data(), Np, Pd.data(), Np, N, N);
      } else {
        pack_transposed<V>(transposed.data(), Np, P, N, N, N);
      }
      small_gemm<V>({.M = N, .Nc = d, .K = N, .a = {transposed.data(), Np}, .b = {dOp.data(), dp}, .c = dv,
                     .ldc = row, .n_store = d, .accumulate = true},
                    prefetch);
      small_gemm<V>({.M = N, .Nc = N, .K = d, .a = {dOp.data(), dp}, .b = {Vt.data(), Np}, .c = dS.data(), .ldc = Np,
                     .n_store = Np},
                    prefetch);
      for (int i = 0; i < N; ++i) {
        float* ds = dS.data() + int64_t(i) * Np;
        if (mask.on) {
          const float* m = mult.data() + int64_t(i) * Np;
          for (int j = 0; j < N; ++j) ds[j] *= m[j];
        }
        softmax_backward_row<V>(ds, P + int64_t(i) * N, N, scale);
      }
      pack_rows(Kp.data(), dp, k, row, N, d);
      small_gemm<V>({.M = N, .Nc = d, .K = N, .a = {dS.data(), Np}, .b = {Kp.data(), dp}, .c = dq, .ldc = row,
                     .n_store = d, .accumulate = true},
                    prefetch);
      pack_rows(Qp.data(), dp, q, row, N, d);
      pack_transposed<V>(transposed.data(), Np, dS.data(), Np, N, N);
      small_gemm<V>({.M = N, .Nc = d, .K = N, .a = {transposed.data(), Np}, .b = {Qp.data(), dp}, .c = dk,
                     .ldc = row, .n_store = d, .accumulate = true},
                    prefetch);
    }
  }
}

}  // namespace tessera::kernels
