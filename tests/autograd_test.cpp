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

TEST_CASE("the leaf-gradient-ready hook reports each leaf once, when its gradient is final, output side first") {
  auto w_in = TensorD::from_vector({0.5, -1.0, 2.0}).set_requires_grad();
  auto w_out = TensorD::from_vector({3.0, 0.25, -0.5}).set_requires_grad();
  auto x = TensorD::from_vector({1.0, 2.0, -3.0}).set_requires_grad();
  auto unused = TensorD::from_vector({1.0}).set_requires_grad();
  std::vector<std::pair<const void*, std::vector<double>>> reports;
  {
    autograd::LeafGradReadyGuard<double> guard([&](const TensorD& leaf) {
      reports.emplace_back(leaf.impl().get(), std::vector<double>(leaf.grad().data(), leaf.grad().data() + leaf.numel()));
    });
    // w_in is used twice, at both ends of the graph: its report must come after both contributions.
    auto h = ops::tanh(x * w_in);
    auto y = ops::sum(h * w_out + w_in);
    y.backward();
  }
  REQUIRE(reports.size() == 3);  // x, w_in, w_out; `unused` is not in the graph
  // w_out's only edge is nearest to the loss, so it is final first.
  CHECK(reports[0].first == w_out.impl().get());
  for (const auto& [leaf, grad_at_report] : reports) {
    const TensorD& t = leaf == w_in.impl().get() ? w_in : leaf == w_out.impl().get() ? w_out : x;
    CHECK(leaf != unused.impl().get());
    CHECK(grad_at_report == std::vector<double>(t.grad().data(), t.grad().data() + t.numel()));
  }
  // The guard is gone: another backward reports nothing.
  ops::sum(w_in * 2.0).backward();
  CHECK(reports.size() == 3);
}

TEST_CASE("the leaf-gradient-ready hook: a leaf root is reported, and a nested guard restores the outer hook") {
  int outer = 0, inner = 0;
  auto a = TensorD::from_vector({1.0}).set_requires_grad();
  autograd::LeafGradReadyGuard<double> outer_guard([&](const TensorD&) { ++outer; });
  a.backward();
  CHECK(outer == 1);
  {
    autograd::LeafGradReadyGuard<double> inner_guard([&](const TensorD&) { ++inner; });
    ops::sum(a * a).backward();
  }
  CHECK(inner == 1);
  ops::sum(a * 3.0).backward();
  CHECK(outer == 2);
  CHECK(inner == 1);
}
