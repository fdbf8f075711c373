// gradchecks, forward values and error tests of ops/shape_ops.hpp: transpose, permute, concat, slice, select,
// index_select.
#include "test_helpers.hpp"

#include <tessera/ops/shape_ops.hpp>

using namespace tessera;
using test::random_input;
using test::TensorD;
using test::TensorF;
using Inputs = std::vector<TensorD>;

TEST_CASE("transpose and permute forward values") {
  auto a = TensorD::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  auto t = ops::transpose(a, 0, 1);
  CHECK(t.shape() == Shape{3, 2});
  CHECK(t.to_vector() == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(ops::transpose(a, -1, -2).to_vector() == t.to_vector());
  CHECK(ops::transpose(a, 1, 1).to_vector() == a.to_vector());

  auto b = TensorD::arange(24.0).view({2, 3, 4});
  auto p = ops::permute(b, {2, 0, -2});
  REQUIRE(p.shape() == Shape{4, 2, 3});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) CHECK(p.at({k, i, j}) == b.at({i, j, k}));
  CHECK_FALSE(p.shares_storage_with(b));

  auto bf = TensorF::arange(24.0f).view({2, 3, 4});
  auto pf = ops::permute(bf, {2, 0, 1});
  for (int64_t i = 0; i < p.numel(); ++i) CHECK(static_cast<double>(pf.data()[i]) == p.data()[i]);
}

TEST_CASE("transpose and permute gradcheck") {
  auto a = random_input({3, 1, 7, 2}, 1);
  CHECK_GRADCHECK([](const Inputs& x) { return ops::permute(x[0], {3, 0, 2, 1}); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::permute(x[0], {1, 2, 3, 0}); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::transpose(x[0], 0, 2); }, {a});
  auto b = random_input({3, 65}, 2);
  CHECK_GRADCHECK([](const Inputs& x) { return ops::transpose(x[0], -1, 0); }, {b});
  auto s = random_input({}, 3);
  CHECK_GRADCHECK([](const Inputs& x) { return ops::permute(x[0], {}); }, {s});
}

TEST_CASE("concat forward values and gradcheck") {
  auto a = TensorD::from_vector({1, 2, 3, 4}, {2, 2});
  auto b = TensorD::from_vector({5, 6}, {2, 1});
  CHECK(ops::concat({a, b}, 1).to_vector() == std::vector<double>{1, 2, 5, 3, 4, 6});
  CHECK(ops::concat({a, b.view({1, 2})}, 0).to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(ops::concat({a, TensorD::zeros({2, 0})}, -1).to_vector() == a.to_vector());

  auto x = random_input({2, 1, 3}, 10), y = random_input({2, 7, 3}, 11), z = random_input({2, 2, 3}, 12);
  CHECK(ops::concat({x, y, z}, 1).shape() == Shape{2, 10, 3});
  CHECK_GRADCHECK([](const Inputs& in) { return ops::concat(in, 1); }, {x, y, z});
  auto u = random_input({3, 2}, 13), v = random_input({1, 2}, 14), w = random_input({65, 2}, 15);
  CHECK_GRADCHECK([](const Inputs& in) { return ops::concat(in, 0); }, {u, v, w});
  auto p = random_input({3, 2}, 16), q = random_input({3, 1}, 17);
  CHECK_GRADCHECK([](const Inputs& in) { return ops::concat(in, -1); }, {p, q});
  // A constant operand in the middle gets no gradient; the others still do.
  auto constant = TensorD::ones({2, 3, 3});
  CHECK_GRADCHECK([](const Inputs& in) { return ops::concat(in, 1); }, {x, constant, z});
  CHECK_FALSE(constant.grad().defined());
}

TEST_CASE("slice follows Python's rules") {
  auto a = TensorD::arange(7.0);
  CHECK(ops::slice(a, 0, 1, 5).to_vector() == std::vector<double>{1, 2, 3, 4});
  CHECK(ops::slice(a, 0, 1, 6, 2).to_vector() == std::vector<double>{1, 3, 5});
  CHECK(ops::slice(a, 0, 0, 7, 3).to_vector() == std::vector<double>{0, 3, 6});
  CHECK(ops::slice(a, 0, -3, -1).to_vector() == std::vector<double>{4, 5});
  CHECK(ops::slice(a, 0, -100, 2).to_vector() == std::vector<double>{0, 1});
  CHECK(ops::slice(a, 0, 5, 100).to_vector() == std::vector<double>{5, 6});
  CHECK(ops::slice(a, 0, 4, 2).shape() == Shape{0});
  auto m = TensorD::arange(12.0).view({3, 4});
  CHECK(ops::slice(m, 1, 1, 4, 2).to_vector() == std::vector<double>{1, 3, 5, 7, 9, 11});
  CHECK(ops::slice(m, 0, 2, 3).to_vector() == std::vector<double>{8, 9, 10, 11});
  auto mf = TensorF::arange(12.0f).view({3, 4});
  CHECK(ops::slice(mf, -1, -2, 4).to_vector() == std::vector<float>{2, 3, 6, 7, 10, 11});
}

TEST_CASE("slice gradcheck") {
  auto a = random_input({7, 5}, 20);
  CHECK_GRADCHECK([](const Inputs& x) { return ops::slice(x[0], 0, 1, -1, 2); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::slice(x[0], 1, -3, 100); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::slice(x[0], 1, 4, 1); }, {a});  // empty: gradient is zero
  auto b = random_input({3, 65, 1}, 21);
  CHECK_GRADCHECK([](const Inputs& x) { return ops::slice(x[0], 1, 3, 60, 7); }, {b});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::slice(x[0], 2, 0, 1); }, {b});
}

