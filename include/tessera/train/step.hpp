// One optimizer step of a classifier (forward, cross-entropy, backward, AdamW) with optional per-phase timings and,
// for data-parallel training, gradients averaged over the ranks; and evaluation of top-1 accuracy over a DataLoader.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <type_traits>

#include "tessera/autograd/engine.hpp"
#include "tessera/autograd/grad_mode.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/data/data_loader.hpp"
#include "tessera/distributed/gradient_buckets.hpp"
#include "tessera/ops/loss.hpp"
#include "tessera/optim/adamw.hpp"

namespace tessera::train {

// Wall-clock milliseconds of each phase of a train_step.
struct StepTimes {
  double forward_ms = 0.0;    // model forward and the loss
  double backward_ms = 0.0;   // loss.backward()
  double optimizer_ms = 0.0;  // zeroing gradients and optimizer.step()
  double gradient_wait_ms = 0.0;  // data parallel: waiting after backward for the gradient averages (wait_all)
};

// Clears the gradients, computes loss = loss_of(model.forward(images)) (a scalar tensor), runs backward and one
// optimizer step at the optimizer's current learning rate; returns the loss. images is (B, C, H, W).
// With `buckets` (data parallel; every rank calls this with its share of the global batch): each bucket of
// gradients starts its average over the ranks from autograd's hook as soon as backward has finished it, and the
// optimizer steps once all averages are in, so every rank takes the same step. The loss returned is this rank's.
template <class Model, class LossOf>
  requires std::is_invocable_r_v<Tensor<float>, LossOf, const Tensor<float>&>
float train_step(Model& model, optim::AdamW<float>& optimizer, const Tensor<float>& images, LossOf&& loss_of,
                 StepTimes* times = nullptr, distributed::GradientBuckets<float>* buckets = nullptr) {
  using Clock = std::chrono::steady_clock;
  const auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  const auto t0 = Clock::now();
  optimizer.zero_grad();
  const auto t1 = Clock::now();
  const Tensor<float> loss = loss_of(model.forward(images));
  const auto t2 = Clock::now();
  if (buckets) {
    autograd::LeafGradReadyGuard<float> guard([buckets](const Tensor<float>& leaf) {
      if (buckets->contains(leaf)) buckets->mark_ready(leaf);
    });
    loss.backward();
  } else {
    loss.backward();
  }
  const auto t3 = Clock::now();
  if (buckets) buckets->wait_all();
  const auto t4 = Clock::now();
  optimizer.step();
  const auto t5 = Clock::now();
  if (times) *times = {ms(t1, t2), ms(t2, t3), ms(t0, t1) + ms(t4, t5), ms(t3, t4)};
  return loss.item();
}

// The same with loss = cross_entropy(logits, labels, label_smoothing); labels holds B class indices.
template <class Model>
float train_step(Model& model, optim::AdamW<float>& optimizer, const Tensor<float>& images,
                 std::span<const int64_t> labels, double label_smoothing, StepTimes* times = nullptr) {
  return train_step(
      model, optimizer, images,
      [&](const Tensor<float>& logits) { return ops::cross_entropy(logits, labels, label_smoothing); }, times);
}

// The index of the largest of n values (the first one on ties).
inline int64_t argmax(const float* values, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (values[i] > values[best]) best = i;
  return best;
}

struct Accuracy {
  int64_t correct = 0;
  int64_t total = 0;
  double percent() const { return total > 0 ? 100.0 * static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

// images (B, C, H, W) mirrored left to right.
inline Tensor<float> flip_horizontal(const Tensor<float>& images) {
  TESSERA_CHECK(images.rank() == 4, "flip_horizontal: expected images of shape (B, C, H, W), got ", images.shape());
  Tensor<float> out = Tensor<float>::empty(images.shape());
  const int64_t rows = images.size(0) * images.size(1) * images.size(2), width = images.size(3);
  const float* in = images.data();
  float* o = out.data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t x = 0; x < width; ++x) o[r * width + x] = in[r * width + width - 1 - x];
  return out;
}

// Top-1 accuracy of `model` over one pass of `loader` (epoch 0), in eval mode and without recording a graph; the
// model's training mode is restored afterwards. With flip, each image is classified by the sum of its logits and
// those of its mirror image (test-time augmentation).
template <class Model>
Accuracy evaluate(Model& model, data::DataLoader& loader, bool flip = false) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  Accuracy accuracy;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    if (batch->size() == 0) continue;  // an empty shard of a data-parallel loader
    Tensor<float> logits = model.forward(batch->images);
    TESSERA_CHECK(logits.rank() == 2 && logits.size(0) == batch->size(), "evaluate: the model returned shape ",
                  logits.shape(), " for a batch of ", batch->size(), " images; expected (", batch->size(),
                  ", classes)");
    if (flip) {
      const Tensor<float> mirrored = model.forward(flip_horizontal(batch->images));
      float* sum = logits.data();
      for (int64_t i = 0; i < logits.numel(); ++i) sum[i] += mirrored.data()[i];
    }
    const int64_t classes = logits.size(1);
    for (int64_t r = 0; r < batch->size(); ++r)
      accuracy.correct += argmax(logits.data() + r * classes, classes) == batch->labels[static_cast<size_t>(r)];
    accuracy.total += batch->size();
  }
  model.train(was_training);
  return accuracy;
}

}  // namespace tessera::train
