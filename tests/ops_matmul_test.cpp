// gradchecks, forward values and error tests of ops/matmul.hpp: matmul (1-D, 2-D, batched with broadcasting),
// linear and its fused forms linear_gelu and linear_residual.
#include <cstring>

#include "test_helpers.hpp"

#include <tessera/ops/matmul.hpp>

using namespace tessera;
using test::random_input;
using test::TensorD;
using test::TensorF;
using Inputs = std::vector<TensorD>;

namespace {

TensorF to_float(const TensorD& t) {
  return TensorF::from_vector(std::vector<float>(t.data(), t.data() + t.numel()), t.shape());
}

// Batched (B0,B1,M,K)x(B1,K,N) by plain index loops, with a's dimension 1 broadcast (size 1).
TensorD naive_broadcast_matmul(const TensorD& a, const TensorD& b) {
  const int64_t B0 = a.size(0), B1 = b.size(0), M = a.size(2), K = a.size(3), N = b.size(2);
  TensorD out({B0, B1, M, N});
  for (int64_t i = 0; i < B0; ++i)
    for (int64_t j = 0; j < B1; ++j)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double sum = 0;
          for (int64_t k = 0; k < K; ++k) sum += a.at({i, 0, m, k}) * b.at({j, k, n});
          out.at({i, j, m, n}) = sum;
        }
  return out;
}

}  // namespace

TEST_CASE("matmul forward values") {
  auto a = TensorD::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  auto b = TensorD::from_vector({7, 8, 9, 10, 11, 12}, {3, 2});
  auto c = ops::matmul(a, b);
  CHECK(c.shape() == Shape{2, 2});
  CHECK(c.to_vector() == std::vector<double>{58, 64, 139, 154});

  auto v = TensorD::from_vector({1, -1, 2});
  CHECK(ops::matmul(v, v).shape() == Shape{});
  CHECK(ops::matmul(v, v).item() == 6.0);
  CHECK(ops::matmul(v, b).to_vector() == std::vector<double>{20, 22});            // (3)x(3,2) -> (2)
  CHECK(ops::matmul(a, v).to_vector() == std::vector<double>{5, 11});             // (2,3)x(3) -> (2)
  CHECK(ops::matmul(a, TensorD::zeros({3, 0})).shape() == Shape{2, 0});
  CHECK(ops::matmul(TensorD::zeros({2, 0}), TensorD::ones({0, 3})).to_vector() == std::vector<double>(6, 0.0));
}

TEST_CASE("matmul broadcasts batch dimensions") {
  auto a = random_input({5, 1, 3, 4}, 1), b = random_input({7, 4, 2}, 2);
  auto c = ops::matmul(a, b);
  REQUIRE(c.shape() == Shape{5, 7, 3, 2});
  auto expected = naive_broadcast_matmul(a, b);
  for (int64_t i = 0; i < c.numel(); ++i) CHECK(c.data()[i] == doctest::Approx(expected.data()[i]).epsilon(1e-12));

  CHECK(ops::matmul(random_input({2, 3, 4}, 3), random_input({4}, 4)).shape() == Shape{2, 3});
  CHECK(ops::matmul(random_input({4}, 3), random_input({2, 4, 5}, 4)).shape() == Shape{2, 5});
  CHECK(ops::matmul(random_input({3, 4}, 3), random_input({6, 4, 5}, 4)).shape() == Shape{6, 3, 5});
}

TEST_CASE("matmul gradcheck") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 4}, {4, 5}},          {{1, 7}, {7, 1}},         {{65, 3}, {3, 2}},       {{4}, {4}},
      {{4}, {4, 3}},             {{2, 3, 4}, {4}},         {{4}, {2, 4, 3}},        {{2, 3, 4}, {4, 5}},
      {{3, 4}, {2, 4, 5}},       {{5, 1, 3, 4}, {7, 4, 2}}, {{2, 1, 1, 3}, {1, 3, 3, 1}}, {{1, 3, 7}, {3, 7, 1}}};
  uint64_t seed = 10;
  for (const auto& shapes : cases) {
    const Shape& sa = shapes.first;  // no structured bindings: CAPTURE's lambda cannot name them in clang 14
    const Shape& sb = shapes.second;
    CAPTURE(sa.str());
    CAPTURE(sb.str());
    auto a = random_input(sa, seed++), b = random_input(sb, seed++);
    CHECK_GRADCHECK([](const Inputs& x) { return ops::matmul(x[0], x[1]); }, {a, b});
  }
  // Only one operand requires grad: the other is held constant and gets no gradient.
  auto a = random_input({2, 3, 4}, 40), constant = TensorD::normal({2, 4, 3});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::matmul(x[0], x[1]); }, {a, constant});
  CHECK_GRADCHECK([](const Inputs& x) { return ops::matmul(x[1], x[0]); }, {a, constant});
  CHECK_FALSE(constant.grad().defined());
}

