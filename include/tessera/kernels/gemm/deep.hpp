// The deep-product split: a GEMM whose K spans at least kDeepSplitBlocks depth blocks (like a weight gradient
// dYᵀX, whose depth is the batch's rows) run as independent (depth group, slice of C) units, no barrier inside.
// Assumes: M, N, K > 0; threads == 1 inside a parallel region (it opens a team of its own); the depth groups
// are whole depth blocks of DepthBlocks(K), added in group order, so the bits do not depend on the threads.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/core/threads.hpp"
#include "tessera/kernels/gemm/blocking.hpp"
#include "tessera/kernels/gemm/driver.hpp"
#include "tessera/kernels/gemm/epilogue.hpp"
#include "tessera/kernels/gemm/plan.hpp"
#include "tessera/kernels/gemm/problem.hpp"

namespace tessera::kernels::gemm_impl {

// A deep product on any number of threads. K is cut into kDepthGroups groups of whole depth blocks; group 0
// accumulates into C (with beta), the others into partial products of their own; each group's C is cut into
// row slices (column slices when rows are few), and every (group, slice) unit is run by one thread alone,
// packing its own panels one depth block at a time. Then the partials are added to C in group order and the
// bias and activation applied. Splitting the depth halves what each thread packs of A and of B, where slices
// of C alone make every thread pack all of B (or of A).
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
  // Each unit runs on one thread, packing B one depth block at a time.
  const PlanOptions unit_options{.threads = 1, .b_grouping = BDepthGrouping::one_block};
  int64_t per_thread = 0;
  for (int g = 0; g < kDepthGroups; ++g) {
    const Plan<Kernel> plan(unit_problem(g * slices), unit_options);
    per_thread = std::max(per_thread, plan.a_floats + plan.b_floats);
  }
  const int team = std::min(threads, kDepthGroups * slices);
  PackBuffer buffer(team * per_thread);
#pragma omp parallel num_threads(team) if (team > 1)
  {
    float* mine = buffer.data() + tessera::thread_index() * per_thread;
#pragma omp for schedule(dynamic, 1)
    for (int u = 0; u < kDepthGroups * slices; ++u) {
      const Problem q = unit_problem(u);
      const Plan<Kernel> plan(q, unit_options);
      run_team<Kernel>(q, plan, Team::calling_thread, PackSpace{.a = mine + plan.b_floats, .b = mine});
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

}  // namespace tessera::kernels::gemm_impl
