// One training step (forward, label-smoothed cross-entropy, backward, AdamW) of vit_cifar on random data, repeated,
// printing the median images/s and the median time of each phase: the same work as bench/pytorch_train_step.py.
//
//   vit_train_step --threads 1 2            # one line per thread setting
//   vit_train_step --inference              # forward only, eval mode, no graph
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <thread>
#include <vector>

#include <tessera/tessera.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/train/step.hpp>

#include "cli_checks.hpp"  // examples/cli_checks.hpp: the usage-error exit status of every program

using namespace tessera;

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

struct Result {
  double images_per_second;
  double forward_ms, backward_ms, optimizer_ms;  // medians of each phase (training only)
};

Result time_steps(int threads, int64_t batch, int warmup, int steps, bool inference, bool fused_attention) {
  set_num_threads(threads);
  nn::VisionTransformer<float> model(nn::ViTConfig::vit_cifar(), 0);
  model.set_attention_fn(fused_attention ? &ops::attention<float> : &nn::composed_attention<float>);
  Generator generator(1);
  const auto images = Tensor<float>::normal(Shape{batch, 3, 32, 32}, 0.0f, 1.0f, generator);
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (auto& label : labels) label = static_cast<int64_t>(generator.below(10));
  optim::AdamW<float> optimizer(optim::param_groups_weight_decay(model.named_parameters(), 0.05),
                                optim::AdamWOptions{.lr = 1e-3, .weight_decay = 0.05});

  std::vector<double> seconds, forward, backward, update;
  for (int i = 0; i < warmup + steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    train::StepTimes phases;
    if (inference) {
      model.eval();
      NoGradGuard no_grad;
      model.forward(images);
    } else {
      model.train();
      train::train_step(model, optimizer, images, labels, 0.1, &phases);
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (i < warmup) continue;
    seconds.push_back(elapsed);
    forward.push_back(phases.forward_ms);
    backward.push_back(phases.backward_ms);
    update.push_back(phases.optimizer_ms);
  }
  return {static_cast<double>(batch) / median(seconds), median(forward), median(backward), median(update)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time training steps (or inference) of vit_cifar on random data; prints median images/s"};
  std::vector<int> threads = {static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))};
  int64_t batch = 128;
  int warmup = 3, steps = 10;
  bool inference = false, composed = false;
  app.add_option("--threads", threads, "Thread counts to time, one line each")->check(examples::positive());
  app.add_option("--batch", batch, "Images per step")->capture_default_str()->check(examples::positive());
  app.add_option("--warmup", warmup, "Untimed steps first")->capture_default_str()->check(examples::above(0.0, true));
  app.add_option("--steps", steps, "Timed steps")->capture_default_str()->check(examples::positive());
  app.add_flag("--inference", inference, "Time the forward pass only (eval mode, no graph)");
  app.add_flag("--composed-attention", composed, "Use the attention composed of ops instead of the fused kernel");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return examples::usage_exit(app, e);  // 2 for a usage error, as the examples (docs/training.md)
  }

  keep_freed_memory_for_reuse();  // as train_cifar10 does (core/memory_reuse.hpp): the step it runs
  std::cout << "tessera vit_cifar, " << (inference ? "inference" : "training step") << ", batch " << batch
            << (composed ? ", composed attention" : ", fused attention") << std::endl;
  for (int t : threads) {
    const Result r = time_steps(t, batch, warmup, steps, inference, !composed);
    std::cout << "threads " << t << ": median " << std::fixed << std::setprecision(1) << r.images_per_second
              << " images/s";
    if (!inference)
      std::cout << "  (forward " << r.forward_ms << " ms, backward " << r.backward_ms << " ms, optimizer "
                << r.optimizer_ms << " ms)";
    std::cout << std::endl;
  }
  return 0;
}