TEST_CASE("select and index_select") {
  auto m = TensorD::arange(12.0).view({3, 4});
  CHECK(ops::select(m, 0, 1).to_vector() == std::vector<double>{4, 5, 6, 7});
  CHECK(ops::select(m, 1, -1).to_vector() == std::vector<double>{3, 7, 11});
  CHECK(ops::select(m, 1, 0).shape() == Shape{3});
  CHECK(ops::select(TensorD::arange(3.0), 0, 2).shape() == Shape{});
  CHECK(ops::index_select(m, 1, std::vector<int64_t>{3, 0, 3}).to_vector() ==
        std::vector<double>{3, 0, 3, 7, 4, 7, 11, 8, 11});
  CHECK(ops::index_select(m, 0, std::vector<int64_t>{}).shape() == Shape{0, 4});

  auto a = random_input({2, 7, 3}, 30);
  CHECK_GRADCHECK([](const Inputs& x) { return ops::select(x[0], 1, 0); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::select(x[0], -1, -1); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::select(x[0], 0, 1); }, {a});
  // Repeated indices add their gradients.
  CHECK_GRADCHECK([](const Inputs& x) { return ops::index_select(x[0], 1, std::vector<int64_t>{6, 1, 6, 6, 0}); }, {a});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::index_select(x[0], 2, std::vector<int64_t>{2}); }, {a});
  auto v = TensorD::from_vector({1, 2, 3}).set_requires_grad();
  ops::index_select(v, 0, std::vector<int64_t>{2, 2, 0}).backward(TensorD::from_vector({1, 10, 100}));
  CHECK(v.grad().to_vector() == std::vector<double>{100, 0, 11});
}

TEST_CASE("shape op errors name the op and the shapes") {
  auto a = TensorD::zeros({2, 3, 4});
  CHECK_THROWS_WITH_AS(ops::permute(a, {0, 1}), doctest::Contains("permute: 2 dimensions given for shape (2, 3, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::permute(a, {0, 1, -2}),
                       doctest::Contains("permute: dims (0, 1, 1) are not a permutation of the dimensions of shape (2, 3, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::permute(a, {0, 1, 3}), doctest::Contains("permute: dimension 3 is out of range for shape (2, 3, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::transpose(a, 0, -4), doctest::Contains("transpose: dimension -4 is out of range"), Error);
  CHECK_THROWS_WITH_AS(ops::concat({a, TensorD::zeros({2, 5, 5})}, 1),
                       doctest::Contains("concat: tensor 1 has shape (2, 5, 5) but tensor 0 has shape (2, 3, 4)"), Error);
  CHECK_THROWS_WITH_AS(ops::concat({a, TensorD::zeros({2, 3})}, 0), doctest::Contains("concat: tensor 1 has shape (2, 3)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::concat(std::vector<TensorD>{}, 0), doctest::Contains("concat: needs at least one tensor"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::concat({a}, 3), doctest::Contains("concat: dimension 3 is out of range"), Error);
  CHECK_THROWS_WITH_AS(ops::slice(a, 1, 0, 2, 0), doctest::Contains("slice: step must be positive, got 0 (shape (2, 3, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::slice(a, 5, 0, 1), doctest::Contains("slice: dimension 5 is out of range"), Error);
  CHECK_THROWS_WITH_AS(ops::select(a, 1, 3),
                       doctest::Contains("select: index 3 is out of range for dimension 1 of shape (2, 3, 4)"), Error);
  CHECK_THROWS_WITH_AS(ops::select(a, 1, -4), doctest::Contains("select: index -4"), Error);
  CHECK_THROWS_WITH_AS(ops::index_select(a, 2, std::vector<int64_t>{0, 4}),
                       doctest::Contains("index_select: index 4 (position 1) is out of range for dimension 2 of shape (2, 3, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::index_select(a, 2, std::vector<int64_t>{-1}), doctest::Contains("index_select: index -1"),
                       Error);
}
