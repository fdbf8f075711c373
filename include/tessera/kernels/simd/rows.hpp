// Row loops written once over any vector type V: a row of floats walked in whole vectors with an overlapping last
// one, reductions with interleaved accumulators, the row helpers of the softmax-like kernels, and the thread policy
// of the row and flat kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

namespace tessera::kernels::simd {

// Below this many elements a kernel stays on the calling thread: starting a parallel region costs more.
inline constexpr int64_t kParallelMinElements = 1 << 15;

// Threads take rows in dynamically scheduled tasks of about this many elements, so that a thread slowed by another
// process on its core does not hold up the rest. Each row's result is independent of which thread computes it.
inline constexpr int64_t kTaskElements = 1 << 13;

inline int rows_per_task(int64_t cols) { return static_cast<int>(std::max<int64_t>(1, kTaskElements / cols)); }

// Calls body(r) for every row r in [0, rows) of a (rows, cols) kernel, rows handed out to OpenMP threads in dynamic
// tasks of rows_per_task(cols), on the calling thread below kParallelMinElements.
template <class Body>
inline void parallel_rows(int rows, [[maybe_unused]] int64_t cols, Body&& body) {  // cols: unused without OpenMP
#pragma omp parallel for schedule(dynamic, rows_per_task(cols)) if (int64_t{rows} * cols >= kParallelMinElements)
  for (int r = 0; r < rows; ++r) body(r);
}

// One vector's worth of a row of n floats. Rows are walked in whole vectors; the last, partial vector is an
// overlapping one ending at n whose first `skip` lanes belong to the previous vector (plain loads and stores:
// masked moves are slow on AVX2 machines). Only a row shorter than one vector uses masked moves (count < width).
struct Chunk {
  int64_t offset;  // index of the vector's first lane
  int count;       // lanes inside the row: the vector width, or n for a row shorter than one vector
  int skip;        // leading lanes already handled by the previous vector
};

// Calls body(Chunk) over a row of n floats, in order.
template <class V, class Body>
inline void for_each_chunk(int64_t n, Body&& body) {
  if (n < V::width) {
    if (n > 0) body(Chunk{0, static_cast<int>(n), 0});
    return;
  }
  int64_t c = 0;
  for (; c + V::width <= n; c += V::width) body(Chunk{c, V::width, 0});
  if (c < n) body(Chunk{n - V::width, V::width, static_cast<int>(V::width - (n - c))});
}

// acc = combine(acc, f(chunk)) over a row of n floats with four interleaved accumulators, which hides the
// latency of the combining adds; the association order depends on n only.
template <class V, class Acc, class F, class Combine>
inline Acc reduce_chunks(int64_t n, Acc init, F&& f, Combine&& combine) {
  if (n < V::width) return n > 0 ? combine(init, f(Chunk{0, static_cast<int>(n), 0})) : init;
  Acc a0 = init, a1 = init, a2 = init, a3 = init;
  int64_t c = 0;
  for (; c + 4 * V::width <= n; c += 4 * V::width) {
    a0 = combine(a0, f(Chunk{c, V::width, 0}));
    a1 = combine(a1, f(Chunk{c + V::width, V::width, 0}));
    a2 = combine(a2, f(Chunk{c + 2 * V::width, V::width, 0}));
    a3 = combine(a3, f(Chunk{c + 3 * V::width, V::width, 0}));
  }
  for (; c + V::width <= n; c += V::width) a0 = combine(a0, f(Chunk{c, V::width, 0}));
  if (c < n) a1 = combine(a1, f(Chunk{n - V::width, V::width, static_cast<int>(V::width - (n - c))}));
  return combine(combine(a0, a1), combine(a2, a3));
}

// The chunk's lanes of row p; lanes outside the chunk (skipped or past the row) read as fill.
template <class V>
inline V load_chunk(const float* p, const Chunk& ch, float fill = 0.0f) {
  if (ch.count < V::width) return V::load_partial(p + ch.offset, ch.count, fill);
  const V x = V::load(p + ch.offset);
  return ch.skip == 0 ? x : select(V::first_n(ch.skip), V::broadcast(fill), x);
}

// Writes the chunk's lanes of x into row p; skipped lanes are rewritten with the value they already hold.
template <class V>
inline void store_chunk(float* p, const Chunk& ch, V x) {
  if (ch.count < V::width) {
    x.store_partial(p + ch.offset, ch.count);
    return;
  }
  if (ch.skip != 0) x = select(V::first_n(ch.skip), V::load(p + ch.offset), x);
  x.store(p + ch.offset);
}

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Elements per parallel block of the flat elementwise kernels (a multiple of every vector width).
inline constexpr int64_t kFlatBlock = 8192;

// Calls body(begin, count) over [0, n) in blocks of kFlatBlock, blocks handed out to OpenMP threads dynamically.
template <class Body>
inline void parallel_flat_blocks(int64_t n, Body&& body) {
  const int64_t blocks = (n + kFlatBlock - 1) / kFlatBlock;
#pragma omp parallel for schedule(dynamic) if (n >= kParallelMinElements)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kFlatBlock;
    body(begin, std::min(kFlatBlock, n - begin));
  }
}

// Row helpers on cols contiguous floats; the exp helpers take e^{x - m} with m >= every x (the row maximum).

template <class V>
inline V add(V a, V b) {
  return a + b;
}

template <class V>
inline float row_max(const float* x, int64_t cols) {
  return reduce_max(reduce_chunks<V>(
      cols, V::broadcast(kNegInf), [&](const Chunk& ch) { return load_chunk<V>(x, ch, kNegInf); },
      [](V a, V b) { return max(a, b); }));
}

template <class V>
inline float row_sum(const float* x, int64_t cols) {
  return reduce_add(reduce_chunks<V>(
      cols, V::broadcast(0.0f), [&](const Chunk& ch) { return load_chunk<V>(x, ch); }, add<V>));
}

template <class V>
inline float row_dot(const float* a, const float* b, int64_t cols) {
  return reduce_add(reduce_chunks<V>(
      cols, V::broadcast(0.0f), [&](const Chunk& ch) { return load_chunk<V>(a, ch) * load_chunk<V>(b, ch); }, add<V>));
}

// out = e^{x - m}; returns the sum of out.
template <class V>
inline float row_exp_store(float* out, const float* x, float m, int64_t cols) {
  const V vm = V::broadcast(m);
  return reduce_add(reduce_chunks<V>(
      cols, V::broadcast(0.0f),
      [&](const Chunk& ch) {
        const V e = exp_nonpositive(load_chunk<V>(x, ch, kNegInf) - vm);
        store_chunk(out, ch, e);
        return e;
      },
      add<V>));
}

// The sum of e^{x - m}.
template <class V>
inline float row_exp_sum(const float* x, float m, int64_t cols) {
  const V vm = V::broadcast(m);
  return reduce_add(reduce_chunks<V>(
      cols, V::broadcast(0.0f), [&](const Chunk& ch) { return exp_nonpositive(load_chunk<V>(x, ch, kNegInf) - vm); },
      add<V>));
}

// out = x * s (out may be x).
template <class V>
inline void row_scale(float* out, const float* x, float s, int64_t cols) {
  const V vs = V::broadcast(s);
  for_each_chunk<V>(cols, [&](const Chunk& ch) { store_chunk(out, ch, load_chunk<V>(x, ch) * vs); });
}

}  // namespace tessera::kernels::simd
