// Cache blocking of the packed GEMM: kMC rows of A kept in L2, depth kKC kept in L1, kNC columns of B in L3,
// and the depth split that fixes the summation order of every element of C.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tessera::kernels::gemm_impl {

inline constexpr int kMC = 144;   // an (kMC, kKC) block of packed A stays in L2
inline constexpr int kKC = 256;   // a (kKC, kNR) sliver of packed B stays in L1
inline constexpr int kNC = 4096;  // a (kKC, kNC) panel of packed B stays in L3
inline constexpr int kMinMC = 48;  // smallest row block made only to give threads more units
inline constexpr int kPrivateBRows = 1024;  // rows per thread from which each thread packs its own B
inline constexpr int64_t kPackedBFloats = int64_t(1) << 21;  // B panel packed for several depth blocks at once (8 MiB)

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
