// Tests of distributed/ in one process: the fixed-order average and its slices, the single-process stand-in,
// GradientBuckets (bucketing, start order, mark_ready/wait_all) against a recording communicator, the DataLoader's
// shards and the launcher's environment. The MPI backend runs under mpirun in tests/mpi/data_parallel_check.cpp, the
// data-parallel Trainer in tests/mpi/trainer_check.cpp.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/distributed/distributed.hpp>
#include <tessera/tessera.hpp>

using tessera::Error;
using tessera::Shape;
using tessera::Tensor;
namespace dist = tessera::distributed;

namespace {

Tensor<float> parameter(int64_t n, float first) {
  Tensor<float> p = Tensor<float>::arange(first, first + static_cast<float>(n));
  p.set_requires_grad();
  return p;
}

void set_grad(const Tensor<float>& p, float first) {
  p.set_grad(Tensor<float>::arange(first, first + static_cast<float>(p.numel())));
}

// A communicator of `size` ranks whose other ranks all hold `peer_value` everywhere: records each allreduce it is
// asked to start (length and contents as handed over), and completes it only in wait().
class RecordingCommunicator final : public dist::Communicator {
 public:
  struct Started {
    std::vector<float> contents;
  };
  std::vector<Started> started;
  int waits = 0;
  float peer_value = 1.0f;
  int ranks = 2;

  int rank() const override { return 0; }
  int size() const override { return ranks; }
  std::string description() const override { return "recording"; }
  void barrier() override {}
  void broadcast(std::span<std::byte>, int) override {}
  std::unique_ptr<dist::Request> start_allreduce_average(std::span<float> buffer) override {
    started.push_back({std::vector<float>(buffer.begin(), buffer.end())});
    return std::make_unique<LaterRequest>(*this, buffer);
  }
  std::unique_ptr<dist::Request> start_allreduce_average(std::span<double>) override {
    FAIL("unexpected double allreduce");
    return nullptr;
  }
  void abort(int) override {}

 private:
  class LaterRequest final : public dist::Request {
   public:
    LaterRequest(RecordingCommunicator& comm, std::span<float> buffer) : comm_(comm), buffer_(buffer) {}
    bool test() override { return done_; }
    void wait() override {
      if (done_) return;
      ++comm_.waits;
      for (float& x : buffer_) x = (x + comm_.peer_value * static_cast<float>(comm_.ranks - 1)) / comm_.ranks;
      done_ = true;
    }

   private:
    RecordingCommunicator& comm_;
    std::span<float> buffer_;
    bool done_ = false;
  };
};

}  // namespace

TEST_CASE("slices of the fixed-order average cover the buffer in rank order") {
  CHECK(dist::slice_length(10, 3) == 4);
  CHECK(dist::slice_begin(10, 3, 0) == 0);
  CHECK(dist::slice_begin(10, 3, 1) == 4);
  CHECK(dist::slice_begin(10, 3, 2) == 8);
  CHECK(dist::slice_begin(10, 3, 3) == 10);
  // More ranks than elements: the last ranks own empty slices.
  CHECK(dist::slice_length(2, 4) == 1);
  CHECK(dist::slice_begin(2, 4, 2) == 2);
  CHECK(dist::slice_begin(2, 4, 4) == 2);
  CHECK(dist::slice_length(0, 2) == 0);
}

TEST_CASE("ordered_average sums in rank order, then divides") {
  // In float, (1e8 + 1) - 1e8 is 0 while (1e8 - 1e8) + 1 is 1: the order is visible in the result.
  const std::vector<float> contributions = {1e8f, 2.0f, 1.0f, 4.0f, -1e8f, 6.0f};  // 3 ranks, stride 2
  std::vector<float> out(2);
  dist::ordered_average(out.data(), contributions.data(), 2, 2, 3);
  CHECK(out[0] == 0.0f);
  CHECK(out[1] == 4.0f);
  const std::vector<double> pair = {0.1, 0.2};
  double mean = 0;
  dist::ordered_average(&mean, pair.data(), 1, 1, 2);
  CHECK(mean == (0.1 + 0.2) / 2);
}

