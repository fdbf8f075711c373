// The GEMM's constants, all in one place: cache blocking (kMC rows of A kept in L2, depth kKC kept in L1, kNC
// columns of B in L3), when to thread and how to split a deep product, and the depth blocks that fix the
// summation order of every element of C.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tessera::kernels::gemm_impl {

// An (kMC, kKC) block of packed A stays in L2 (a multiple of every micro-tile height).
inline constexpr int kMC = 144;
// A (kKC, NR) sliver of packed B stays in L1.
inline constexpr int kKC = 256;
// A (kKC, kNC) panel of packed B stays in L3 (a multiple of every micro-tile width).
inline constexpr int kNC = 4096;
// The smallest row block cut only to give a team's threads more units to share.
inline constexpr int kMinMC = 48;
// From this many rows per thread, each thread packs its own copy of B instead of sharing one (no barrier).
inline constexpr int kPrivateBRows = 1024;
// From this many depth blocks (K > 1792), a GEMM is a deep product: summed in kDepthGroups groups of depth
// blocks, each group's C cut into independent slices (deep.hpp).
inline constexpr int kDeepSplitBlocks = 8;
// A deep product is summed in this many contiguous groups of depth blocks, each group to its own partial C,
// then added in group order: the grouping depends on K only, so the bits do not depend on the threads.
inline constexpr int kDepthGroups = 2;
// Up to this many floats (2 MiB), B is packed for several depth blocks at once (larger buffers cost page
// faults on every call, as the allocator hands them back to the system).
inline constexpr int64_t kPackedBFloats = int64_t(1) << 19;
// Below this many flops a GEMM runs on the calling thread: waking a team costs more than it saves.
inline constexpr double kParallelMinFlops = 1 << 19;
// A batch item at least this big is threaded on its own when there are too few items to share out.
inline constexpr double kLargeItemFlops = 1 << 25;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Depth blocking depends on K only (never on the thread count), so every element of C is summed in
// the same order whatever the threading: K is cut into ceil(K / kKC) blocks of nearly equal depth.
struct DepthBlocks {
  int count;
  int depth;  // every block but the last has this depth
  explicit DepthBlocks(int K) : count(int(std::max<int64_t>(1, ceil_div(K, kKC)))), depth(int(ceil_div(K, count))) {}
  int begin(int block) const { return block * depth; }
  int size(int block, int K) const { return std::min(depth, K - block * depth); }
};

}  // namespace tessera::kernels::gemm_impl
