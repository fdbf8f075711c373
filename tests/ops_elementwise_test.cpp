// gradchecks and error tests of ops/elementwise.hpp, ops/reduce.hpp and ops/reshape.hpp.
#include "test_helpers.hpp"

using namespace tessera;
using test::random_input;
using test::TensorD;
using Inputs = std::vector<TensorD>;

TEST_CASE("binary ops with broadcasting") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3}, {3}}, {{7, 3}, {3}}, {{1, 3}, {7, 1}}, {{65}, {1}}, {{2, 1, 3}, {5, 1}}, {{}, {3, 7}}, {{1}, {1}}};
  uint64_t seed = 1;
  for (const auto& [sa, sb] : cases) {
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