TEST_CASE("the single-process stand-in is one rank whose collectives are the identity") {
  dist::SingleProcessCommunicator comm;
  CHECK(comm.rank() == 0);
  CHECK(comm.size() == 1);
  CHECK(comm.is_root());
  std::vector<float> values = {1.5f, -2.25f, 3.0f};
  const std::vector<float> before = values;
  comm.allreduce_average(std::span<float>(values));
  CHECK(values == before);
  auto request = comm.start_allreduce_average(std::span<float>(values));
  CHECK(request->test());
  request->wait();
  comm.broadcast(std::span<float>(values), 0);
  CHECK(values == before);
  comm.barrier();
  test::check_error([&] { comm.broadcast(std::span<float>(values), 1); }, {"broadcast", "root rank 1", "size 1"});
}

TEST_CASE("make_world_communicator without TESSERA_MPI is the stand-in") {
  static_assert(!dist::have_mpi, "tests/distributed_test.cpp is built without tessera::distributed's MPI");
  auto world = dist::make_world_communicator();
  CHECK(world->size() == 1);
  CHECK(world->description() == "single process");
}

TEST_CASE("GradientBuckets groups parameters in the given order into buckets of bucket_bytes") {
  dist::SingleProcessCommunicator comm;
  Tensor<float> frozen = Tensor<float>::zeros(Shape{4});
  std::vector<Tensor<float>> params = {parameter(3, 0), parameter(5, 0), frozen, parameter(2, 0), parameter(7, 0),
                                       parameter(20, 0), parameter(1, 0)};
  dist::GradientBuckets<float> buckets(comm, params, {.bucket_bytes = 8 * sizeof(float)});
  CHECK(buckets.num_params() == 6);  // the frozen one is left out
  CHECK_FALSE(buckets.contains(frozen));
  const auto& b = buckets.buckets();
  REQUIRE(b.size() == 5);
  CHECK(b[0].params == std::vector<size_t>{0, 1});  // 3 + 5 = 8 fits exactly
  CHECK(b[0].numel == 8);
  CHECK(b[1].params == std::vector<size_t>{2});  // 2 + 7 > 8
  CHECK(b[2].params == std::vector<size_t>{3});
  CHECK(b[3].params == std::vector<size_t>{4});  // larger than a bucket: alone
  CHECK(b[3].numel == 20);
  CHECK(b[4].params == std::vector<size_t>{5});

  test::check_error([&] { dist::GradientBuckets<float>(comm, {params[0], params[0]}); }, {"appears twice"});
  test::check_error([&] { dist::GradientBuckets<float>(comm, params, {.bucket_bytes = 0}); }, {"bucket_bytes"});
}

TEST_CASE("backward_order is the reverse of registration order") {
  std::vector<Tensor<float>> params = {parameter(1, 0), parameter(2, 0), parameter(3, 0)};
  const auto order = dist::GradientBuckets<float>::backward_order(params);
  REQUIRE(order.size() == 3);
  CHECK(order[0].impl() == params[2].impl());
  CHECK(order[1].impl() == params[1].impl());
  CHECK(order[2].impl() == params[0].impl());
}

