// Tests of autograd: backward with and without an explicit gradient, accumulation, NoGradGuard, released graphs.
#include "test_helpers.hpp"

using namespace tessera;
using test::TensorD;

TEST_CASE("backward of a scalar fills leaf gradients") {
  auto x = TensorD::from_vector({1, 2, 3}).set_requires_grad();
  auto y = ops::sum(x * x);  // dy/dx = 2x
  y.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{2, 4, 6});
}

TEST_CASE("backward with an explicit upstream gradient") {
  auto x = TensorD::from_vector({1, 2, 3}).set_requires_grad();
  auto y = x * 3.0;
  y.backward(TensorD::from_vector({1, 10, 100}));
  CHECK(x.grad().to_vector() == std::vector<double>{3, 30, 300});
  auto z = x * 2.0;
  CHECK_THROWS_WITH_AS(z.backward(TensorD::ones({2})), doctest::Contains("(2)"), Error);
  CHECK_THROWS_WITH_AS((x * 2.0).backward(), doctest::Contains("one element"), Error);
}

TEST_CASE("a tensor used by several ops accumulates its gradient") {
  auto x = TensorD::from_vector({2.0}).set_requires_grad();
  auto a = x * 3.0;
  auto b = x * x;
  auto y = ops::sum(a + b + a);  // 6x + x^2 -> 6 + 2x = 10
  y.backward();
  CHECK(x.grad().item() == doctest::Approx(10.0));
  // Gradients also accumulate over backward calls until zero_grad.
  ops::sum(x * 5.0).backward();
  CHECK(x.grad().item() == doctest::Approx(15.0));
  x.zero_grad();
  CHECK(x.grad().item() == 0.0);
}

TEST_CASE("NoGradGuard stops recording") {
  auto x = TensorD::from_vector({1, 2}).set_requires_grad();
  {
    NoGradGuard guard;
    auto y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
  }
  CHECK((x * 2.0).requires_grad());
}

TEST_CASE("backward twice through a released graph is a clear error") {
  auto x = TensorD::from_vector({1, 2}).set_requires_grad();
  auto y = ops::sum(ops::exp(x));
  y.backward();
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("released"), Error);
  auto z = ops::sum(ops::exp(x));
  z.backward(TensorD(), /*retain_graph=*/true);
  z.backward();
  CHECK(x.grad().at({0}) == doctest::Approx(std::exp(1.0) * 3));
}

TEST_CASE("detach cuts the graph; requires_grad only on leaves") {
  auto x = TensorD::from_vector({1, 2}).set_requires_grad();
  auto y = (x * 2.0).detach();
  CHECK_FALSE(y.requires_grad());
  auto z = x * 2.0;
  CHECK_THROWS_AS(z.set_requires_grad(false), Error);
  CHECK_THROWS_AS(ops::sum(y).backward(), Error);
}

TEST_CASE("inputs that need no gradient get none") {
  auto x = TensorD::from_vector({1, 2}).set_requires_grad();
  auto c = TensorD::from_vector({3, 4});
  ops::sum(x * c).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{3, 4});
  CHECK_FALSE(c.grad().defined());
}

TEST_CASE("a deep chain backpropagates without recursion") {
  auto x = TensorD::from_vector({1.0}).set_requires_grad();
  TensorD y = x;
  for (int i = 0; i < 20000; ++i) y = y + 1.0;
  y.backward();
  CHECK(x.grad().item() == 1.0);
}

TEST_CASE("accumulated gradients never alias tensors the caller still holds") {
  auto x = TensorD::from_vector({1, 2}).set_requires_grad();
  auto seed = TensorD::from_vector({1, 1});
  (x + 0.0).backward(seed);  // add_scalar passes the upstream gradient through unchanged
  seed.fill_(100.0);
  CHECK(x.grad().to_vector() == std::vector<double>{1, 1});
  x.zero_grad();
  ops::sum(x + x).backward();  // both inputs of add get the same tensor back
  CHECK(x.grad().to_vector() == std::vector<double>{2, 2});
  auto y = x * 1.0;
  ops::sum(y + y + y).backward();  // a non-leaf reached three times
  CHECK(x.grad().to_vector() == std::vector<double>{5, 5});
}