TEST_CASE("matmul in float agrees with double, forward and backward") {
  // Broadcast batches (items run one by one, shared operands accumulate), equal batches (one batched call),
  // a folded batch, and a product big enough for the threaded kernel.
  const std::vector<std::pair<Shape, Shape>> cases = {{{5, 1, 3, 4}, {7, 4, 2}}, {{4, 7, 3}, {4, 3, 5}},
                                                      {{3, 65}, {65, 7}},        {{2, 7, 3}, {3}},
                                                      {{3, 4}, {6, 4, 5}},       {{3, 65, 64}, {3, 64, 65}}};
  uint64_t seed = 50;
  for (const auto& shapes : cases) {
    const Shape& sa = shapes.first;
    const Shape& sb = shapes.second;
    CAPTURE(sa.str());
    CAPTURE(sb.str());
    auto a = random_input(sa, seed++), b = random_input(sb, seed++);
    auto af = to_float(a).set_requires_grad(), bf = to_float(b).set_requires_grad();
    auto cd = ops::matmul(a, b);
    auto cf = ops::matmul(af, bf);
    REQUIRE(cf.shape() == cd.shape());
    for (int64_t i = 0; i < cd.numel(); ++i) CHECK(cf.data()[i] == doctest::Approx(cd.data()[i]).epsilon(1e-5));
    auto upstream = random_input(cd.shape(), seed++).detach();
    cd.backward(upstream);
    cf.backward(to_float(upstream));
    for (int64_t i = 0; i < a.numel(); ++i) CHECK(af.grad().data()[i] == doctest::Approx(a.grad().data()[i]).epsilon(1e-4));
    for (int64_t i = 0; i < b.numel(); ++i) CHECK(bf.grad().data()[i] == doctest::Approx(b.grad().data()[i]).epsilon(1e-4));
  }
}

TEST_CASE("linear forward values and gradcheck") {
  auto x = TensorD::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  auto w = TensorD::from_vector({1, 0, -1, 2, 1, 0}, {2, 3});
  auto b = TensorD::from_vector({10, 20});
  CHECK(ops::linear(x, w, b).to_vector() == std::vector<double>{8, 24, 8, 33});
  CHECK(ops::linear(x, w).to_vector() == std::vector<double>{-2, 4, -2, 13});
  CHECK(ops::linear(TensorD::zeros({2, 0}), TensorD::zeros({2, 0}), b).to_vector() ==
        std::vector<double>{10, 20, 10, 20});

  struct Case {
    Shape x, w;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{2, 3, 4}, {5, 4}, true}, {{2, 65}, {3, 65}, true}, {{7}, {3, 7}, true}, {{1, 1}, {1, 1}, true},
      {{3, 1, 4}, {2, 4}, false}};
  uint64_t seed = 60;
  for (const auto& c : cases) {
    CAPTURE(c.x.str());
    CAPTURE(c.w.str());
    auto xi = random_input(c.x, seed++), wi = random_input(c.w, seed++);
    if (c.bias) {
      auto bi = random_input({c.w[0]}, seed++);
      CHECK_GRADCHECK([](const Inputs& in) { return ops::linear(in[0], in[1], in[2]); }, {xi, wi, bi});
    } else {
      CHECK_GRADCHECK([](const Inputs& in) { return ops::linear(in[0], in[1]); }, {xi, wi});
    }
  }
  // linear is matmul with the transposed weight, plus the bias.
  auto xi = random_input({3, 5, 4}, 70), wi = random_input({6, 4}, 71), bi = random_input({6}, 72);
  auto y = ops::linear(xi, wi, bi);
  TensorD wt({4, 6});
  for (int64_t o = 0; o < 6; ++o)
    for (int64_t i = 0; i < 4; ++i) wt.at({i, o}) = wi.at({o, i});
  auto expected = ops::matmul(xi, wt) + bi;
  for (int64_t i = 0; i < y.numel(); ++i) CHECK(y.data()[i] == doctest::Approx(expected.data()[i]).epsilon(1e-12));
  auto xf = to_float(xi).set_requires_grad(), wf = to_float(wi).set_requires_grad(), bf = to_float(bi).set_requires_grad();
  auto yf = ops::linear(xf, wf, bf);
  for (int64_t i = 0; i < y.numel(); ++i) CHECK(yf.data()[i] == doctest::Approx(y.data()[i]).epsilon(1e-5));
  auto upstream = random_input(y.shape(), 73).detach();
  y.backward(upstream);
  yf.backward(to_float(upstream));
  for (const auto& [gd, gf] : {std::pair{xi.grad(), xf.grad()}, {wi.grad(), wf.grad()}, {bi.grad(), bf.grad()}})
    for (int64_t i = 0; i < gd.numel(); ++i) CHECK(gf.data()[i] == doctest::Approx(gd.data()[i]).epsilon(1e-4));
}

