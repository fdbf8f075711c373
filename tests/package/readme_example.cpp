#include <tessera/tessera.hpp>

#include <iostream>

using namespace tessera;

int main() {
  // Toy data: 512 points in [-1, 1]^2, labelled by the quadrant sign of x0 * x1.
  Generator gen(7);
  auto x = Tensor<float>::uniform({512, 2}, -1.0f, 1.0f, gen);
  std::vector<int64_t> labels(512);
  for (int64_t i = 0; i < 512; ++i) labels[i] = x.at({i, 0}) * x.at({i, 1}) > 0 ? 1 : 0;

  // A two-layer MLP: 2 -> 64 -> 2.
  auto w1 = Tensor<float>::normal({2, 64}, 0.0f, 0.7f, gen).set_requires_grad();
  auto b1 = Tensor<float>::zeros({64}).set_requires_grad();
  auto w2 = Tensor<float>::normal({64, 2}, 0.0f, 0.2f, gen).set_requires_grad();
  auto b2 = Tensor<float>::zeros({2}).set_requires_grad();

  for (int step = 0; step <= 300; ++step) {
    auto hidden = ops::relu(ops::matmul(x, w1) + b1);
    auto logits = ops::matmul(hidden, w2) + b2;
    auto loss = ops::cross_entropy(logits, labels);
    loss.backward();

    NoGradGuard no_grad;  // plain SGD: p -= lr * grad
    for (auto* p : {&w1, &b1, &w2, &b2}) {
      p->copy_(*p - p->grad() * 0.5f);
      p->zero_grad();
    }
    if (step % 100 == 0) std::cout << "step " << step << "  loss " << loss.item() << '\n';
  }
}
