// The team driver: the three loops around the macro-kernel (BLIS's bli_gemm_blk_var2, var3 and var1: kNC
// panels of columns, groups of depth blocks with their packed B, row blocks of A), run by a team or one thread.
// Assumes: M, N, K > 0; the Plan was made for this problem and this team's size; the pack space holds
// plan.a_floats for this thread's A and plan.b_floats for B (one panel shared by the team when plan.shared_b,
// else this thread's own); with Team::enclosing_region every thread of the region calls run_team alike.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/core/threads.hpp"
#include "tessera/kernels/gemm/blocking.hpp"
#include "tessera/kernels/gemm/epilogue.hpp"
#include "tessera/kernels/gemm/macro_kernel.hpp"
#include "tessera/kernels/gemm/pack.hpp"
#include "tessera/kernels/gemm/plan.hpp"
#include "tessera/kernels/gemm/problem.hpp"

namespace tessera::kernels::gemm_impl {

// How the tasks of one loop are handed out to the threads of the team.
enum class Schedule {
  static_chunks,  // each thread takes one contiguous share, fixed in advance
  dynamic,        // each thread takes the next task as soon as it is free
};

struct TaskOptions {
  // Shared out over the enclosing team (an orphaned `omp for`, ending in a barrier) or run in order by the
  // calling thread alone.
  bool over_team = false;
  Schedule schedule = Schedule::static_chunks;  // with over_team
};

// Runs task(0 .. count-1) as options say.
template <class Task>
inline void for_each_task(const TaskOptions& options, int count, const Task& task) {
  if (!options.over_team) {
    for (int i = 0; i < count; ++i) task(i);
  } else if (options.schedule == Schedule::dynamic) {
#pragma omp for schedule(dynamic, 1)
    for (int i = 0; i < count; ++i) task(i);
  } else {
#pragma omp for schedule(static)
    for (int i = 0; i < count; ++i) task(i);
  }
}

// Who runs the driver: every thread of the enclosing parallel region together, or the calling thread alone.
enum class Team { calling_thread, enclosing_region };

// The calling thread's packed block of A, and the packed panel of B it reads.
struct PackSpace {
  float* a = nullptr;
  float* b = nullptr;
};

// For each kNC panel of columns (loop 5) and each group of depth blocks (loop 4): the team packs the group's
// B panel together (one barrier), or with plan.shared_b false each thread packs all of it into its own
// pack.b; then threads take (row block, column chunk) units dynamically (loop 3). A unit packs its row block
// of A into the thread's own pack.a for each depth block of the group in turn and multiplies it into its
// block of C (macro_kernel), which stays in cache across the depth blocks; after the last depth block the
// unit applies the activation to its finished block.
template <class Kernel>
inline void run_team(const Problem& p, const Plan<Kernel>& plan, Team team, const PackSpace& pack) {
  constexpr int MR = Kernel::mr, NR = Kernel::nr;
  const DepthBlocks& depth = plan.depth;
  const bool on_team = team == Team::enclosing_region;
  const bool team_packs_b = on_team && plan.shared_b;
  for (int jc = 0; jc < p.N; jc += kNC) {  // loop 5: panels of kNC columns
    const int nc = std::min(kNC, p.N - jc);
    const int slivers = int(ceil_div(nc, NR));
    for (int g0 = 0; g0 < depth.count; g0 += plan.group_blocks) {  // loop 4: groups of depth blocks
      const int g1 = std::min(depth.count, g0 + plan.group_blocks);
      // Depth block b of the group is packed at pack.b + (begin(b) - begin(g0)) * slivers * NR.
      auto panel = [&](int b) { return pack.b + int64_t(depth.begin(b) - depth.begin(g0)) * slivers * NR; };
      // A team packs each depth block in one column chunk per thread.
      const int b_chunks = team_packs_b ? tessera::team_size() : 1;
      for_each_task(TaskOptions{.over_team = team_packs_b}, (g1 - g0) * b_chunks, [&](int task) {
        const int b = g0 + task / b_chunks, chunk = task % b_chunks;
        pack_b_slivers<NR>(p.trans_b, p.B, p.ldb, jc, nc, depth.begin(b), depth.size(b, p.K),
                           chunk * slivers / b_chunks, (chunk + 1) * slivers / b_chunks, panel(b));
      });
      // Loop 3: (row block, column chunk) units, each through the group's depth blocks in order.
      const TaskOptions units{.over_team = on_team, .schedule = Schedule::dynamic};
      for_each_task(units, plan.m_blocks * plan.n_chunks, [&](int unit) {
        const int row = unit / plan.n_chunks * plan.mc, chunk = unit % plan.n_chunks;
        const CBlock block{.row = row,
                           .rows = std::min(plan.mc, p.M - row),
                           .panel_column = jc,
                           .sliver_begin = chunk * slivers / plan.n_chunks,
                           .sliver_end = (chunk + 1) * slivers / plan.n_chunks};
        for (int b = g0; b < g1; ++b) {
          const int kc = depth.size(b, p.K);
          pack_a<MR>(p.trans_a, p.A, p.lda, block.row, block.rows, depth.begin(b), kc, pack.a);
          macro_kernel<Kernel>(p, pack.a, panel(b), block, kc,
                               DepthBlockRole{.first = b == 0, .last = b == depth.count - 1});
        }
        if (g1 == depth.count) {
          const int j0 = block.sliver_begin * NR;
          const int j1 = std::min(nc, block.sliver_end * NR);
          apply_activation(p.epilogue, p.C, p.ldc, block.row, block.rows, jc + j0, j1 - j0);
        }
      });
    }
  }
}

}  // namespace tessera::kernels::gemm_impl