TEST_CASE("mark_ready starts a bucket when its last gradient is ready, and buckets start in order") {
  RecordingCommunicator comm;
  std::vector<Tensor<float>> params = {parameter(2, 0), parameter(2, 0), parameter(3, 0), parameter(2, 0)};
  for (size_t i = 0; i < params.size(); ++i) set_grad(params[i], 10.0f * static_cast<float>(i));
  // Buckets {0, 1}, {2}, {3}.
  dist::GradientBuckets<float> buckets(comm, params, {.bucket_bytes = 4 * sizeof(float)});
  REQUIRE(buckets.buckets().size() == 3);

  buckets.mark_ready(params[2]);  // bucket 1 is complete, but bucket 0 has not started: it waits
  CHECK(buckets.buckets_started() == 0);
  CHECK(comm.started.empty());
  buckets.mark_ready(params[0]);
  CHECK(buckets.buckets_started() == 0);
  buckets.mark_ready(params[1]);  // bucket 0 complete: 0 and then 1 start
  CHECK(buckets.buckets_started() == 2);
  REQUIRE(comm.started.size() == 2);
  CHECK(comm.started[0].contents == std::vector<float>{0, 1, 10, 11});
  CHECK(comm.started[1].contents == std::vector<float>{20, 21, 22});
  test::check_error([&] { buckets.mark_ready(params[1]); }, {"marked ready twice", "wait_all"});
  test::check_error([&] { buckets.mark_ready(parameter(2, 0)); }, {"mark_ready", "not one of the 4 parameters"});
  // The gradient is copied at mark_ready: a later change to .grad is not what gets averaged.
  set_grad(params[0], 100.0f);
  CHECK(comm.waits == 0);

  buckets.wait_all();  // starts bucket 2, waits for all, writes (g + 1) / 2 back
  REQUIRE(comm.started.size() == 3);
  CHECK(comm.started[2].contents == std::vector<float>{30, 31});
  CHECK(comm.waits == 3);
  auto grad = [](const Tensor<float>& p) { return std::vector<float>(p.grad().data(), p.grad().data() + p.numel()); };
  CHECK(grad(params[0]) == std::vector<float>{0.5f, 1.0f});
  CHECK(grad(params[1]) == std::vector<float>{5.5f, 6.0f});
  CHECK(grad(params[2]) == std::vector<float>{10.5f, 11.0f, 11.5f});
  CHECK(grad(params[3]) == std::vector<float>{15.5f, 16.0f});

  // The next step starts afresh.
  set_grad(params[3], 2.0f);
  buckets.mark_ready(params[3]);
  CHECK(buckets.buckets_started() == 0);
  buckets.wait_all();
  CHECK(comm.started.size() == 6);
  CHECK(grad(params[3]) == std::vector<float>{1.5f, 2.0f});
}

TEST_CASE("wait_all sends zeros for a parameter without gradient and leaves it without one") {
  RecordingCommunicator comm;
  std::vector<Tensor<float>> params = {parameter(2, 0), parameter(2, 0)};
  set_grad(params[0], 4.0f);
  dist::GradientBuckets<float> buckets(comm, params);
  REQUIRE(buckets.buckets().size() == 1);
  test::check_error([&] { buckets.mark_ready(params[1]); }, {"has no gradient"});
  buckets.wait_all();
  REQUIRE(comm.started.size() == 1);
  CHECK(comm.started[0].contents == std::vector<float>{4, 5, 0, 0});
  CHECK_FALSE(params[1].grad().defined());
  CHECK(params[0].grad().data()[1] == 3.0f);
}

TEST_CASE("with one rank, bucketed averaging leaves the gradients of a real backward bit for bit") {
  tessera::Generator gen(7);
  tessera::nn::Linear<float> fc1(5, 7, true, gen), fc2(7, 3, true, gen);
  std::vector<Tensor<float>> params = fc1.parameters();
  for (const auto& p : fc2.parameters()) params.push_back(p);
  dist::SingleProcessCommunicator comm;
  dist::GradientBuckets<float> buckets(comm, dist::GradientBuckets<float>::backward_order(params),
                                       {.bucket_bytes = 40 * sizeof(float)});
  CHECK(buckets.buckets().size() >= 2);
  const Tensor<float> x = Tensor<float>::uniform(Shape{4, 5}, -1.0f, 1.0f, gen);
  const Tensor<float> loss = tessera::ops::cross_entropy(fc2(tessera::ops::gelu(fc1(x))), std::vector<int64_t>{0, 2, 1, 2});
  loss.backward();
  std::vector<std::vector<float>> before;
  for (const auto& p : params) before.emplace_back(p.grad().data(), p.grad().data() + p.numel());
  for (const auto& p : dist::GradientBuckets<float>::backward_order(params)) buckets.mark_ready(p);
  CHECK(buckets.buckets_started() == buckets.buckets().size());
  buckets.wait_all();
  for (size_t i = 0; i < params.size(); ++i)
    CHECK(std::memcmp(before[i].data(), params[i].grad().data(), before[i].size() * sizeof(float)) == 0);
}

