// The strided-batched GEMM: `batch` GEMMs of the same shape whose operands sit stride_a, stride_b, stride_c
// elements apart, shared out over the threads as (item, row slice) units or run one after the other.
// Assumes: a Problem from make_problem describing item 0; batch >= 0; items do not overlap in C; every item
// gets the bits gemm would give it alone (row slices and single-thread plans keep the depth blocks of K).
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/core/threads.hpp"
#include "tessera/kernels/gemm/blocking.hpp"
#include "tessera/kernels/gemm/driver.hpp"
#include "tessera/kernels/gemm/front.hpp"
#include "tessera/kernels/gemm/plan.hpp"
#include "tessera/kernels/gemm/problem.hpp"

namespace tessera::kernels::gemm_impl {

// Many or small items are shared out as (item, row slice) units, each run whole by one thread with its own
// pack buffers; a few large items, or deep ones, are run one after the other by gemm_with, each threaded.
template <class Kernel>
inline void gemm_batched_with(const Problem& p, int64_t stride_a, int64_t stride_b, int64_t stride_c, int batch,
                              int threads) {
  if (batch <= 0 || p.M <= 0 || p.N <= 0) return;
  if (tessera::in_parallel_region()) threads = 1;
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
  // Each unit runs on one thread; the first slice is the largest, so its plan sizes every thread's buffers.
  const PlanOptions unit_options{.threads = 1};
  const Plan<Kernel> largest(p.row_slice(0, slice_rows), unit_options);
  const int64_t per_thread = largest.a_floats + largest.b_floats;
  PackBuffer buffer(threads * per_thread);
#pragma omp parallel num_threads(threads)
  {
    float* mine = buffer.data() + tessera::thread_index() * per_thread;
#pragma omp for schedule(dynamic)
    for (int u = 0; u < batch * slices; ++u) {
      const int r0 = (u % slices) * slice_rows;
      const Problem q = item(u / slices).row_slice(r0, std::min(slice_rows, p.M - r0));
      if (q.K == 0 || q.alpha == 0.0f) {
        scale_rows(q, 0, q.M);
      } else {
        run_team<Kernel>(q, Plan<Kernel>(q, unit_options), Team::calling_thread,
                         PackSpace{.a = mine + largest.b_floats, .b = mine});
      }
    }
  }
}

}  // namespace tessera::kernels::gemm_impl
