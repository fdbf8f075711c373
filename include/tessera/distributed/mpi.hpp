// distributed::MpiCommunicator: the MPI backend (compiled only with TESSERA_MPI; link tessera::distributed). Errors
// come back as tessera::Error (MPI_ERRORS_RETURN), and every wait has a timeout.
#pragma once

#if !defined(TESSERA_MPI)
#error "tessera/distributed/mpi.hpp needs MPI: link the tessera::distributed target of a build that found MPI"
#endif

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/distributed/communicator.hpp"

namespace tessera::distributed {

namespace detail {

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error code " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

inline void mpi_check(int code, const char* call, const std::string& what) {
  if (code != MPI_SUCCESS) tessera::detail::fail(what, ": ", call, " failed: ", mpi_error_text(code));
}

inline int mpi_count(int64_t count, const std::string& what) {
  TESSERA_CHECK(count >= 0 && count <= INT_MAX, what, ": ", count, " elements exceed MPI's int count");
  return static_cast<int>(count);
}

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else return MPI_DOUBLE;
}

// Calls `done()` until it returns true; tight at first (a collective on a fast link ends in microseconds), then
// yielding, then sleeping 100 us, so a rank that waits leaves the core to a peer that shares it. Throws after
// `timeout`.
template <class Done>
void poll_until(Done&& done, std::chrono::milliseconds timeout, const std::string& what, const std::string& where) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int64_t polls = 0;; ++polls) {
    if (done()) return;
    if (polls < 64) continue;
    if (polls < 1024) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    if ((polls & 63) == 0 && std::chrono::steady_clock::now() > deadline)
      tessera::detail::fail(what, ": no answer from the other ranks within ", timeout.count() / 1000.0, " s (", where,
                            "); a peer has died or is stuck. The job cannot continue: end it with abort()");
  }
}

inline void wait_with_timeout(MPI_Request& request, std::chrono::milliseconds timeout, const std::string& what,
                              const std::string& where) {
  poll_until(
      [&] {
        int done = 0;
        mpi_check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test", what);
        return done != 0;
      },
      timeout, what, where);
}

// An allreduce in flight, as the queue below sees it.
class QueuedAllreduce {
 public:
  virtual ~QueuedAllreduce() = default;
  // Tests the current phase; when the exchange is complete and `may_gather`, starts the gather.
  virtual void advance(bool may_gather) = 0;
  virtual bool exchanging() const = 0;
  virtual bool finished() const = 0;
};

// The allreduces in flight, oldest first. MPI matches collectives on a communicator by the order in which each rank
// starts them, so every rank must start them in the same order. The exchanges start in program order (as the
// requests are made); the gathers go on a communicator of their own and start strictly oldest first, never in the
// order in which this rank happens to see exchanges complete (which differs between ranks).
class AllreduceQueue {
 public:
  void add(QueuedAllreduce* request) { pending_.push_back(request); }
  void remove(QueuedAllreduce* request) { std::erase(pending_, request); }
  // Moves every allreduce in flight on as far as it goes without blocking.
  void progress() {
    bool may_gather = true;
    for (QueuedAllreduce* request : pending_) {
      request->advance(may_gather);
      may_gather = may_gather && !request->exchanging();
    }
    std::erase_if(pending_, [](QueuedAllreduce* request) { return request->finished(); });
  }

 private:
  std::vector<QueuedAllreduce*> pending_;
};

}  // namespace detail

// The fixed-order average in two MPI collectives that only move data: MPI_Ialltoall sends slice s of this rank's
// buffer to rank s (reduce-scatter without arithmetic), the owner sums its P copies in rank order, then
// MPI_Iallgather gives every rank every averaged slice. Each rank sends and receives 2 (P-1)/P of the buffer, as
// a ring allreduce does. The buffer is padded to P equal slices (MPI's all-to-all needs equal counts). A request
// must not outlive the communicator that made it.
template <class T>
class MpiAllreduceRequest final : public Request, private detail::QueuedAllreduce {
 public:
  MpiAllreduceRequest(MPI_Comm exchange_comm, MPI_Comm gather_comm, detail::AllreduceQueue& queue, int rank, int size,
                      std::span<T> buffer, std::chrono::milliseconds timeout)
      : gather_comm_(gather_comm), queue_(queue), rank_(rank), size_(size), user_(buffer), timeout_(timeout) {
    const int64_t n = static_cast<int64_t>(buffer.size());
    slice_ = slice_length(n, size);
    what_ = "allreduce-average of " + std::to_string(n) + " values";
    where_ = "rank " + std::to_string(rank) + " of " + std::to_string(size);
    if (n == 0) return;  // every rank skips it alike: nothing to start
    const int count = detail::mpi_count(slice_, what_);
    buffers_ = std::make_unique<Buffers>();
    buffers_->send.assign(static_cast<size_t>(slice_ * size), T(0));
    buffers_->received.resize(static_cast<size_t>(slice_ * size));
    buffers_->gathered.resize(static_cast<size_t>(slice_ * size));
    std::copy(buffer.begin(), buffer.end(), buffers_->send.begin());
    detail::mpi_check(MPI_Ialltoall(buffers_->send.data(), count, detail::mpi_type<T>(), buffers_->received.data(),
                                    count, detail::mpi_type<T>(), exchange_comm, &request_),
                      "MPI_Ialltoall", what_);
    phase_ = Phase::exchange;
    queue_.add(this);
  }

  MpiAllreduceRequest(const MpiAllreduceRequest&) = delete;
  MpiAllreduceRequest& operator=(const MpiAllreduceRequest&) = delete;