TEST_CASE("linear_gelu and linear_residual: gradcheck in double") {
  struct Case {
    Shape x, w;
    bool bias;
  };
  const std::vector<Case> cases = {{{2, 3, 4}, {5, 4}, true}, {{7, 65}, {3, 65}, true}, {{7}, {3, 7}, true},
                                   {{1, 1}, {1, 1}, true},    {{3, 1, 4}, {2, 4}, false}};
  uint64_t seed = 400;
  for (const auto& c : cases) {
    CAPTURE(c.x.str());
    CAPTURE(c.w.str());
    auto xi = random_input(c.x, seed++), wi = random_input(c.w, seed++);
    auto ri = random_input(c.x.with_dim(-1, c.w[0]), seed++);
    if (c.bias) {
      auto bi = random_input({c.w[0]}, seed++);
      CHECK_GRADCHECK([](const Inputs& in) { return ops::linear_gelu(in[0], in[1], in[2]); }, {xi, wi, bi});
      CHECK_GRADCHECK([](const Inputs& in) { return ops::linear_residual(in[0], in[1], in[2], in[3]); },
                      {xi, wi, bi, ri});
    } else {
      CHECK_GRADCHECK([](const Inputs& in) { return ops::linear_gelu(in[0], in[1]); }, {xi, wi});
      CHECK_GRADCHECK([](const Inputs& in) { return ops::linear_residual(in[0], in[1], TensorD(), in[2]); },
                      {xi, wi, ri});
    }
  }
}

TEST_CASE("linear_gelu in float is gelu(linear) bit for bit, forward and backward") {
  // Sizes past the GEMM's threading threshold and its edge tiles (rows 193, out 97 are no multiples of 6 or 16).
  for (const auto& shapes : {std::pair{Shape{2, 193, 65}, Shape{97, 65}}, {Shape{7, 31}, Shape{3, 31}}}) {
    const Shape& x_shape = shapes.first;
    const Shape& w_shape = shapes.second;
    CAPTURE(x_shape.str());
    Generator gen(410);
    auto make = [&](const Shape& s) { return TensorF::uniform(s, -1.0f, 1.0f, gen).set_requires_grad(); };
    TensorF x = make(x_shape), w = make(w_shape), b = make(Shape{w_shape[0]});
    TensorF x2 = x.detach().clone().set_requires_grad(), w2 = w.detach().clone().set_requires_grad(),
            b2 = b.detach().clone().set_requires_grad();
    const TensorF fused = ops::linear_gelu(x, w, b);
    const TensorF composed = ops::gelu(ops::linear(x2, w2, b2));
    REQUIRE(fused.shape() == composed.shape());
    CHECK(std::memcmp(fused.data(), composed.data(), sizeof(float) * size_t(fused.numel())) == 0);
    const TensorF g = TensorF::uniform(fused.shape(), -1.0f, 1.0f, gen);
    fused.backward(g);
    composed.backward(g);
    for (const auto& [a, e] : {std::pair{x.grad(), x2.grad()}, {w.grad(), w2.grad()}, {b.grad(), b2.grad()}}) {
      REQUIRE(a.shape() == e.shape());
      CHECK(std::memcmp(a.data(), e.data(), sizeof(float) * size_t(a.numel())) == 0);
    }
  }
}

