// A consumer of tessera::core alone (no nlohmann_json, no stb): an MLP built from nn layers, trained by AdamW.
#include <tessera/core/tensor.hpp>
#include <tessera/nn/layer_norm.hpp>
#include <tessera/nn/linear.hpp>
#include <tessera/nn/module.hpp>
#include <tessera/ops/ops.hpp>
#include <tessera/optim/adamw.hpp>

#include <iostream>

using namespace tessera;

struct Classifier : nn::Module<float> {
  explicit Classifier(Generator& gen) : nn::Module<float>("Classifier"), fc1(2, 64, true, gen), norm(64), fc2(64, 2, true, gen) {
    register_module("fc1", fc1);
    register_module("norm", norm);
    register_module("fc2", fc2);
  }
  Tensor<float> forward(const Tensor<float>& x) const { return fc2(ops::gelu(norm(fc1(x)))); }

  nn::Linear<float> fc1;
  nn::LayerNorm<float> norm;
  nn::Linear<float> fc2;
};

int main() {
  // 512 points in [-1, 1]^2, labelled by the sign of x0 * x1.
  Generator gen(7);
  auto x = Tensor<float>::uniform({512, 2}, -1.0f, 1.0f, gen);
  std::vector<int64_t> labels(512);
  for (int64_t i = 0; i < 512; ++i) labels[i] = x.at({i, 0}) * x.at({i, 1}) > 0 ? 1 : 0;

  Classifier model(gen);
  optim::AdamW<float> optimizer(model.named_parameters(), {.lr = 1e-2, .weight_decay = 0.0});
  float first = 0.0f, last = 0.0f;
  for (int step = 0; step < 200; ++step) {
    optimizer.zero_grad();
    auto loss = ops::cross_entropy(model.forward(x), labels);
    loss.backward();
    optimizer.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  std::cout << "loss " << first << " -> " << last << '\n';
  // Chance level is ln 2 = 0.69; the quadrant rule is learnable, so training must go well below it.
  return last < 0.25f ? 0 : 1;
}
