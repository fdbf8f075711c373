// The whole library in a translation unit built without -fopenmp: it compiles (the omp pragmas are ignored) and
// every kernel runs on the calling thread, giving the results the math asks for.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#if defined(_OPENMP)
#error "no_openmp_check must be compiled without OpenMP (tests/CMakeLists.txt links it without OpenMP::OpenMP_CXX)"
#endif

using namespace tessera;

namespace {

// C = A B for row-major A (M, K) and B (K, N), in double.
std::vector<double> matmul_loops(const std::vector<float>& a, const std::vector<float>& b, int64_t M, int64_t K,
                                 int64_t N) {
  std::vector<double> c(static_cast<size_t>(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) c[i * N + j] += double(a[i * K + k]) * double(b[k * N + j]);
  return c;
}

}  // namespace

TEST_CASE("without OpenMP there is one thread, whatever is asked for") {
  CHECK(num_threads() == 1);
  set_num_threads(4);
  CHECK(num_threads() == 1);
  CHECK_THROWS_AS(set_num_threads(0), Error);
}

TEST_CASE("a GEMM large enough to be split over threads gives the product of the loops") {
  // Sizes above every blocking constant, none of them a multiple of a register tile.
  const int64_t M = 301, K = 517, N = 263;
  Generator gen(11);
  const auto a = Tensor<float>::uniform({M, K}, -1.0f, 1.0f, gen);
  const auto b = Tensor<float>::uniform({K, N}, -1.0f, 1.0f, gen);
  const auto c = ops::matmul(a, b).to_vector();
  const auto expected = matmul_loops(a.to_vector(), b.to_vector(), M, K, N);
  REQUIRE(c.size() == expected.size());
  size_t bad = 0;
  for (size_t i = 0; i < c.size(); ++i)
    if (!(std::abs(double(c[i]) - expected[i]) <= 1e-4 * (1.0 + std::abs(expected[i])))) ++bad;
  CHECK(bad == 0);
}

TEST_CASE("a tiny backward: the gradients of sum((x w)^2) are 2 x^T (x w) and 2 (x w) w^T") {
  const auto x = Tensor<float>::from_vector({1, 2, 3, -1, 0, 2}, {2, 3}).set_requires_grad();
  const auto w = Tensor<float>::from_vector({0.5f, -1, 1, 0, -2, 1}, {3, 2}).set_requires_grad();
  const auto y = ops::matmul(x, w);  // by hand: [[-3.5, 2], [-4.5, 3]]
  const auto loss = ops::sum(y * y);
  CHECK(loss.item() == doctest::Approx(12.25 + 4 + 20.25 + 9));
  loss.backward();
  // dL/dy = 2 y = [[-7, 4], [-9, 6]]; dL/dw = x^T dL/dy; dL/dx = dL/dy w^T.
  const std::vector<float> expected_dw = {-7 + 9, 4 - 6, -14, 8, -21 - 18, 12 + 12};
  const std::vector<float> expected_dx = {-3.5f - 4, -7, 14 + 4, -4.5f - 6, -9, 18 + 6};
  const auto dw = w.grad().to_vector();
  const auto dx = x.grad().to_vector();
  for (size_t i = 0; i < expected_dw.size(); ++i) CHECK(dw[i] == doctest::Approx(expected_dw[i]));
  for (size_t i = 0; i < expected_dx.size(); ++i) CHECK(dx[i] == doctest::Approx(expected_dx[i]));
}

TEST_CASE("fused attention, forward and backward, agrees with attention composed from ops") {
  const int B = 2, N = 7, H = 3, d = 5;
  Generator gen(3);
  const auto qkv = Tensor<float>::uniform({B, N, 3 * H * d}, -1.0f, 1.0f, gen).set_requires_grad();
  const auto qkv_composed = qkv.detach().clone().set_requires_grad();
  const auto weights = Tensor<float>::uniform({B, N, H * d}, -1.0f, 1.0f, gen);

  const auto fused = ops::attention(qkv, H);
  const auto composed = nn::composed_attention(qkv_composed, H);
  const auto f = fused.to_vector(), c = composed.to_vector();
  REQUIRE(f.size() == c.size());
  for (size_t i = 0; i < f.size(); ++i) CHECK(f[i] == doctest::Approx(c[i]).epsilon(1e-5));

  ops::sum(fused * weights).backward();
  ops::sum(composed * weights).backward();
  const auto gf = qkv.grad().to_vector(), gc = qkv_composed.grad().to_vector();
  REQUIRE(gf.size() == gc.size());
  for (size_t i = 0; i < gf.size(); ++i) CHECK(gf[i] == doctest::Approx(gc[i]).epsilon(1e-4).scale(1.0));
}

TEST_CASE("a LayerNorm -> GELU -> softmax chain passes gradcheck in double") {
  Generator gen(5);
  const auto x = Tensor<double>::uniform({3, 7}, -2.0, 2.0, gen).set_requires_grad();
  const auto weight = Tensor<double>::uniform({7}, 0.5, 1.5, gen).set_requires_grad();
  const auto bias = Tensor<double>::uniform({7}, -0.5, 0.5, gen).set_requires_grad();
  const auto result = testing::gradcheck(
      [](const std::vector<Tensor<double>>& in) {
        return ops::softmax(ops::gelu(ops::layer_norm(in[0], in[1], in[2])));
      },
      {x, weight, bias});
  CHECK_MESSAGE(result.ok, result.message);
}
