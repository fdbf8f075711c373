// Batch-level MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) with timm's Mixup semantics (mode "batch"), and
// the mixed loss lambda * CE(logits, labels_a) + (1 - lambda) * CE(logits, labels_b).
//
// Each sample is paired with the batch reversed (timm's x.flip(0)): sample i with sample B - 1 - i. One lambda per
// batch, drawn from a Generator that mix_generator derives from (seed, epoch, batch index), so the mixing never
// depends on threads or timing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/data/data_loader.hpp"
#include "tessera/ops/elementwise.hpp"
#include "tessera/ops/loss.hpp"

namespace tessera::data {

// timm's Mixup arguments (its defaults are mixup_alpha 1, cutmix_alpha 0; these are the DeiT-style pair).
struct MixOptions {
  double mixup_alpha = 0.8;   // lambda ~ Beta(mixup_alpha, mixup_alpha) for MixUp; 0 turns MixUp off
  double cutmix_alpha = 1.0;  // lambda ~ Beta(cutmix_alpha, cutmix_alpha) for CutMix; 0 turns CutMix off
  double switch_prob = 0.5;   // with both on, the probability that a batch uses CutMix instead of MixUp
  double prob = 1.0;          // the probability that a batch is mixed at all
  bool correct_lambda = true; // CutMix: lambda = 1 - (area of the clipped box) / (H W), as timm's correct_lam
};

// The rows [top, bottom) and columns [left, right) that CutMix pastes from the paired image.
struct MixBox {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
  int64_t area() const { return (bottom - top) * (right - left); }
};

struct MixedBatch {
  Tensor<float> images;           // (B, C, H, W), a new tensor
  std::vector<int64_t> labels_a;  // the batch's labels
  std::vector<int64_t> labels_b;  // the labels of the paired samples: labels_a reversed
  double lambda = 1.0;            // weight of labels_a; 1 when the batch is not mixed
  bool cutmix = false;            // whether the batch was mixed by CutMix (else MixUp, or not at all)
  MixBox box;                     // the CutMix box (empty otherwise)
};

namespace detail {

inline constexpr uint64_t kMixStream = 0x4D49585550ull;  // "MIXUP"

// Gamma(shape, 1) by Marsaglia and Tsang (2000); shape < 1 through Gamma(shape + 1) * U^(1 / shape).
inline double sample_gamma(double shape, Generator& gen) {
  if (shape < 1.0) {
    const double g = sample_gamma(shape + 1.0, gen);
    return g * std::pow(gen.uniform(), 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    const double x = gen.normal();
    double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = gen.uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (u > 0.0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

}  // namespace detail

// The generator that mixes batch `batch_index` of `epoch`: a splitmix64 hash of (seed, epoch, batch index) on a stream
// of its own (apart from the samples' augmentation).
inline Generator mix_generator(uint64_t seed, int64_t epoch, int64_t batch_index) {
  return Generator(splitmix64(splitmix64(splitmix64(seed ^ detail::kMixStream) ^ static_cast<uint64_t>(epoch)) ^
                              static_cast<uint64_t>(batch_index)));
}

// A draw from Beta(alpha, alpha) = X / (X + Y) with X, Y ~ Gamma(alpha); alpha > 0.
inline double sample_beta(double alpha, Generator& gen) {
  TESSERA_CHECK(alpha > 0.0, "sample_beta: alpha must be positive, got ", alpha);
  const double x = detail::sample_gamma(alpha, gen), y = detail::sample_gamma(alpha, gen);
  return x + y > 0.0 ? x / (x + y) : 0.5;
}

// timm's rand_bbox: cut = (int(H sqrt(1 - lambda)), int(W sqrt(1 - lambda))), centre cy ~ U{0..H-1}, then
// cx ~ U{0..W-1}; rows [cy - cut_h / 2, cy + cut_h / 2) and columns likewise, clipped to the image.
inline MixBox cutmix_box(int64_t height, int64_t width, double lambda, Generator& gen) {
  TESSERA_CHECK(height >= 1 && width >= 1, "cutmix_box: image is empty (", height, "x", width, ")");
  TESSERA_CHECK(lambda >= 0.0 && lambda <= 1.0, "cutmix_box: lambda must be in [0, 1], got ", lambda);
  const double ratio = std::sqrt(1.0 - lambda);
  const auto cut_h = static_cast<int64_t>(static_cast<double>(height) * ratio);
  const auto cut_w = static_cast<int64_t>(static_cast<double>(width) * ratio);
  const auto cy = static_cast<int64_t>(gen.below(static_cast<uint64_t>(height)));
  const auto cx = static_cast<int64_t>(gen.below(static_cast<uint64_t>(width)));
  return {std::clamp<int64_t>(cy - cut_h / 2, 0, height), std::clamp<int64_t>(cy + cut_h / 2, 0, height),
          std::clamp<int64_t>(cx - cut_w / 2, 0, width), std::clamp<int64_t>(cx + cut_w / 2, 0, width)};
}

// Mixes a (B, C, H, W) batch. Draws, in order: with both alphas on, U < switch_prob picks CutMix; lambda from
// the chosen Beta; then U < prob decides whether to mix at all (else lambda = 1). MixUp: image_i = lambda x_i +
// (1 - lambda) x_{B-1-i}. CutMix: the box (cutmix_box) of x_i is replaced by that of x_{B-1-i}, and with
// correct_lambda lambda becomes 1 - box area / (H W). With both alphas 0 the batch is returned unmixed (lambda 1).
inline MixedBatch mix_batch(const Tensor<float>& images, std::span<const int64_t> labels, Generator& gen,
                            const MixOptions& options = {}) {
  TESSERA_CHECK(images.rank() == 4, "mix_batch: images must be (B, C, H, W), got shape ", images.shape());
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  TESSERA_CHECK(static_cast<int64_t>(labels.size()) == B, "mix_batch: ", labels.size(), " labels for ", B,
                " images (shape ", images.shape(), ")");
  TESSERA_CHECK(options.mixup_alpha >= 0.0 && options.cutmix_alpha >= 0.0, "mix_batch: mixup_alpha (",
                options.mixup_alpha, ") and cutmix_alpha (", options.cutmix_alpha, ") must be non-negative");
  TESSERA_CHECK(options.switch_prob >= 0.0 && options.switch_prob <= 1.0 && options.prob >= 0.0 &&
                    options.prob <= 1.0,
                "mix_batch: switch_prob (", options.switch_prob, ") and prob (", options.prob,
                ") must be in [0, 1]");
  MixedBatch out;
  out.images = images.clone();
  out.labels_a.assign(labels.begin(), labels.end());
  out.labels_b.assign(labels.rbegin(), labels.rend());

  const bool mixup_on = options.mixup_alpha > 0.0, cutmix_on = options.cutmix_alpha > 0.0;
  if (!mixup_on && !cutmix_on) return out;
  bool use_cutmix = cutmix_on && !mixup_on;
  if (mixup_on && cutmix_on) use_cutmix = gen.uniform() < options.switch_prob;
  const double drawn = sample_beta(use_cutmix ? options.cutmix_alpha : options.mixup_alpha, gen);
  const bool mix = gen.uniform() < options.prob;
  if (!mix || drawn >= 1.0) return out;

  const int64_t image_size = C * H * W;
  const float* x = images.data();
  float* o = out.images.data();
  out.lambda = drawn;
  if (use_cutmix) {
    out.cutmix = true;
    out.box = cutmix_box(H, W, drawn, gen);
    if (options.correct_lambda)
      out.lambda = 1.0 - static_cast<double>(out.box.area()) / static_cast<double>(H * W);
    const MixBox& box = out.box;
    for (int64_t i = 0; i < B; ++i) {
      const float* partner = x + (B - 1 - i) * image_size;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = box.top; y < box.bottom; ++y) {
          const int64_t offset = (c * H + y) * W + box.left;
          std::memcpy(o + i * image_size + offset, partner + offset,
                      static_cast<size_t>(box.right - box.left) * sizeof(float));
        }
    }
    return out;
  }
  const auto lam = static_cast<float>(drawn), rest = static_cast<float>(1.0 - drawn);
  for (int64_t i = 0; i < B; ++i) {
    const float* self = x + i * image_size;
    const float* partner = x + (B - 1 - i) * image_size;
    float* dst = o + i * image_size;
    for (int64_t k = 0; k < image_size; ++k) dst[k] = lam * self[k] + rest * partner[k];
  }
  return out;
}

// The same on a DataLoader batch (its images and labels).
inline MixedBatch mix_batch(const Batch& batch, Generator& gen, const MixOptions& options = {}) {
  return mix_batch(batch.images, std::span<const int64_t>(batch.labels), gen, options);
}

// lambda * cross_entropy(logits, labels_a) + (1 - lambda) * cross_entropy(logits, labels_b), each with
// label_smoothing: the cross-entropy against timm's mixed soft target (lambda onehot_a + (1 - lambda) onehot_b,
// smoothed). With lambda 1 it is cross_entropy(logits, labels_a).
template <class T>
Tensor<T> mixed_cross_entropy(const Tensor<T>& logits, std::span<const int64_t> labels_a,
                              std::span<const int64_t> labels_b, double lambda, double label_smoothing = 0.0) {
  TESSERA_CHECK(lambda >= 0.0 && lambda <= 1.0, "mixed_cross_entropy: lambda must be in [0, 1], got ", lambda);
  if (lambda == 1.0) return ops::cross_entropy(logits, labels_a, label_smoothing);
  if (lambda == 0.0) return ops::cross_entropy(logits, labels_b, label_smoothing);
  return ops::add(ops::mul(ops::cross_entropy(logits, labels_a, label_smoothing), static_cast<T>(lambda)),
                  ops::mul(ops::cross_entropy(logits, labels_b, label_smoothing), static_cast<T>(1.0 - lambda)));
}

// The same for a MixedBatch's labels and lambda.
template <class T>
Tensor<T> mixed_cross_entropy(const Tensor<T>& logits, const MixedBatch& mixed, double label_smoothing = 0.0) {
  return mixed_cross_entropy(logits, std::span<const int64_t>(mixed.labels_a),
                             std::span<const int64_t>(mixed.labels_b), mixed.lambda, label_smoothing);
}

}  // namespace tessera::data
