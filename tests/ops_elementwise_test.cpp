// gradchecks and error tests of ops/elementwise.hpp, ops/reduce.hpp and ops/reshape.hpp; the bias-broadcast fast
// paths against plain loops on 1 to 3 threads; gradients that meet in the autograd engine.
#include <omp.h>

#include <cstring>

#include "test_helpers.hpp"

using namespace tessera;
using test::random_input;
using test::TensorD;
using test::TensorF;
using Inputs = std::vector<TensorD>;

TEST_CASE("binary ops with broadcasting") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3}, {3}}, {{7, 3}, {3}}, {{1, 3}, {7, 1}}, {{65}, {1}}, {{2, 1, 3}, {5, 1}}, {{}, {3, 7}}, {{1}, {1}}};
  uint64_t seed = 1;
  for (const auto& shapes : cases) {
    const Shape& sa = shapes.first;  // no structured bindings: CAPTURE's lambda cannot name them in clang 14
    const Shape& sb = shapes.second;
    CAPTURE(sa.str());
    CAPTURE(sb.str());
    auto a = random_input(sa, seed++), b = random_input(sb, seed++, 0.5, 2.0);
    CHECK_GRADCHECK([](const Inputs& x) { return x[0] + x[1]; }, {a, b});
    CHECK_GRADCHECK([](const Inputs& x) { return x[0] - x[1]; }, {a, b});
    CHECK_GRADCHECK([](const Inputs& x) { return x[0] * x[1]; }, {a, b});
    CHECK_GRADCHECK([](const Inputs& x) { return x[0] / x[1]; }, {a, b});
  }
}

TEST_CASE("broadcast forward values") {
  auto a = TensorD::from_vector({1, 2, 3}, {3, 1});
  auto b = TensorD::from_vector({10, 20}, {1, 2});
  auto c = a + b;
  CHECK(c.shape() == Shape{3, 2});
  CHECK(c.to_vector() == std::vector<double>{11, 21, 12, 22, 13, 23});
}

TEST_CASE("scalar and unary ops") {
  auto a = random_input({7, 3}, 11, 0.2, 2.0);
  auto any = random_input({65}, 12);
  CHECK_GRADCHECK([](const Inputs& x) { return x[0] * 3.0 + 1.5; }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return 2.0 - x[0] / 4.0; }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return 2.0 / x[0]; }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return -x[0]; }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::exp(x[0]); }, {any});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::log(x[0]); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::sqrt(x[0]); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::pow(x[0], 2.5); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::pow(x[0], -1.0); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::tanh(x[0]); }, {any});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::relu(x[0]); }, {any});
}

TEST_CASE("reductions over chosen dimensions") {
  auto a = random_input({3, 7, 5}, 21);
  for (bool keepdim : {false, true}) {
    CAPTURE(keepdim);
    CHECK_GRADCHECK([=](const Inputs& x) { return ops::sum(x[0], {}, keepdim); }, {a});
    CHECK_GRADCHECK([=](const Inputs& x) { return ops::sum(x[0], {1}, keepdim); }, {a});
    CHECK_GRADCHECK([=](const Inputs& x) { return ops::sum(x[0], {0, -1}, keepdim); }, {a});
    CHECK_GRADCHECK([=](const Inputs& x) { return ops::mean(x[0], {2}, keepdim); }, {a});
    CHECK_GRADCHECK([=](const Inputs& x) { return ops::mean(x[0], {0, 1}, keepdim); }, {a});
    CHECK_GRADCHECK([=](const Inputs& x) { return ops::max(x[0], {1}, keepdim); }, {a});
    CHECK_GRADCHECK([=](const Inputs& x) { return ops::max(x[0], {}, keepdim); }, {a});
  }
  auto s = TensorD::from_vector({1, 5, 2, 4, 3, 0}, {2, 3});
  CHECK(ops::sum(s, {1}).to_vector() == std::vector<double>{8, 7});
  CHECK(ops::max(s, {0}).to_vector() == std::vector<double>{4, 5, 2});
  CHECK(ops::mean(s).item() == doctest::Approx(2.5));
  CHECK(ops::sum(s, {1}, true).shape() == Shape{2, 1});
}

TEST_CASE("max shares the gradient between ties") {
  auto a = TensorD::from_vector({1, 3, 3}).set_requires_grad();
  ops::max(a).backward();
  CHECK(a.grad().to_vector() == std::vector<double>{0, 0.5, 0.5});
}

TEST_CASE("reshape and flatten") {
  auto a = random_input({3, 4, 5}, 31);
  CHECK_GRADCHECK([](const Inputs& x) { return ops::reshape(x[0], {5, -1}) * 2.0; }, {a});
  CHECK(ops::flatten(a, 1).shape() == Shape{3, 20});
  CHECK_THROWS_WITH_AS(ops::reshape(a, {7, 9}), doctest::Contains("(3, 4, 5)"), Error);
  CHECK_THROWS_AS(ops::reshape(a, {-1, -1}), Error);
}

