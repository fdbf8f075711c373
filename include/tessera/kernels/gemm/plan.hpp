// The blocking decisions for one GEMM and one team, made once before the loops run (driver.hpp): rows per
// block of A, column chunks of each panel of B, depth blocks of B packed together, and who packs B.
// Assumes: M, N, K > 0; Kernel::mr divides kMC and Kernel::nr divides kNC (blocking.hpp); the depth blocks
// depend on K alone, so no field here changes the summation order of any element of C.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/kernels/gemm/blocking.hpp"
#include "tessera/kernels/gemm/problem.hpp"

namespace tessera::kernels::gemm_impl {

// How many depth blocks of B are packed at once: as many as kPackedBFloats holds (fewer passes over C, which
// pays off when C is too big to stay in cache across the depth blocks), or one, which keeps the packed block
// in L2 until it is used.
enum class BDepthGrouping { fill_pack_buffer, one_block };

struct PlanOptions {
  int threads = 1;  // the size of the team that runs the plan
  BDepthGrouping b_grouping = BDepthGrouping::fill_pack_buffer;
};

// How one GEMM is cut for a team of options.threads. Only the depth split decides summation order, and it
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

  Plan(const Problem& p, const PlanOptions& options) : depth(p.K) {
    constexpr int MR = Kernel::mr, NR = Kernel::nr;
    static_assert(kMC % MR == 0, "kMC must hold whole micro-tiles: a_floats below relies on mc <= kMC");
    const int threads = options.threads;
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
    group_blocks = options.b_grouping == BDepthGrouping::one_block
                       ? 1
                       : int(std::clamp<int64_t>(kPackedBFloats / (panel * depth.depth), 1, depth.count));
    // With many rows per thread, packing all of B per thread costs little and saves a barrier.
    shared_b = threads > 1 && (p.M < kPrivateBRows * threads || group_blocks < depth.count || p.N > kNC);
    a_floats = round_up(std::min<int64_t>(kMC, round_up(p.M, MR)) * depth.depth, 16);
    b_floats = round_up(panel * depth.depth * group_blocks, 16);
  }
};

}  // namespace tessera::kernels::gemm_impl
