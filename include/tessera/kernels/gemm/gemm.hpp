// The fast float GEMM: a BLIS-style loop driver over packed panels of A and B and a register-blocked
// micro-kernel, with a fused bias/GELU epilogue (gemm_ex), a strided-batched variant and matmul_any.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <new>
#include <type_traits>

#include "tessera/kernels/gemm/blocking.hpp"
#include "tessera/kernels/gemm/epilogue.hpp"
#include "tessera/kernels/gemm/microkernel_avx2.hpp"
#include "tessera/kernels/gemm/microkernel_avx512.hpp"
#include "tessera/kernels/gemm/microkernel_scalar.hpp"
#include "tessera/kernels/gemm/pack.hpp"
#include "tessera/kernels/reference/gemm.hpp"

namespace tessera::kernels {
namespace gemm_impl {

#if defined(__AVX512F__)
using DefaultKernel = Avx512Kernel;
#elif defined(__AVX2__) && defined(__FMA__)
using DefaultKernel = Avx2Kernel;
#else
using DefaultKernel = ScalarKernel<4, 8>;
#endif

// Below this many flops a GEMM runs on the calling thread: waking a team costs more than it saves.
inline constexpr double kParallelMinFlops = 1 << 19;
// A batch item at least this big is threaded on its own when there are too few items to share out.
inline constexpr double kLargeItemFlops = 1 << 25;

// One GEMM: C (M,N) = act(alpha * op(A) op(B) + beta * C + bias), row-major with row strides lda, ldb, ldc.
struct Problem {
  bool trans_a, trans_b;
  int M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  GemmEpilogue epilogue;

  double flops() const { return 2.0 * M * N * K; }

  // Rows [r0, r0 + rows) of op(A), C and the pre-activation, as a problem of its own.
  Problem row_slice(int r0, int rows) const {
    Problem slice = *this;
    slice.M = rows;
    slice.A = trans_a ? A + r0 : A + r0 * lda;
    slice.C = C + r0 * ldc;
    if (slice.epilogue.pre_activation) slice.epilogue.pre_activation += r0 * ldc;
    return slice;
  }

  // Columns [j0, j0 + cols) of op(B), C, the bias and the pre-activation, as a problem of its own.
  Problem column_slice(int j0, int cols) const {
    Problem slice = *this;
    slice.N = cols;
    slice.B = trans_b ? B + j0 * ldb : B + j0;
    slice.C = C + j0;
    if (slice.epilogue.bias) slice.epilogue.bias += j0;
    if (slice.epilogue.pre_activation) slice.epilogue.pre_activation += j0;
    return slice;
  }
};

// 64-byte aligned scratch for packed panels, owned by one call: never static, so concurrent calls are safe.
class PackBuffer {
 public:
  explicit PackBuffer(int64_t floats)
      : data_(static_cast<float*>(
            ::operator new(size_t(std::max<int64_t>(floats, 16)) * sizeof(float), std::align_val_t{64}))) {}
  ~PackBuffer() { ::operator delete(data_, std::align_val_t{64}); }
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  float* data() const { return data_; }

 private:
  float* data_;
};

// How one GEMM is cut for a team of `threads`. Only the depth split decides summation order, and it
// depends on K alone, so C has the same bits whatever mc, the chunks, the groups or the thread count.
template <class Kernel>
struct Plan {
  DepthBlocks depth;
  int mc = 0;             // rows per block of A, a multiple of Kernel::mr
  int m_blocks = 0;       // ceil(M / mc)
  int n_chunks = 1;       // each kNC panel's slivers are shared out in this many column chunks
  int group_blocks = 1;   // depth blocks of B packed together (all of K when the panel fits kPackedBFloats)
  bool shared_b = false;  // the team packs one B panel together (one barrier) instead of one each
  int64_t a_floats = 0;   // packed A block of one thread
  int64_t b_floats = 0;   // packed B panel