TEST_CASE("errors name the op and the shapes") {
  auto a = TensorD::zeros({2, 3}), b = TensorD::zeros({4});
  CHECK_THROWS_WITH_AS(a + b, doctest::Contains("add: shapes (2, 3) and (4)"), Error);
  CHECK_THROWS_WITH_AS(a * b, doctest::Contains("mul"), Error);
  CHECK_THROWS_WITH_AS(ops::sum(a, {2}), doctest::Contains("sum: dimension 2 is out of range"), Error);
  CHECK_THROWS_WITH_AS(ops::mean(a, {0, 0}), doctest::Contains("twice"), Error);
  CHECK_THROWS_AS(ops::max(TensorD::zeros({0, 3}), {0}), Error);
}

namespace {

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * size_t(a.numel())) == 0;
}

}  // namespace

TEST_CASE("bias broadcasting: forward and the bias gradient match plain loops bit for bit on any thread count") {
  // (rows, C) with a (C), (1, C) or (1, 1, C) operand on either side; the large shape takes the threaded paths.
  struct Case {
    Shape big, bias;
  };
  const std::vector<Case> cases = {{{7, 65}, {65}},       {{3, 5, 7}, {7}},      {{3, 5, 7}, {5, 7}},
                                   {{1000, 65}, {1, 65}}, {{9, 31, 193}, {1, 1, 193}}, {{97, 1}, {1}}};
  const int previous = omp_get_max_threads();
  uint64_t seed = 300;
  for (const auto& c : cases) {
    CAPTURE(c.big.str());
    CAPTURE(c.bias.str());
    Generator gen(seed++);
    const TensorF a = TensorF::uniform(c.big, -1.0f, 1.0f, gen), b = TensorF::uniform(c.bias, -1.0f, 1.0f, gen);
    const TensorF g = TensorF::uniform(c.big, -1.0f, 1.0f, gen);
    const int64_t cols = c.bias.numel(), rows = c.big.numel() / cols;
    TensorF sum_expected(c.big), product_expected(c.big), bias_grad_expected(c.bias), scaled_grad_expected(c.bias);
    const TensorF ga = ops::mul(g, a);  // rounded on its own, as mul's backward does before summing
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t i = r * cols + j;
        sum_expected.data()[i] = a.data()[i] + b.data()[j];
        product_expected.data()[i] = b.data()[j] * a.data()[i];
        bias_grad_expected.data()[j] += g.data()[i];                 // row order
        scaled_grad_expected.data()[j] += ga.data()[i];
      }
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      omp_set_num_threads(threads);
      TensorF x = a.clone().set_requires_grad(), bias = b.clone().set_requires_grad();
      const TensorF sum = x + bias;
      CHECK(same_bits(sum, sum_expected));
      sum.backward(g);
      CHECK(same_bits(bias.grad(), bias_grad_expected));
      CHECK(same_bits(x.grad(), g));
      TensorF bias2 = b.clone().set_requires_grad();
      const TensorF product = bias2 * a;  // the bias on the left
      CHECK(same_bits(product, product_expected));
      product.backward(g);
      CHECK(same_bits(bias2.grad(), scaled_grad_expected));
    }
  }
  omp_set_num_threads(previous);
}

TEST_CASE("gradients that meet are summed without disturbing the tensors they alias") {
  // y is used twice by one add: both gradients are the same tensor, so the engine must not add in place.
  auto x = random_input({3, 7}, 310);
  auto y = x * 2.0;
  auto z = ops::sum(y + y);
  z.backward();
  for (int64_t i = 0; i < x.numel(); ++i) CHECK(x.grad().data()[i] == 4.0);
  // Two leaves receive the same gradient tensor from add: each gets its own copy.
  auto a = random_input({5}, 311), b = random_input({5}, 312);
  ops::sum(a + b).backward();
  CHECK_FALSE(a.grad().shares_storage_with(b.grad()));
  a.grad().data()[0] = 100.0;
  CHECK(b.grad().data()[0] == 1.0);
  // A gradient reached through three paths, one of them a view, accumulates to the exact sum.
  auto w = random_input({4, 3}, 313);
  auto v = w * 1.0;
  auto total = ops::sum(ops::reshape(v, {12}) * 3.0) + ops::sum(v) + ops::sum(v * v);
  total.backward();
  for (int64_t i = 0; i < w.numel(); ++i) CHECK(w.grad().data()[i] == doctest::Approx(4.0 + 2.0 * w.data()[i]));
}