TEST_CASE("linear_residual in float agrees with residual + linear") {
  Generator gen(420);
  auto make = [&](const Shape& s) { return TensorF::uniform(s, -1.0f, 1.0f, gen).set_requires_grad(); };
  TensorF x = make({2, 193, 65}), w = make({97, 65}), b = make({97}), r = make({2, 193, 97});
  TensorF x2 = x.detach().clone().set_requires_grad(), w2 = w.detach().clone().set_requires_grad(),
          b2 = b.detach().clone().set_requires_grad(), r2 = r.detach().clone().set_requires_grad();
  const TensorF fused = ops::linear_residual(x, w, b, r);
  const TensorF composed = r2 + ops::linear(x2, w2, b2);
  for (int64_t i = 0; i < fused.numel(); ++i)
    CHECK(fused.data()[i] == doctest::Approx(composed.data()[i]).epsilon(1e-6).scale(1.0));
  const TensorF g = TensorF::uniform(fused.shape(), -1.0f, 1.0f, gen);
  fused.backward(g);
  composed.backward(g);
  // The gradients do not depend on how the forward rounded: they are the same computation.
  for (const auto& [a, e] : {std::pair{x.grad(), x2.grad()}, {w.grad(), w2.grad()}, {b.grad(), b2.grad()},
                             {r.grad(), r2.grad()}})
    CHECK(std::memcmp(a.data(), e.data(), sizeof(float) * size_t(a.numel())) == 0);
  // The residual itself is left unchanged.
  CHECK(std::memcmp(r.data(), r2.data(), sizeof(float) * size_t(r.numel())) == 0);
}

TEST_CASE("matmul and linear errors name the op and the shapes") {
  auto a = TensorD::zeros({2, 3}), b = TensorD::zeros({4, 5});
  CHECK_THROWS_WITH_AS(ops::matmul(a, b), doctest::Contains("matmul: shapes (2, 3) and (4, 5) do not multiply"), Error);
  CHECK_THROWS_WITH_AS(ops::matmul(TensorD::zeros({2, 3, 4}), TensorD::zeros({3, 4, 5})),
                       doctest::Contains("matmul: batch dimensions of shapes (2, 3, 4) and (3, 4, 5)"), Error);
  CHECK_THROWS_WITH_AS(ops::matmul(TensorD::zeros({}), b), doctest::Contains("matmul: both operands need rank >= 1"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::matmul(TensorD::zeros({3}), TensorD::zeros({4})), doctest::Contains("(3) and (4)"), Error);
  CHECK_THROWS_WITH_AS(ops::linear(a, TensorD::zeros({5, 4})),
                       doctest::Contains("linear: input of shape (2, 3) does not match weight of shape (5, 4)"), Error);
  CHECK_THROWS_WITH_AS(ops::linear(a, TensorD::zeros({3})), doctest::Contains("linear: weight must be"), Error);
  CHECK_THROWS_WITH_AS(ops::linear(a, TensorD::zeros({5, 3}), TensorD::zeros({4})),
                       doctest::Contains("linear: bias of shape (4)"), Error);
  CHECK_THROWS_WITH_AS(ops::linear_gelu(a, TensorD::zeros({5, 4})),
                       doctest::Contains("linear_gelu: input of shape (2, 3) does not match weight of shape (5, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::linear_residual(a, TensorD::zeros({5, 3}), TensorD(), TensorD::zeros({2, 4})),
                       doctest::Contains("linear_residual: residual of shape (2, 4) does not match the output shape "
                                         "(2, 5)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::linear_residual(a, TensorD::zeros({5, 3}), TensorD::zeros({4}), TensorD::zeros({2, 5})),
                       doctest::Contains("linear_residual: bias of shape (4)"), Error);
}
