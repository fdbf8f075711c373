// distributed::Communicator: the interface data-parallel training talks to (rank, size, barrier, broadcast,
// non-blocking allreduce-average), the Request it returns, and the fixed-order reduction every backend uses.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "tessera/core/error.hpp"

namespace tessera::distributed {

// A started collective. wait() returns when this rank's buffer holds the result, or throws tessera::Error
// (a failed peer, or no answer within the communicator's timeout). The buffer given to the call that made the
// request must stay alive and untouched until wait() returns or test() has returned true.
class Request {
 public:
  virtual ~Request() = default;
  // Advances the collective without blocking; true once the result is in the buffer.
  virtual bool test() = 0;
  virtual void wait() = 0;
};

// The determinism rule that every backend follows: rank r owns the slice [slice_begin(n, P, r), slice_begin(n, P,
// r + 1)) of an n-element buffer, and its reduced value is ((x_0 + x_1) + x_2) + ... + x_{P-1}, summed in rank
// order on the owner, then divided by P. Only data movement is left to MPI, never arithmetic, so every rank ends
// with the same bits whatever algorithm MPI picks for moving them.
inline int64_t slice_length(int64_t n, int size) { return (n + size - 1) / size; }
inline int64_t slice_begin(int64_t n, int size, int rank) {
  const int64_t begin = slice_length(n, size) * rank;
  return begin < n ? begin : n;
}

// `out[i] = (sum over r of contributions[r * stride + i]) / size`, in rank order, for i < count.
template <class T>
void ordered_average(T* out, const T* contributions, int64_t stride, int64_t count, int size) {
  for (int64_t i = 0; i < count; ++i) {
    T sum = contributions[i];
    for (int r = 1; r < size; ++r) sum += contributions[r * stride + i];
    out[i] = sum / static_cast<T>(size);
  }
}

// Settings every backend accepts. A wait for a collective (barrier, broadcast, allreduce) that gets no answer
// within `timeout` throws tessera::Error instead of hanging on a dead or stuck peer. 30 s is far above any step of
// the models tessera trains on CPUs (the ranks meet at every step) and ends a stuck job well within a minute; raise
// it where a rank may run alone for longer between collectives (rank 0 writing a large checkpoint, say).
struct CommunicatorOptions {
  std::chrono::milliseconds timeout{30'000};
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // What the backend is, for logs: "single process" or "MPI (Open MPI 4.1.4), 2 ranks".
  virtual std::string description() const = 0;

  virtual void barrier() = 0;
  // Copies `root`'s buffer into every other rank's buffer of the same length.
  virtual void broadcast(std::span<std::byte> buffer, int root) = 0;

  // Starts averaging `buffer` over the ranks, in place, by the fixed-order rule above. Every rank must start the
  // same sequence of collectives with buffers of equal lengths.
  virtual std::unique_ptr<Request> start_allreduce_average(std::span<float> buffer) = 0;
  virtual std::unique_ptr<Request> start_allreduce_average(std::span<double> buffer) = 0;

  // Ends every rank of the job at once (after an error on this one); a single process just returns.
  virtual void abort(int exit_code) = 0;

  void broadcast(std::span<float> buffer, int root) { broadcast(std::as_writable_bytes(buffer), root); }
  void broadcast(std::span<double> buffer, int root) { broadcast(std::as_writable_bytes(buffer), root); }
  void allreduce_average(std::span<float> buffer) { start_allreduce_average(buffer)->wait(); }
  void allreduce_average(std::span<double> buffer) { start_allreduce_average(buffer)->wait(); }
  bool is_root() const { return rank() == 0; }
};

// A request that was complete when it was made.
class CompletedRequest final : public Request {
 public:
  bool test() override { return true; }
  void wait() override {}
};

}  // namespace tessera::distributed
