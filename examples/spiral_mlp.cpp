// Trains a small MLP on two interleaved spirals with plain SGD: the foundation's ops and autograd end to end.
#include <CLI/CLI.hpp>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <tessera/tessera.hpp>

#include "cli_checks.hpp"

using namespace tessera;

namespace {

struct SpiralData {
  Tensor<float> points;         // (2 * per_arm, 2)
  std::vector<int64_t> labels;  // arm index, 0 or 1
};

// Two arms r = t, angle = t (+ pi for the second arm), with a little noise.
SpiralData make_spirals(int per_arm, Generator& gen) {
  SpiralData data{Tensor<float>::zeros({2 * per_arm, 2}), std::vector<int64_t>(2 * static_cast<size_t>(per_arm))};
  for (int arm = 0; arm < 2; ++arm) {
    for (int i = 0; i < per_arm; ++i) {
      const double t = 0.25 + 3.5 * i / per_arm;
      const double angle = 2.0 * t + arm * 3.14159265358979;
      const int64_t row = arm * per_arm + i;
      data.points.at({row, 0}) = static_cast<float>(t * std::cos(angle) / 3.75 + gen.normal(0.0, 0.02));
      data.points.at({row, 1}) = static_cast<float>(t * std::sin(angle) / 3.75 + gen.normal(0.0, 0.02));
      data.labels[static_cast<size_t>(row)] = arm;
    }
  }
  return data;
}

double accuracy(const Tensor<float>& logits, const std::vector<int64_t>& labels) {
  int64_t correct = 0;
  for (int64_t i = 0; i < logits.size(0); ++i) {
    const int64_t predicted = logits.at({i, 1}) > logits.at({i, 0}) ? 1 : 0;
    correct += predicted == labels[static_cast<size_t>(i)];
  }
  return static_cast<double>(correct) / static_cast<double>(logits.size(0));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a two-hidden-layer MLP on two interleaved spirals with plain SGD"};
  int steps = 2000, hidden = 64, per_arm = 200;
  float learning_rate = 0.3f;
  uint64_t seed = 1;
  app.add_option("--steps", steps, "SGD steps (full batch)")->check(CLI::PositiveNumber);
  app.add_option("--hidden", hidden, "units per hidden layer")->check(CLI::PositiveNumber);
  app.add_option("--points", per_arm, "points per spiral arm")->check(CLI::PositiveNumber);
  app.add_option("--lr", learning_rate, "learning rate")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "random seed")->transform(examples::unsigned_integer());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return examples::usage_exit(app, e);
  }

  Generator gen(seed);
  const SpiralData data = make_spirals(per_arm, gen);

  const float scale1 = std::sqrt(2.0f / 2.0f), scale2 = std::sqrt(2.0f / static_cast<float>(hidden));
  std::vector<Tensor<float>> params = {
      Tensor<float>::normal({2, hidden}, 0.0f, scale1, gen), Tensor<float>::zeros({hidden}),
      Tensor<float>::normal({hidden, hidden}, 0.0f, scale2, gen), Tensor<float>::zeros({hidden}),
      Tensor<float>::normal({hidden, 2}, 0.0f, scale2, gen), Tensor<float>::zeros({2})};
  for (auto& p : params) p.set_requires_grad();

  auto forward = [&](const Tensor<float>& x) {
    auto h1 = ops::tanh(ops::matmul(x, params[0]) + params[1]);
    auto h2 = ops::tanh(ops::matmul(h1, params[2]) + params[3]);
    return ops::matmul(h2, params[4]) + params[5];
  };

  std::cout << std::fixed << std::setprecision(4);
  for (int step = 1; step <= steps; ++step) {
    auto logits = forward(data.points);
    auto loss = ops::cross_entropy(logits, data.labels);
    loss.backward();
    {
      NoGradGuard no_grad;
      for (auto& p : params) {
        p.copy_(p - p.grad() * learning_rate);
        p.zero_grad();
      }
    }
    if (step == 1 || step % (steps / 10 > 0 ? steps / 10 : 1) == 0)
      std::cout << "step " << std::setw(5) << step << "  loss " << loss.item() << "  accuracy "
                << accuracy(logits.detach(), data.labels) << '\n';
  }
  NoGradGuard no_grad;
  const double final_accuracy = accuracy(forward(data.points), data.labels);
  std::cout << "final accuracy " << final_accuracy << " on " << 2 * per_arm << " points\n";
  return final_accuracy > 0.5 ? 0 : 1;
}