  // A request dropped before it completed (after an error; the job is then ended with abort()) leaves its
  // buffers to MPI, which may still write into them: they are leaked on purpose rather than freed under it.
  ~MpiAllreduceRequest() override {
    if (phase_ != Phase::done) {
      queue_.remove(this);
      static_cast<void>(buffers_.release());
    }
  }

  bool test() override {
    if (phase_ != Phase::done) queue_.progress();
    return phase_ == Phase::done;
  }

  void wait() override {
    if (phase_ == Phase::done) return;
    detail::poll_until(
        [&] {
          queue_.progress();
          return phase_ == Phase::done;
        },
        timeout_, what_, where_);
  }

 private:
  enum class Phase { exchange, gather, done };
  struct Buffers {
    std::vector<T> send, received, gathered;
  };

  void advance(bool may_gather) override {
    if (phase_ == Phase::done) return;
    if (request_ != MPI_REQUEST_NULL) {
      int complete = 0;
      detail::mpi_check(MPI_Test(&request_, &complete, MPI_STATUS_IGNORE), "MPI_Test", what_);
      if (!complete) return;
    }
    if (phase_ == Phase::exchange) {
      if (!may_gather) return;  // an older allreduce has not started its gather yet
      ordered_average(buffers_->gathered.data() + rank_ * slice_, buffers_->received.data(), slice_, slice_, size_);
      detail::mpi_check(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffers_->gathered.data(),
                                       static_cast<int>(slice_), detail::mpi_type<T>(), gather_comm_, &request_),
                        "MPI_Iallgather", what_);
      phase_ = Phase::gather;
    } else {
      std::copy_n(buffers_->gathered.begin(), user_.size(), user_.begin());
      phase_ = Phase::done;
    }
  }
  bool exchanging() const override { return phase_ == Phase::exchange; }
  bool finished() const override { return phase_ == Phase::done; }

  MPI_Comm gather_comm_;
  detail::AllreduceQueue& queue_;
  int rank_, size_;
  std::span<T> user_;
  std::chrono::milliseconds timeout_;
  int64_t slice_ = 0;
  std::string what_, where_;
  std::unique_ptr<Buffers> buffers_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  Phase phase_ = Phase::done;
};

// The job's ranks (duplicates of MPI_COMM_WORLD, so tessera's messages never meet the application's). Initialises
// MPI (MPI_THREAD_FUNNELED: only the thread that made the communicator calls MPI) unless the application did, and
// then finalises it on destruction.
class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(CommunicatorOptions options = {}) : options_(options) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      const int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      TESSERA_CHECK(code == MPI_SUCCESS, "MpiCommunicator: MPI_Init_thread failed (code ", code, ")");
      owns_mpi_ = true;
    }
    detail::mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler",
                      "MpiCommunicator");
    for (MPI_Comm* comm : {&comm_, &gather_comm_}) {
      detail::mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, comm), "MPI_Comm_dup", "MpiCommunicator");
      detail::mpi_check(MPI_Comm_set_errhandler(*comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler",
                        "MpiCommunicator");
    }
    detail::mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank", "MpiCommunicator");
    detail::mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size", "MpiCommunicator");
  }

  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&gather_comm_);
    MPI_Comm_free(&comm_);
    if (owns_mpi_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string description() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    std::string library(version, static_cast<size_t>(length));
    library = library.substr(0, library.find_first_of(",\n"));
    return "MPI (" + library + "), " + std::to_string(size_) + (size_ == 1 ? " rank" : " ranks");
  }

  void barrier() override {
    MPI_Request request = MPI_REQUEST_NULL;
    detail::mpi_check(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier", "barrier");
    detail::wait_with_timeout(request, options_.timeout, "barrier", where());
  }

  void broadcast(std::span<std::byte> buffer, int root) override {
    const std::string what = "broadcast of " + std::to_string(buffer.size()) + " bytes from rank " + std::to_string(root);
    TESSERA_CHECK(root >= 0 && root < size_, what, ": root rank ", root, " does not exist (size ", size_, ")");
    MPI_Request request = MPI_REQUEST_NULL;
    detail::mpi_check(MPI_Ibcast(buffer.data(), detail::mpi_count(static_cast<int64_t>(buffer.size()), what), MPI_BYTE,
                                 root, comm_, &request),
                      "MPI_Ibcast", what);
    detail::wait_with_timeout(request, options_.timeout, what, where());
  }

  std::unique_ptr<Request> start_allreduce_average(std::span<float> buffer) override {
    return std::make_unique<MpiAllreduceRequest<float>>(comm_, gather_comm_, queue_, rank_, size_, buffer,
                                                        options_.timeout);
  }
  std::unique_ptr<Request> start_allreduce_average(std::span<double> buffer) override {
    return std::make_unique<MpiAllreduceRequest<double>>(comm_, gather_comm_, queue_, rank_, size_, buffer,
                                                         options_.timeout);
  }

  void abort(int exit_code) override { MPI_Abort(comm_, exit_code); }

  using Communicator::broadcast;

 private:
  std::string where() const { return "rank " + std::to_string(rank_) + " of " + std::to_string(size_); }

  CommunicatorOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;         // barrier, broadcast and the exchange phase of allreduce
  MPI_Comm gather_comm_ = MPI_COMM_NULL;  // the gather phase of allreduce (AllreduceQueue says why)
  detail::AllreduceQueue queue_;
  int rank_ = 0, size_ = 1;
  bool owns_mpi_ = false;
};

}  // namespace tessera::distributed
