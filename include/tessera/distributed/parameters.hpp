// distributed: parameters made equal on every rank (broadcast from one) and checked equal (a hash of their bits).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/distributed/communicator.hpp"

namespace tessera::distributed {

// Copies every tensor of `root` into the same tensor of every other rank (the ranks must hold the same shapes).
template <class T>
void broadcast_tensors(Communicator& comm, const std::vector<Tensor<T>>& tensors, int root = 0) {
  for (const auto& t : tensors) {
    TESSERA_CHECK(t.defined(), "broadcast_tensors: an undefined tensor");
    comm.broadcast(std::as_writable_bytes(std::span<T>(t.data(), static_cast<size_t>(t.numel()))), root);
  }
}

// FNV-1a over the shapes and the bytes of the elements: equal hashes on two ranks mean equal bits (but for a
// collision, 2^-64 per pair).
template <class T>
uint64_t tensors_hash(const std::vector<Tensor<T>>& tensors) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](const unsigned char* bytes, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
  };
  for (const auto& t : tensors) {
    for (int64_t d : t.shape().dims()) mix(reinterpret_cast<const unsigned char*>(&d), sizeof d);
    mix(reinterpret_cast<const unsigned char*>(t.data()), static_cast<size_t>(t.numel()) * sizeof(T));
  }
  return h;
}

// True on every rank when every rank's `hash` equals rank 0's; false on every rank otherwise.
inline bool same_on_all_ranks(Communicator& comm, uint64_t hash) {
  uint64_t root_hash = hash;
  comm.broadcast(std::as_writable_bytes(std::span<uint64_t>(&root_hash, 1)), 0);
  double agree = root_hash == hash ? 1.0 : 0.0;
  comm.allreduce_average(std::span<double>(&agree, 1));
  return agree == 1.0;
}

}  // namespace tessera::distributed
