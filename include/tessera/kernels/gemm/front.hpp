// The front of one GEMM (as BLIS's bli_gemm_front): picks its path — C = beta * C alone when there is no
// product, the deep split (deep.hpp), or a Plan run by the team driver (driver.hpp) on one thread or a team.
// Assumes: a Problem from make_problem; threads >= 1; inside a parallel region it runs on the calling thread.
#pragma once

#include <cstdint>

#include "tessera/core/threads.hpp"
#include "tessera/kernels/gemm/blocking.hpp"
#include "tessera/kernels/gemm/deep.hpp"
#include "tessera/kernels/gemm/driver.hpp"
#include "tessera/kernels/gemm/epilogue.hpp"
#include "tessera/kernels/gemm/plan.hpp"
#include "tessera/kernels/gemm/problem.hpp"

namespace tessera::kernels::gemm_impl {

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

// One GEMM with micro-kernel Kernel on up to `threads` OpenMP threads.
template <class Kernel>
inline void gemm_with(const Problem& p, int threads) {
  if (p.M <= 0 || p.N <= 0) return;
  if (tessera::in_parallel_region()) threads = 1;
  if (p.K == 0 || p.alpha == 0.0f) {
    [[maybe_unused]] const int team = double(p.M) * p.N < kParallelMinFlops ? 1 : threads;  // unused without OpenMP
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
    for (int i = 0; i < p.M; ++i) scale_rows(p, i, i + 1);
    return;
  }
  if (p.flops() < kParallelMinFlops) threads = 1;
  if (DepthBlocks(p.K).count >= kDeepSplitBlocks) {
    run_deep<Kernel>(p, threads);
    return;
  }
  const Plan<Kernel> plan(p, PlanOptions{.threads = threads});
  if (threads == 1) {
    PackBuffer buffer(plan.b_floats + plan.a_floats);
    run_team<Kernel>(p, plan, Team::calling_thread,
                     PackSpace{.a = buffer.data() + plan.b_floats, .b = buffer.data()});
    return;
  }
  if (plan.shared_b) {
    // One B panel for the team, then one A block per thread.
    PackBuffer buffer(plan.b_floats + threads * plan.a_floats);
#pragma omp parallel num_threads(threads)
    run_team<Kernel>(p, plan, Team::enclosing_region,
                     PackSpace{.a = buffer.data() + plan.b_floats + tessera::thread_index() * plan.a_floats,
                               .b = buffer.data()});
  } else {
    // Each thread its own B panel followed by its own A block.
    PackBuffer buffer(threads * (plan.a_floats + plan.b_floats));
#pragma omp parallel num_threads(threads)
    {
      float* mine = buffer.data() + tessera::thread_index() * (plan.a_floats + plan.b_floats);
      run_team<Kernel>(p, plan, Team::enclosing_region, PackSpace{.a = mine + plan.b_floats, .b = mine});
    }
  }
}

}  // namespace tessera::kernels::gemm_impl
