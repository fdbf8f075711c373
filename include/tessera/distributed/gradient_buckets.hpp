// distributed::GradientBuckets: parameter gradients grouped in buckets of a few MB, each averaged over the ranks by
// a non-blocking allreduce that starts as soon as its last gradient is final, while backward goes on.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/distributed/communicator.hpp"

namespace tessera::distributed {

struct GradientBucketsOptions {
  // A bucket closes once it holds this many bytes of gradients (a larger parameter gets a bucket of its own).
  // Larger buckets mean fewer collectives, smaller ones start earlier and leave less to wait for at the end; a few
  // MB is where the per-message latency of a network is small beside its transfer time (PyTorch's DDP takes 25 MB
  // for GPUs; the models trained on CPUs here are smaller).
  int64_t bucket_bytes = int64_t{4} << 20;
};

// One step, on every rank:
//   zero or drop the gradients; loss.backward(), calling mark_ready(p) once p's gradient is final (for every p,
//   or for some; wait_all() takes care of the rest); wait_all(); optimizer.step().
// autograd reports when a gradient is final, so the buckets start during backward:
//   autograd::LeafGradReadyGuard<float> guard([&](const Tensor<float>& leaf) {
//     if (buckets.contains(leaf)) buckets.mark_ready(leaf);
//   });
//   loss.backward();
// After wait_all() every parameter's gradient is the average over the ranks, bit-identical on all of them.
//
// Buckets start in bucket order only (bucket k waits for buckets < k), so every rank starts the same collectives in
// the same order even if its gradients become ready in another order; MPI matches collectives by their order.
// Every rank must reach the same set of parameters with gradients: a parameter that has no gradient when its
// bucket starts contributes zeros, and keeps no gradient.
template <class T>
class GradientBuckets {
 public:
  struct Bucket {
    std::vector<size_t> params;  // indices into the parameter list, in its order
    int64_t numel = 0;
  };

  // `params` in the order backward is expected to finish their gradients (see backward_order()); parameters that
  // do not require grad are left out. The order decides the buckets only; the hook's reports may come in another.
  GradientBuckets(Communicator& comm, const std::vector<Tensor<T>>& params, GradientBucketsOptions options = {})
      : comm_(comm) {
    TESSERA_CHECK(options.bucket_bytes > 0, "GradientBuckets: bucket_bytes must be positive, got ",
                  options.bucket_bytes);
    const int64_t capacity = std::max<int64_t>(1, options.bucket_bytes / static_cast<int64_t>(sizeof(T)));
    for (const auto& p : params) {
      TESSERA_CHECK(p.defined(), "GradientBuckets: parameter ", params_.size(), " is an undefined tensor");
      if (!p.requires_grad()) continue;
      TESSERA_CHECK(index_.emplace(p.impl().get(), params_.size()).second, "GradientBuckets: the tensor of shape ",
                    p.shape(), " appears twice in the parameter list");
      if (buckets_.empty() || (buckets_.back().numel > 0 && buckets_.back().numel + p.numel() > capacity))
        buckets_.emplace_back();
      Slot slot{p, buckets_.size() - 1, buckets_.back().numel};
      buckets_.back().params.push_back(params_.size());
      buckets_.back().numel += p.numel();
      params_.push_back(std::move(slot));
    }
    state_.resize(buckets_.size());
    for (size_t b = 0; b < buckets_.size(); ++b) state_[b].flat.resize(static_cast<size_t>(buckets_[b].numel));
    ready_.assign(params_.size(), false);
    had_grad_.assign(params_.size(), false);
  }

  // The order in which tessera's backward finishes the gradients of a model's parameters, as a first
  // approximation: the reverse of registration order (a model registers its layers input to output, and backward
  // visits them output to input). Parameters used by several layers, or a head registered before the blocks, break
  // it; that costs overlap, never correctness (buckets start in order, wait_all() starts whatever is left).
  static std::vector<Tensor<T>> backward_order(std::vector<Tensor<T>> registration_order) {
    std::reverse(registration_order.begin(), registration_order.end());
    return registration_order;
  }

