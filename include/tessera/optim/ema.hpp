// WeightEma: an exponential moving average of a model's weights (parameters and buffers), timm's ModelEmaV3 with
// its decay warm-up, evaluated and saved in place of the trained weights.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::optim {

struct WeightEmaOptions {
  double decay = 0.999;  // the largest decay, reached after the warm-up
  // Warm-up (timm's use_warmup): the decay after optimizer step t is 1 - (1 + t / warmup_gamma)^-warmup_power,
  // capped at `decay`, so early averages forget the random init quickly.
  bool warmup = true;
  double warmup_gamma = 1.0;
  double warmup_power = 0.75;

  void validate() const {
    TESSERA_CHECK(decay >= 0.0 && decay < 1.0, "WeightEma: decay must be in [0, 1), got ", decay);
    TESSERA_CHECK(warmup_gamma > 0.0 && warmup_power > 0.0, "WeightEma: warmup_gamma and warmup_power must be "
                  "positive, got ", warmup_gamma, " and ", warmup_power);
  }
};

// Usage: WeightEma ema(model.state_dict(), options); after each optimizer step ema.update(step);
// ema.swap() exchanges the averages with the model's tensors (before and after evaluating or saving).
// Integer-valued counters among the buffers (names ending in "num_batches_tracked") are copied, not averaged.
class WeightEma {
 public:
  // `tensors` are the model's (they share its elements); the averages start as copies of them.
  WeightEma(std::vector<std::pair<std::string, Tensor<float>>> tensors, WeightEmaOptions options)
      : options_(options) {
    options_.validate();
    for (auto& [name, tensor] : tensors) {
      Entry entry{name, tensor, tensor.detach().clone(), name.ends_with("num_batches_tracked")};
      entries_.push_back(std::move(entry));
    }
  }

  // The decay applied after optimizer step `step` (1-based: the first step is 1).
  double decay_at(int64_t step) const {
    if (!options_.warmup) return options_.decay;
    const double warm = 1.0 - std::pow(1.0 + static_cast<double>(std::max<int64_t>(step, 0)) / options_.warmup_gamma,
                                       -options_.warmup_power);
    return std::clamp(warm, 0.0, options_.decay);
  }

  // average = d·average + (1 - d)·weight, with d = decay_at(step).
  void update(int64_t step) {
    const auto d = static_cast<float>(decay_at(step));
    const float w = 1.0f - d;
    for (Entry& e : entries_) {
      float* average = e.average.data();
      const float* weight = e.live.data();
      const int64_t n = e.live.numel();
      if (e.copied) {
        std::copy(weight, weight + n, average);
        continue;
      }
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
      for (int64_t i = 0; i < n; ++i) average[i] = d * average[i] + w * weight[i];
    }
  }

  // Exchanges the averages with the model's tensors: call once to put the averages into the model, again to
  // restore the trained weights.
  void swap() {
    for (Entry& e : entries_) std::swap_ranges(e.live.data(), e.live.data() + e.live.numel(), e.average.data());
  }

  // Makes the averages equal to the model's current tensors (after loading averaged weights into the model).
  void reset_to_model() {
    for (Entry& e : entries_) std::copy(e.live.data(), e.live.data() + e.live.numel(), e.average.data());
  }

  // The held tensors by the model's names: the averages, or, between two swap() calls, the trained weights.
  std::vector<std::pair<std::string, Tensor<float>>> held() const {
    std::vector<std::pair<std::string, Tensor<float>>> out;
    for (const Entry& e : entries_) out.emplace_back(e.name, e.average);
    return out;
  }

  const WeightEmaOptions& options() const { return options_; }

 private:
  struct Entry {
    std::string name;
    Tensor<float> live;     // the model's tensor
    Tensor<float> average;  // the average (or, swapped, the trained weights)
    bool copied = false;    // a counter: copied, not averaged
  };

  WeightEmaOptions options_;
  std::vector<Entry> entries_;
};

}  // namespace tessera::optim