TEST_CASE("tensors_hash sees one flipped bit, and the stand-in agrees with itself") {
  std::vector<Tensor<float>> params = {parameter(3, 1), parameter(4, 2)};
  const uint64_t h = dist::tensors_hash(params);
  CHECK(dist::tensors_hash(params) == h);
  uint32_t bits;
  std::memcpy(&bits, params[1].data() + 2, sizeof bits);
  bits ^= 1u;
  std::memcpy(params[1].data() + 2, &bits, sizeof bits);
  CHECK(dist::tensors_hash(params) != h);
  // Same elements, another shape: another hash.
  CHECK(dist::tensors_hash(std::vector<Tensor<float>>{Tensor<float>::zeros(Shape{2, 3})}) !=
        dist::tensors_hash(std::vector<Tensor<float>>{Tensor<float>::zeros(Shape{3, 2})}));
  dist::SingleProcessCommunicator comm;
  CHECK(dist::same_on_all_ranks(comm, h));
  dist::broadcast_tensors(comm, params);
}

TEST_CASE("through autograd's leaf-gradient-ready hook, buckets start while backward still runs") {
  tessera::Generator gen(11);
  tessera::nn::Linear<float> fc1(6, 8, true, gen), fc2(8, 8, true, gen), fc3(8, 4, true, gen);
  std::vector<Tensor<float>> params;
  for (auto* layer : {&fc1, &fc2, &fc3})
    for (const auto& p : layer->parameters()) params.push_back(p);
  RecordingCommunicator comm;
  comm.ranks = 1;  // (x + 0) / 1: the averaged gradient is the gradient
  // Buckets {fc3.bias, fc3.weight} (4 + 32), {fc2.bias}, {fc2.weight} (8 + 64 > 36), {fc1.bias}, {fc1.weight}.
  dist::GradientBuckets<float> buckets(comm, dist::GradientBuckets<float>::backward_order(params),
                                       {.bucket_bytes = 36 * sizeof(float)});
  REQUIRE(buckets.buckets().size() == 5);
  std::vector<size_t> started_at_report;
  const Tensor<float> x = Tensor<float>::uniform(Shape{5, 6}, -1.0f, 1.0f, gen);
  const Tensor<float> loss =
      tessera::ops::cross_entropy(fc3(tessera::ops::gelu(fc2(tessera::ops::gelu(fc1(x))))), std::vector<int64_t>{0, 1, 2, 3, 0});
  {
    tessera::autograd::LeafGradReadyGuard<float> guard([&](const Tensor<float>& leaf) {
      if (buckets.contains(leaf)) buckets.mark_ready(leaf);
      started_at_report.push_back(buckets.buckets_started());
    });
    loss.backward();
  }
  // Each linear layer's weight and bias are final together (one node): fc3's bucket starts with the second
  // report, fc2's two with the fourth, fc1's with the last; every bucket starts inside backward.
  CHECK(started_at_report == std::vector<size_t>{0, 1, 1, 3, 3, 5});
  buckets.wait_all();
  CHECK(comm.waits == 5);
}

