// The macro-kernel (BLIS's bli_gemm_ker_var2): the two loops around the micro-kernel, over the micro-tiles of
// one block of C, for one depth block of packed A and packed B.
// Assumes: a_pack holds the block's rows as pack_a lays them and b_pack the panel's slivers as pack_b_slivers
// lays them (pack.hpp), both for the same depth kc; the block lies inside C; edge tiles go through store_rule.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/kernels/gemm/microkernel_scalar.hpp"
#include "tessera/kernels/gemm/problem.hpp"

namespace tessera::kernels::gemm_impl {

// The block of C one macro-kernel call writes: rows [row, row + rows) and slivers [sliver_begin, sliver_end)
// (NR columns each, the last one possibly cut by the edge of C) of the panel of B whose columns start at
// panel_column.
struct CBlock {
  int row = 0;
  int rows = 0;
  int panel_column = 0;
  int sliver_begin = 0;
  int sliver_end = 0;
};

// Where a depth block stands in the sum over K: the first applies beta to C (later ones add to it, beta = 1);
// the last adds the bias.
struct DepthBlockRole {
  bool first = false;
  bool last = false;
};

// Multiplies a packed block of A (rows block.row.., slivers of (kc, MR)) by the block's slivers of a packed
// panel of B (slivers of (kc, NR)) into C. Tiles cut by the edge of C are computed into a small temporary
// tile (alpha = 1, so it holds the exact sums) and written by the same store_rule, so they get the same bits
// as a full tile would.
template <class Kernel>
inline void macro_kernel(const Problem& p, const float* a_pack, const float* b_pack, const CBlock& block, int kc,
                         DepthBlockRole role) {
  constexpr int MR = Kernel::mr, NR = Kernel::nr;
  const float beta = role.first ? p.beta : 1.0f;
  const float* bias = role.last ? p.epilogue.bias : nullptr;
  for (int s = block.sliver_begin; s < block.sliver_end; ++s) {
    const int j = block.panel_column + s * NR;
    const int cols = std::min(NR, p.N - j);
    const float* b = b_pack + int64_t(s) * kc * NR;
    const float* bias_j = bias ? bias + j : nullptr;
    for (int t = 0; t * MR < block.rows; ++t) {
      const int i = block.row + t * MR;
      const int tile_rows = std::min(MR, block.rows - t * MR);
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

}  // namespace tessera::kernels::gemm_impl