  // one_block_groups: B is packed one depth block at a time, which keeps the packed block in L2 until it is
  // used; larger groups only pay off when C is too big to stay in cache across the depth blocks.
  Plan(const Problem& p, int threads, bool one_block_groups = false) : depth(p.K) {
    constexpr int MR = Kernel::mr, NR = Kernel::nr;
    static_assert(kMC % MR == 0, "kMC must hold whole micro-tiles: a_floats below relies on mc <= kMC");
    // Row blocks of at most kMC rows; with a team, several per thread (down to kMinMC rows) so that
    // dynamic scheduling can even out threads that run at different speeds; a multiple of the team.
    int64_t blocks = ceil_div(p.M, kMC);
    if (threads > 1)
      blocks = round_up(std::max(blocks, std::min<int64_t>(4 * threads, ceil_div(p.M, kMinMC))), threads);
    blocks = std::min(blocks, ceil_div(p.M, MR));
    mc = int(round_up(ceil_div(p.M, blocks), MR));
    m_blocks = int(ceil_div(p.M, mc));
    // Too few rows for the team: also share each panel's columns.
    const int64_t panel = round_up(std::min(p.N, kNC), NR);
    if (threads > 1 && m_blocks < 2 * threads) n_chunks = int(std::min(ceil_div(4 * threads, m_blocks), panel / NR));
    group_blocks =
        one_block_groups ? 1 : int(std::clamp<int64_t>(kPackedBFloats / (panel * depth.depth), 1, depth.count));
    // With many rows per thread, packing all of B per thread costs little and saves a barrier.
    shared_b = threads > 1 && (p.M < kPrivateBRows * threads || group_blocks < depth.count || p.N > kNC);
    a_floats = round_up(std::min<int64_t>(kMC, round_up(p.M, MR)) * depth.depth, 16);
    b_floats = round_up(panel * depth.depth * group_blocks, 16);
  }
};

// Runs task(0 .. count-1): shared out over the enclosing team (an orphaned `omp for`, ending in a barrier),
// or in order on this thread alone.
template <class Task>
inline void for_each_task(bool team, bool dynamic, int count, const Task& task) {
  if (!team) {
    for (int i = 0; i < count; ++i) task(i);
  } else if (dynamic) {
#pragma omp for schedule(dynamic, 1)
    for (int i = 0; i < count; ++i) task(i);
  } else {
#pragma omp for schedule(static)
    for (int i = 0; i < count; ++i) task(i);
  }
}

// C = beta * C, then the epilogue, on rows [i0, i1): the whole GEMM when K == 0 or alpha == 0
// (A and B are then not read, as in BLAS).
inline void scale_rows(const Problem& p, int i0, int i1) {
  for (int i = i0; i < i1; ++i) {
    float* c = p.C + i * p.ldc;
    for (int j = 0; j < p.N; ++j) c[j] = p.beta == 0.0f ? 0.0f : p.beta * c[j];
    if (p.epilogue.bias)
      for (int j = 0; j < p.N; ++j) c[j] += p.epilogue.bias[j];
    apply_activation(p.epilogue, p.C, p.ldc, i, 1, 0, p.N);
  }
}

// Multiplies a packed block of A (rows [i0, i0 + rows), slivers of (kc, MR)) by slivers [s0, s1) of a
// packed panel of B (columns from jc, slivers of (kc, NR)) into C. The first depth block applies beta,
// later ones add (beta = 1); the last one adds the bias. Tiles cut by the edge of C are computed into a
// small temporary tile (alpha = 1, so it holds the exact sums) and written by the same store_rule, so
// they get the same bits as a full tile would.
template <class Kernel>
inline void macro_kernel(const Problem& p, const float* a_pack, const float* b_pack, int i0, int rows, int jc, int s0,
                         int s1, int kc, bool first_depth, bool last_depth) {
  constexpr int MR = Kernel::mr, NR = Kernel::nr;
  const float beta = first_depth ? p.beta : 1.0f;
  const float* bias = last_depth ? p.epilogue.bias : nullptr;
  for (int s = s0; s < s1; ++s) {
    const int j = jc + s * NR;
    const int cols = std::min(NR, p.N - j);
    const float* b = b_pack + int64_t(s) * kc * NR;
    const float* bias_j = bias ? bias + j : nullptr;
    for (int t = 0; t * MR < rows; ++t) {
      const int i = i0 + t * MR;
      const int tile_rows = std::min(MR, rows - t * MR);
      const float* a = a_pack + int64_t(t) * kc * MR;
      float* c = p.C + i * p.ldc + j;
      if (tile_rows == MR && cols == NR) {
        Kernel::run(kc, a, b, c, p.ldc, p.alpha, beta, bias_j);
      } else {
        alignas(64) float tile[MR * NR];
        Kernel::run(kc, a, b, tile, NR, 1.0f, 0.0f, nullptr);
        for (int r = 0; r < tile_rows; ++r)
          for (int col = 0; col < cols; ++col)
            store_rule(c + r * p.ldc + col, tile[r * NR + col], p.alpha, beta, bias_j ? bias_j + col : nullptr);
      }
    }
  }
}

// The loops around the micro-kernel, run by every thread of the enclosing team (team) or by this thread
// alone. For each kNC panel of columns and each group of depth blocks: the team packs the group's B
// panel together (one barrier), or with plan.shared_b false each thread packs all of it into its own
// b_pack, then threads take (row block, column chunk) units dynamically; a unit
// packs its row block of A into the thread's own a_pack for each depth block of the group in turn and
// multiplies it into its block of C, which stays in cache across the depth blocks; after the last depth
// block the unit applies the activation to its finished block.
template <class Kernel>
inline void run_team(const Problem& p, const Plan<Kernel>& plan, bool team, float* a_pack, float* b_pack) {
  constexpr int MR = Kernel::mr, NR = Kernel::nr;
  const DepthBlocks& depth = plan.depth;
  for (int jc = 0; jc < p.N; jc += kNC) {
    const int nc = std::min(kNC, p.N - jc);
    const int slivers = int(ceil_div(nc, NR));
    for (int g0 = 0; g0 < depth.count; g0 += plan.group_blocks) {
      const int g1 = std::min(depth.count, g0 + plan.group_blocks);
      // Depth block b of the group is packed at b_pack + (begin(b) - begin(g0)) * slivers * NR.
      auto panel = [&](int b) { return b_pack + int64_t(depth.begin(b) - depth.begin(g0)) * slivers * NR; };
      // A team packs each depth block in one column chunk per thread.
      const int b_chunks = team && plan.shared_b ? omp_get_num_threads() : 1;
      for_each_task(team && plan.shared_b, false, (g1 - g0) * b_chunks, [&](int task) {
        const int b = g0 + task / b_chunks, chunk = task % b_chunks;
        pack_b_slivers<NR>(p.trans_b, p.B, p.ldb, jc, nc, depth.begin(b), depth.size(b, p.K),
                           chunk * slivers / b_chunks, (chunk + 1) * slivers / b_chunks, panel(b));
      });
      for_each_task(team, true, plan.m_blocks * plan.n_chunks, [&](int unit) {
        const int chunk = unit % plan.n_chunks;
        const int i0 = unit / plan.n_chunks * plan.mc;
        const int rows = std::min(plan.mc, p.M - i0);
        const int s0 = chunk * slivers / plan.n_chunks, s1 = (chunk + 1) * slivers / plan.n_chunks;
        for (int b = g0; b < g1; ++b) {
          const int kc = depth.size(b, p.K);
          pack_a<MR>(p.trans_a, p.A, p.lda, i0, rows, depth.begin(b), kc, a_pack);
          macro_kernel<Kernel>(p, a_pack, panel(b), i0, rows, jc, s0, s1, kc, b == 0, b == depth.count - 1);
        }
        if (g1 == depth.count)
          apply_activation(p.epilogue, p.C, p.ldc, i0, rows, jc + s0 * NR, std::min(nc, s1 * NR) - s0 * NR);
      });
    }
  }
}

// A deep product is summed in kDepthGroups contiguous groups of depth blocks, each group to its own partial
// C, then added in group order: the grouping depends on K only, so the bits do not depend on the threads.
inline constexpr int kDepthGroups = 2;

// A deep product (K of at least kDeepSplitBlocks depth blocks, like a weight gradient dYᵀX whose depth is the
// batch's rows), on any number of threads. K is cut into kDepthGroups groups of whole depth blocks; group 0
// accumulates into C (with beta), the others into partial products of their own; each group's C is cut into
// row slices (column slices when rows are few), and every (group, slice) unit is run by one thread alone,
// packing its own panels one depth block at a time — no barrier inside. Then the partials are added to C in
// group order and the bias and activation applied. Splitting the depth halves what each thread packs of A
// and of B, where slices of C alone make every thread pack all of B (or of A).
template <class Kernel>
inline void run_deep(const Problem& p, int threads) {
  const DepthBlocks depth(p.K);
  int group_k[kDepthGroups + 1];
  for (int g = 0; g < kDepthGroups; ++g) group_k[g] = depth.begin(depth.count * g / kDepthGroups);
  group_k[kDepthGroups] = p.K;
  const int slices_per_group = int(std::max<int64_t>(1, ceil_div(threads, kDepthGroups)));
  const bool by_columns = p.M < slices_per_group * kMinMC && p.N > p.M;
  const int extent = by_columns ? p.N : p.M, unit = by_columns ? Kernel::nr : Kernel::mr;
  const int slice = int(round_up(ceil_div(extent, slices_per_group), unit));
  const int slices = int(ceil_div(extent, slice));
  PackBuffer partials(int64_t(kDepthGroups - 1) * p.M * p.N);
  // Group g of the product, without bias or activation (applied once, after the sum).
  auto group_problem = [&](int g) {
    Problem q = p;
    q.K = group_k[g + 1] - group_k[g];
    q.A = p.trans_a ? p.A + int64_t(group_k[g]) * p.lda : p.A + group_k[g];
    q.B = p.trans_b ? p.B + group_k[g] : p.B + int64_t(group_k[g]) * p.ldb;
    q.epilogue = GemmEpilogue{};
    if (g > 0) {
      q.beta = 0.0f;
      q.C = partials.data() + int64_t(g - 1) * p.M * p.N;
      q.ldc = p.N;
    }
    return q;
  };
  auto unit_problem = [&](int u) {
    const Problem q = group_problem(u / slices);
    const int begin = u % slices * slice, size = std::min(slice, extent - begin);
    return by_columns ? q.column_slice(begin, size) : q.row_slice(begin, size);
  };
  int64_t per_thread = 0;
  for (int g = 0; g < kDepthGroups; ++g) {
    const Plan<Kernel> plan(unit_problem(g * slices), 1, true);
    per_thread = std::max(per_thread, plan.a_floats + plan.b_floats);
  }
  const int team = std::min(threads, kDepthGroups * slices);
  PackBuffer buffer(team * per_thread);
#pragma omp parallel num_threads(team) if (team > 1)
  {
    float* mine = buffer.data() + omp_get_thread_num() * per_thread;
#pragma omp for schedule(dynamic, 1)
    for (int u = 0; u < kDepthGroups * slices; ++u) {
      const Problem q = unit_problem(u);
      const Plan<Kernel> plan(q, 1, true);
      run_team<Kernel>(q, plan, false, mine + plan.b_floats, mine);
    }
#pragma omp for schedule(static)
    for (int i = 0; i < p.M; ++i) {
      float* c = p.C + int64_t(i) * p.ldc;
      for (int g = 1; g < kDepthGroups; ++g) {
        const float* partial = partials.data() + (int64_t(g - 1) * p.M + i) * p.N;
        for (int j = 0; j < p.N; ++j) c[j] += partial[j];
      }
      if (p.epilogue.bias)
        for (int j = 0; j < p.N; ++j) c[j] += p.epilogue.bias[j];
      apply_activation(p.epilogue, p.C, p.ldc, i, 1, 0, p.N);
    }
  }
}

// One GEMM with micro-kernel Kernel on up to `threads` OpenMP threads.
template <class Kernel>
inline void gemm_with(const Problem& p, int threads) {
  if (p.M <= 0 || p.N <= 0) return;
  if (omp_in_parallel()) threads = 1;
  if (p.K == 0 || p.alpha == 0.0f) {
    const int team = double(p.M) * p.N < kParallelMinFlops ? 1 : threads;
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
    for (int i = 0; i < p.M; ++i) scale_rows(p, i, i + 1);
    return;
  }
  if (p.flops() < kParallelMinFlops) threads = 1;
  if (DepthBlocks(p.K).count >= kDeepSplitBlocks) {
    run_deep<Kernel>(p, threads);
    return;
  }
  const Plan<Kernel> plan(p, threads);
  if (threads == 1) {
    PackBuffer buffer(plan.b_floats + plan.a_floats);
    run_team<Kernel>(p, plan, false, buffer.data() + plan.b_floats, buffer.data());
    return;
  }
  if (plan.shared_b) {
    PackBuffer buffer(plan.b_floats + threads * plan.a_floats);
#pragma omp parallel num_threads(threads)
    run_team<Kernel>(p, plan, true, buffer.data() + plan.b_floats + omp_get_thread_num() * plan.a_floats,
                     buffer.data());
  } else {
    PackBuffer buffer(threads * (plan.a_floats + plan.b_floats));
#pragma omp parallel num_threads(threads)
    {
      float* mine = buffer.data() + omp_get_thread_num() * (plan.a_floats + plan.b_floats);
      run_team<Kernel>(p, plan, true, mine + plan.b_floats, mine);
    }
  }
}

// `batch` GEMMs whose operands sit stride_a, stride_b, stride_c elements apart. Many or small items are
// shared out as (item, row slice) units, each run whole by one thread with its own pack buffers; a few
// large items are run one after the other, each threaded.
template <class Kernel>
inline void gemm_batched_with(const Problem& p, int64_t stride_a, int64_t stride_b, int64_t stride_c, int batch,
                              int threads) {
  if (batch <= 0 || p.M <= 0 || p.N <= 0) return;
  if (omp_in_parallel()) threads = 1;
  auto item = [&](int b) {
    Problem q = p;
    q.A += b * stride_a;
    q.B += b * stride_b;
    q.C += b * stride_c;
    return q;
  };
  if (p.flops() * batch < kParallelMinFlops) threads = 1;
  // Deep items go through gemm_with one by one, so each has the bits gemm would give it.
  if (threads == 1 || (p.flops() >= kLargeItemFlops && batch < 4 * threads) ||
      DepthBlocks(p.K).count >= kDeepSplitBlocks) {
    for (int b = 0; b < batch; ++b) gemm_with<Kernel>(item(b), threads);
    return;
  }
  const int64_t wanted_slices = batch >= 4 * threads ? 1 : ceil_div(4 * threads, batch);
  const int slice_rows = int(round_up(ceil_div(p.M, std::min(wanted_slices, ceil_div(p.M, Kernel::mr))), Kernel::mr));
  const int slices = int(ceil_div(p.M, slice_rows));
  const Plan<Kernel> largest(p.row_slice(0, slice_rows), 1);
  const int64_t per_thread = largest.a_floats + largest.b_floats;
  PackBuffer buffer(threads * per_thread);
#pragma omp parallel num_threads(threads)
  {
    float* mine = buffer.data() + omp_get_thread_num() * per_thread;
#pragma omp for schedule(dynamic)
    for (int u = 0; u < batch * slices; ++u) {
      const int r0 = (u % slices) * slice_rows;
      const Problem q = item(u / slices).row_slice(r0, std::min(slice_rows, p.M - r0));
      if (q.K == 0 || q.alpha == 0.0f) {
        scale_rows(q, 0, q.M);
      } else {
        run_team<Kernel>(q, Plan<Kernel>(q, 1), false, mine + largest.b_floats, mine);
      }
    }
  }
}

inline Problem make_problem(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                            const float* B, int ldb, float beta, float* C, int ldc, const GemmEpilogue& epilogue) {
  assert(M >= 0 && N >= 0 && K >= 0);
  assert(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N);
  return Problem{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue};
}

}  // namespace gemm_impl

// C = alpha * op(A) op(B) + beta * C in float, row-major.
// op(A) is (M,K): A is stored (M,K) with row stride lda, or (K,M) when trans_a.
// op(B) is (K,N): B is stored (K,N) with row stride ldb, or (N,K) when trans_b.
// C is (M,N) with row stride ldc. beta == 0 overwrites C without reading it; K == 0 or alpha == 0 gives
// C = beta * C without reading A or B. Uses omp_get_max_threads() threads; results are bit-identical for
// any thread count.
inline void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                 int ldb, float beta, float* C, int ldc) {
  gemm_impl::gemm_with<gemm_impl::DefaultKernel>(
      gemm_impl::make_problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, GemmEpilogue{}),
      omp_get_max_threads());
}