TEST_CASE("the shards of a DataLoader's batch, in rank order, are the batch of one process") {
  // 11 random 4x4 images; batches of 5 (the last of 1: an empty shard for some ranks when there are 2 or 3).
  tessera::Generator gen(5);
  std::vector<tessera::data::Image> images;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < 11; ++i) {
    tessera::data::Image image(4, 4, 3);
    for (auto& p : image.pixels) p = static_cast<uint8_t>(gen.below(256));
    images.push_back(std::move(image));
    labels.push_back(i % 2);
  }
  const auto set = std::make_shared<tessera::data::InMemoryDataset>(std::move(images), std::move(labels),
                                                                    std::vector<std::string>{"a", "b"}, "random");
  const auto transform = [] {
    return tessera::data::Compose{tessera::data::RandomCrop(4, 1), tessera::data::RandomHorizontalFlip(0.5),
                                  tessera::data::ToTensor()};
  };
  const tessera::data::DataLoaderOptions options{.batch_size = 5, .shuffle = true, .seed = 9, .num_workers = 0};
  tessera::data::DataLoader whole(set, transform(), options);
  for (int shards : {2, 3}) {
    std::vector<std::unique_ptr<tessera::data::DataLoader>> parts;
    for (int r = 0; r < shards; ++r) {
      tessera::data::DataLoaderOptions part = options;
      part.shard = r;
      part.num_shards = shards;
      parts.push_back(std::make_unique<tessera::data::DataLoader>(set, transform(), part));
      CHECK(parts.back()->num_batches() == whole.num_batches());
    }
    for (int64_t epoch : {0, 1}) {
      whole.start_epoch(epoch);
      for (auto& part : parts) part->start_epoch(epoch);
      while (auto batch = whole.next()) {
        std::vector<int64_t> indices, batch_labels;
        std::vector<float> pixels;
        int64_t rows = 0;
        for (int r = 0; r < shards; ++r) {
          auto shard = parts[static_cast<size_t>(r)]->next();
          REQUIRE(shard.has_value());
          CHECK(shard->index == batch->index);
          CHECK(shard->first_row == batch->size() * r / shards);
          CHECK(shard->size() == batch->size() * (r + 1) / shards - batch->size() * r / shards);
          rows += shard->size();
          indices.insert(indices.end(), shard->indices.begin(), shard->indices.end());
          batch_labels.insert(batch_labels.end(), shard->labels.begin(), shard->labels.end());
          if (shard->size() > 0)
            pixels.insert(pixels.end(), shard->images.data(), shard->images.data() + shard->images.numel());
          else
            CHECK_FALSE(shard->images.defined());
        }
        CHECK(rows == batch->size());
        CHECK(indices == batch->indices);
        CHECK(batch_labels == batch->labels);
        REQUIRE(pixels.size() == static_cast<size_t>(batch->images.numel()));
        CHECK(std::memcmp(pixels.data(), batch->images.data(), pixels.size() * sizeof(float)) == 0);
      }
      for (auto& part : parts) CHECK_FALSE(part->next().has_value());
    }
  }
  tessera::data::DataLoaderOptions bad = options;
  bad.shard = 2;
  bad.num_shards = 2;
  CHECK_THROWS_AS(tessera::data::DataLoader(set, transform(), bad), Error);
}

TEST_CASE("launcher_world_size reads the size an MPI launcher puts in the environment") {
  const char* names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
  std::vector<std::string> saved;
  std::vector<bool> had;
  for (const char* name : names) {
    const char* value = std::getenv(name);
    had.push_back(value != nullptr);
    saved.emplace_back(value ? value : "");
    unsetenv(name);
  }
  CHECK(dist::launcher_world_size() == 0);
  setenv("PMI_SIZE", "3", 1);
  CHECK(dist::launcher_world_size() == 3);
  setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  CHECK(dist::launcher_world_size() == 4);
  for (size_t i = 0; i < 2; ++i) {
    if (had[i]) setenv(names[i], saved[i].c_str(), 1);
    else unsetenv(names[i]);
  }
}
