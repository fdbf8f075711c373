// Data-parallel training over MPI against one process (run by ctest as `mpirun -np N data_parallel_check`): a tiny
// ViT, 20 AdamW steps on fixed synthetic batches, each rank taking its 1/N of every global batch. Checks that the
// averaged loss of every step and the final parameters match one process at the full global batch, that every
// rank holds bit-identical parameters after every step, and that a collective with no answer times out.
#include <cmath>
#include <cstdio>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include <tessera/distributed/distributed.hpp>
#include <tessera/tessera.hpp>

namespace dist = tessera::distributed;
using tessera::Shape;
using tessera::Tensor;

namespace {

constexpr int kSteps = 20;
constexpr int64_t kGlobalBatch = 12;

tessera::nn::ViTConfig tiny_vit() {
  tessera::nn::ViTConfig c;
  c.img_size = 8;
  c.patch_size = 4;
  c.num_classes = 5;
  c.embed_dim = 16;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_ratio = 2.0;
  // The key part of the qkv bias has a gradient of exactly zero in exact arithmetic (softmax ignores a constant
  // added to every score of a row), so in floating point it is rounding noise that AdamW scales up to steps of
  // size lr: no two summation orders agree on it. Without the bias every parameter has a real gradient.
  c.qkv_bias = false;
  return c;
}

// The global batch of `step`: images drawn from a generator seeded by the step, labels from the image index.
struct GlobalBatch {
  Tensor<float> images;
  std::vector<int64_t> labels;
};
GlobalBatch global_batch(int step) {
  tessera::Generator gen(1000 + static_cast<uint64_t>(step));
  GlobalBatch b{Tensor<float>::uniform(Shape{kGlobalBatch, 3, 8, 8}, -1.0f, 1.0f, gen), {}};
  for (int64_t i = 0; i < kGlobalBatch; ++i) b.labels.push_back((i * 3 + step) % 5);
  return b;
}

std::vector<Tensor<float>> tensors(const tessera::optim::NamedParameters<float>& named) {
  std::vector<Tensor<float>> out;
  for (const auto& [name, p] : named) out.push_back(p);
  return out;
}

struct Failures {
  int count = 0;
  void check(bool ok, const std::string& what) {
    if (!ok) {
      ++count;
      std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    }
  }
};

int run(dist::Communicator& comm) {
  Failures failures;
  const int rank = comm.rank(), size = comm.size();
  if (kGlobalBatch % size != 0) {
    std::fprintf(stderr, "data_parallel_check: the global batch %lld does not split over %d ranks\n",
                 static_cast<long long>(kGlobalBatch), size);
    return 1;
  }
  const int64_t local_batch = kGlobalBatch / size;
  const tessera::optim::AdamWOptions adamw{.lr = 1e-2, .weight_decay = 0.05};

  // One process at the full global batch (every rank computes it, as the reference).
  tessera::nn::VisionTransformer<float> reference(tiny_vit(), 3);
  tessera::optim::AdamW<float> reference_optimizer(reference.named_parameters(), adamw);
  std::vector<float> reference_losses;
  for (int step = 0; step < kSteps; ++step) {
    const GlobalBatch b = global_batch(step);
    reference_optimizer.zero_grad();
    const Tensor<float> loss = tessera::ops::cross_entropy(reference.forward(b.images), b.labels);
    loss.backward();
    reference_optimizer.step();
    reference_losses.push_back(loss.item());
  }

  // Data parallel: each rank starts from its own initialisation, and rank 0's is broadcast to all.
  tessera::nn::VisionTransformer<float> model(tiny_vit(), rank == 0 ? 3 : 77 + rank);
  const std::vector<Tensor<float>> params = tensors(model.named_parameters());
  dist::broadcast_tensors(comm, params, 0);
  tessera::optim::AdamW<float> optimizer(model.named_parameters(), adamw);
  // Small buckets, so that the ~5k parameters of the model make many, several of them in flight at once.
  dist::GradientBuckets<float> buckets(comm, dist::GradientBuckets<float>::backward_order(params),
                                       {.bucket_bytes = 1024});
  if (rank == 0)
    std::printf("%s, %zu parameters in %zu buckets, local batch %lld\n", comm.description().c_str(), params.size(),
                buckets.buckets().size(), static_cast<long long>(local_batch));
  failures.check(buckets.buckets().size() >= 10, "the model should fill at least 10 buckets of 1 KB");

  size_t started_in_backward = 0;
  for (int step = 0; step < kSteps; ++step) {
    const GlobalBatch b = global_batch(step);
    const Tensor<float> images = b.images.rows(rank * local_batch, local_batch).clone();
    const std::vector<int64_t> labels(b.labels.begin() + rank * local_batch,
                                      b.labels.begin() + (rank + 1) * local_batch);
    optimizer.zero_grad();
    const Tensor<float> loss = tessera::ops::cross_entropy(model.forward(images), labels);
    {  // the buckets start their allreduce from autograd's hook, while backward runs
      tessera::autograd::LeafGradReadyGuard<float> guard([&](const Tensor<float>& leaf) {
        if (buckets.contains(leaf)) buckets.mark_ready(leaf);
      });
      loss.backward();
    }
    started_in_backward += buckets.buckets_started();
    buckets.wait_all();
    optimizer.step();

    double mean_loss = loss.item();
    comm.allreduce_average(std::span<double>(&mean_loss, 1));
    const double expected = reference_losses[static_cast<size_t>(step)];
    failures.check(std::fabs(mean_loss - expected) <= 1e-5 * std::fabs(expected),
                   "step " + std::to_string(step) + ": loss averaged over the ranks " + std::to_string(mean_loss) +
                       " differs from one process's " + std::to_string(expected));
    failures.check(dist::same_on_all_ranks(comm, dist::tensors_hash(params)),
                   "step " + std::to_string(step) + ": the parameters differ between ranks");
    if (rank == 0 && (step == 0 || step == kSteps - 1))
      std::printf("step %2d: loss %.7f (one process %.7f)\n", step, mean_loss, expected);
  }

  failures.check(started_in_backward == kSteps * buckets.buckets().size(),
                 "every bucket should have started its allreduce from the hook, inside backward");

  // Final parameters: each tensor within 1e-5 of one process's, relative to its norm.
  const auto reference_named = reference.named_parameters();
  const auto named = model.named_parameters();
  double worst = 0.0;
  for (size_t i = 0; i < named.size(); ++i) {
    const Tensor<float>& a = named[i].second;
    const Tensor<float>& r = reference_named[i].second;
    double diff = 0.0, norm = 0.0;
    for (int64_t k = 0; k < a.numel(); ++k) {
      diff += std::pow(static_cast<double>(a.data()[k]) - r.data()[k], 2);
      norm += std::pow(static_cast<double>(r.data()[k]), 2);
    }
    const double relative = std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
    worst = std::max(worst, relative);
    failures.check(relative <= 1e-5, named[i].first + ": relative difference " + std::to_string(relative) +
                                         " from one process exceeds 1e-5");
  }
  if (rank == 0) std::printf("final parameters: largest relative difference from one process %.3g\n", worst);

  // A collective that one rank does not join times out on the others with a message, instead of hanging; it
  // completes once the late rank joins.
  if (size > 1) {
    dist::MpiCommunicator quick({.timeout = std::chrono::milliseconds(300)});
    double value = rank;
    if (rank == 0) {
      auto request = quick.start_allreduce_average(std::span<double>(&value, 1));
      bool timed_out = false;
      try {
        request->wait();
      } catch (const tessera::Error& e) {
        timed_out = std::string(e.what()).find("no answer from the other ranks within 0.3 s") != std::string::npos;
        std::printf("as expected: %s\n", e.what());
      }
      failures.check(timed_out, "an allreduce that rank 0 alone started should time out after 0.3 s");
      comm.barrier();
      request->wait();
    } else {
      comm.barrier();
      quick.start_allreduce_average(std::span<double>(&value, 1))->wait();
    }
    failures.check(value == (size - 1) / 2.0, "the late allreduce should average the ranks' numbers");
  }

  double failed = failures.count > 0 ? 1.0 : 0.0;
  comm.allreduce_average(std::span<double>(&failed, 1));
  if (rank == 0) std::printf(failed == 0.0 ? "data_parallel_check: passed\n" : "data_parallel_check: FAILED\n");
  return failed == 0.0 ? 0 : 1;
}

}  // namespace

int main() {
  dist::MpiCommunicator comm;
  try {
    return run(comm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_parallel_check, rank %d: %s\n", comm.rank(), e.what());
    comm.abort(1);
    return 1;
  }
}