  const std::vector<Bucket>& buckets() const { return buckets_; }
  size_t num_params() const { return params_.size(); }
  // How many buckets of this step have started their allreduce.
  size_t buckets_started() const { return next_to_start_; }
  bool contains(const Tensor<T>& param) const { return param.defined() && index_.count(param.impl().get()) > 0; }

  // Tells the buckets that `param`'s gradient for this step is final: it is copied into its bucket, and every
  // bucket that is now complete (and whose predecessors have started) starts its allreduce.
  void mark_ready(const Tensor<T>& param) {
    TESSERA_CHECK(contains(param), "GradientBuckets::mark_ready: the tensor",
                  param.defined() ? " of shape " : " (undefined)", param.defined() ? param.shape() : Shape{},
                  " is not one of the ", params_.size(), " parameters that require grad");
    const size_t i = index_.at(param.impl().get());
    TESSERA_CHECK(!ready_[i], "GradientBuckets::mark_ready: parameter ", i, " of shape ", param.shape(),
                  " was marked ready twice in one step (call wait_all() after each backward)");
    const Tensor<T> g = param.grad();
    TESSERA_CHECK(g.defined(), "GradientBuckets::mark_ready: parameter ", i, " of shape ", param.shape(),
                  " has no gradient");
    pack(i, true);
    start_complete_buckets();
    poll();
  }

  // Lets MPI move in-flight buckets on (it progresses only inside MPI calls); mark_ready() does it too.
  void poll() {
    for (size_t b = 0; b < next_to_start_; ++b)
      if (state_[b].request && !state_[b].done) state_[b].done = state_[b].request->test();
  }

  // Starts every bucket not started yet, waits for all, and writes each averaged gradient back into its
  // parameter's .grad (in place). Ready for the next step afterwards.
  void wait_all() {
    for (size_t b = next_to_start_; b < buckets_.size(); ++b)
      for (size_t i : buckets_[b].params)
        if (!ready_[i]) pack(i, params_[i].tensor.grad().defined());
    start_complete_buckets();
    for (size_t b = 0; b < buckets_.size(); ++b) {
      State& s = state_[b];
      if (!s.done) s.request->wait();
      for (size_t i : buckets_[b].params) {
        if (!had_grad_[i]) continue;
        const Slot& slot = params_[i];
        std::copy_n(s.flat.data() + slot.offset, slot.tensor.numel(), slot.tensor.grad().data());
      }
      s.request.reset();
      s.done = false;
      s.ready = 0;
    }
    std::fill(ready_.begin(), ready_.end(), false);
    std::fill(had_grad_.begin(), had_grad_.end(), false);
    next_to_start_ = 0;
  }

 private:
  struct Slot {
    Tensor<T> tensor;
    size_t bucket;
    int64_t offset;  // in the bucket's flat buffer
  };
  struct State {
    std::vector<T> flat;
    int64_t ready = 0;
    std::unique_ptr<Request> request;
    bool done = false;
  };

  // Copies parameter i's gradient (or zeros) into its bucket.
  void pack(size_t i, bool has_grad) {
    const Slot& slot = params_[i];
    T* out = state_[slot.bucket].flat.data() + slot.offset;
    if (has_grad) {
      const Tensor<T> g = slot.tensor.grad();
      std::copy_n(g.data(), g.numel(), out);
    } else {
      std::fill_n(out, slot.tensor.numel(), T(0));
    }
    ready_[i] = true;
    had_grad_[i] = has_grad;
    ++state_[slot.bucket].ready;
  }

  void start_complete_buckets() {
    while (next_to_start_ < buckets_.size() &&
           state_[next_to_start_].ready == static_cast<int64_t>(buckets_[next_to_start_].params.size())) {
      State& s = state_[next_to_start_];
      s.request = comm_.start_allreduce_average(std::span<T>(s.flat));
      s.done = false;
      ++next_to_start_;
    }
  }

  Communicator& comm_;
  std::vector<Slot> params_;
  std::vector<Bucket> buckets_;
  std::vector<State> state_;
  std::vector<bool> ready_, had_grad_;
  std::unordered_map<const void*, size_t> index_;
  size_t next_to_start_ = 0;
};

}  // namespace tessera::distributed