// gemm with a fused epilogue: C = act(alpha * op(A) op(B) + beta * C + bias), see GemmEpilogue.
inline void gemm_ex(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc, const GemmEpilogue& epilogue) {
  gemm_impl::gemm_with<gemm_impl::DefaultKernel>(
      gemm_impl::make_problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue),
      omp_get_max_threads());
}

// `batch` independent gemm calls: item b uses A + b*stride_a, B + b*stride_b, C + b*stride_c (strides in
// elements), each with the sizes and row strides of gemm. Threads share out (item, row slice) units.
inline void gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                         int64_t stride_a, const float* B, int ldb, int64_t stride_b, float beta, float* C, int ldc,
                         int64_t stride_c, int batch) {
  assert(batch >= 0);
  gemm_impl::gemm_batched_with<gemm_impl::DefaultKernel>(
      gemm_impl::make_problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, GemmEpilogue{}), stride_a,
      stride_b, stride_c, batch, omp_get_max_threads());
}

// matmul_any, matmul_any_ex, matmul_any_batched: the GEMM for code templated on T (float or double).
// float goes to the fast gemm / gemm_ex / gemm_batched; double goes to reference::gemm (plain loops,
// single-threaded: meant for gradient checks on small shapes). Same arguments and contract as gemm.
template <class T>
inline void matmul_any(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                       int ldb, T beta, T* C, int ldc) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "matmul_any: T must be float or double");
  if constexpr (std::is_same_v<T, float>)
    gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    reference::gemm<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
inline void matmul_any_ex(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                          int ldb, T beta, T* C, int ldc, const GemmEpilogueT<T>& epilogue) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "matmul_any_ex: T must be float or double");
  if constexpr (std::is_same_v<T, float>)
    gemm_ex(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue);
  else
    reference::gemm_ex<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue.bias, epilogue.gelu,
                          epilogue.pre_activation);
}

template <class T>
inline void matmul_any_batched(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
                               int64_t stride_a, const T* B, int ldb, int64_t stride_b, T beta, T* C, int ldc,
                               int64_t stride_c, int batch) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "matmul_any_batched: T must be float or double");
  if constexpr (std::is_same_v<T, float>) {
    gemm_batched(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch);
  } else {
    for (int b = 0; b < batch; ++b)
      reference::gemm<T>(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
                         C + b * stride_c, ldc);
  }
}

}  // namespace tessera::kernels
