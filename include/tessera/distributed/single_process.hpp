// distributed::SingleProcessCommunicator: the stand-in without MPI — one rank, and every collective is the identity.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "tessera/core/error.hpp"
#include "tessera/distributed/communicator.hpp"

namespace tessera::distributed {

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string description() const override { return "single process"; }
  void barrier() override {}
  void broadcast(std::span<std::byte>, int root) override { check_root(root); }
  // The average over one rank is the buffer itself (x_0 / 1 is exact), so nothing is touched.
  std::unique_ptr<Request> start_allreduce_average(std::span<float>) override {
    return std::make_unique<CompletedRequest>();
  }
  std::unique_ptr<Request> start_allreduce_average(std::span<double>) override {
    return std::make_unique<CompletedRequest>();
  }
  void abort(int) override {}

  using Communicator::broadcast;

 private:
  static void check_root(int root) {
    TESSERA_CHECK(root == 0, "broadcast: root rank ", root, " does not exist in a single process (size 1)");
  }
};

}  // namespace tessera::distributed
