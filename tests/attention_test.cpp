// Tests of kernels/attention.hpp (against the reference loops), ops::attention (gradcheck, errors, dropout) and the
// fused op against the same attention composed from matmul, permute and softmax ops.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <tessera/kernels/attention.hpp>
#include <tessera/kernels/reference/attention.hpp>
#include <tessera/ops/activation.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/ops/matmul.hpp>
#include <tessera/ops/shape_ops.hpp>

#include "test_helpers.hpp"

using namespace tessera;
using test::TensorD;
using test::TensorF;
using Inputs = std::vector<TensorD>;

namespace {

struct Dims {
  int B, N, H, d;
  int64_t qkv() const { return int64_t(B) * N * 3 * H * d; }
  int64_t out() const { return int64_t(B) * N * H * d; }
  int64_t probs() const { return int64_t(B) * H * N * N; }
};

std::vector<float> random_floats(int64_t n, uint64_t seed, double low = -1.0, double high = 1.0) {
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(gen.uniform(low, high));
  return v;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Every element of `fast` is within atol + rtol·|expected| of `expected` (NaN fails).
void check_close(const std::vector<float>& fast, const std::vector<double>& expected, double atol, double rtol,
                 const char* what) {
  REQUIRE(fast.size() == expected.size());
  size_t bad = 0, worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < fast.size(); ++i) {
    const double error = std::abs(double(fast[i]) - expected[i]);
    const double excess = error - (atol + rtol * std::abs(expected[i]));
    if (!(excess <= 0.0)) {
      ++bad;
      if (!(excess <= worst_excess)) worst_excess = excess, worst = i;
    }
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", fast.size(), " elements differ; worst at ", worst, ": fast ",
                fast[worst], " vs reference ", expected[worst]);
}

struct FastRun {
  std::vector<float> out, probs, dqkv;
};

// Fast forward and backward on vectors V; outputs are poisoned with NaN first, dqkv starts at dqkv_init.
template <class V = kernels::simd::VecNative>
FastRun run_fast(const Dims& s, const std::vector<float>& qkv, const std::vector<float>& dout,
                 const std::vector<float>& dqkv_init, double p = 0.0, uint64_t seed = 0) {
  FastRun r{std::vector<float>(size_t(s.out()), kNaN), std::vector<float>(size_t(s.probs()), kNaN), dqkv_init};
  kernels::attention_forward<V>(r.out.data(), r.probs.data(), qkv.data(), s.B, s.N, s.H, s.d, p, seed);
  kernels::attention_backward<V>(r.dqkv.data(), dout.data(), qkv.data(), r.probs.data(), s.B, s.N, s.H, s.d, p,
                                 seed);
  return r;
}

template <class V = kernels::simd::VecNative>
void compare_with_reference(const Dims& s, uint64_t seed, double p = 0.0) {
  const auto qkv = random_floats(s.qkv(), seed);
  const auto dout = random_floats(s.out(), seed + 1);
  const auto dqkv_init = random_floats(s.qkv(), seed + 2);
  const FastRun fast = run_fast<V>(s, qkv, dout, dqkv_init, p, seed + 3);

  const auto qkv_d = to_double(qkv), dout_d = to_double(dout);
  std::vector<double> out(size_t(s.out())), probs(size_t(s.probs())), dqkv = to_double(dqkv_init);
  kernels::reference::attention_forward<double>(out.data(), probs.data(), qkv_d.data(), s.B, s.N, s.H, s.d, p, seed + 3);
  kernels::reference::attention_backward<double>(dqkv.data(), dout_d.data(), qkv_d.data(), probs.data(), s.B, s.N, s.H,
                                                 s.d, p, seed + 3);
  check_close(fast.out, out, 2e-5, 1e-4, "out");
  check_close(fast.probs, probs, 1e-6, 1e-4, "probs");
  check_close(fast.dqkv, dqkv, 5e-5, 2e-4, "dqkv");
}

// The same attention built from separate ops: permute copies, batched matmuls, a scale and softmax.
template <class T>
Tensor<T> composed_attention(const Tensor<T>& qkv, int H) {
  const int64_t B = qkv.size(0), N = qkv.size(1), d = qkv.size(2) / (3 * H);
  Tensor<T> heads = ops::permute(ops::reshape(qkv, {B, N, 3, H, d}), {2, 0, 3, 1, 4});  // (3, B, H, N, d)
  Tensor<T> q = ops::select(heads, 0, 0), k = ops::select(heads, 0, 1), v = ops::select(heads, 0, 2);
  Tensor<T> scores = ops::matmul(q, ops::transpose(k, -2, -1)) * static_cast<T>(1.0 / std::sqrt(double(d)));
  Tensor<T> o = ops::matmul(ops::softmax(scores), v);  // (B, H, N, d)
  return ops::reshape(ops::transpose(o, 1, 2), {B, N, H * d});
}

}  // namespace

TEST_CASE("fast attention kernel matches the reference at odd sizes") {
  uint64_t seed = 100;
  for (int B : {1, 3})
    for (int N : {1, 3, 7, 65, 97})
      for (int H : {1, 2, 3})
        for (int d : {1, 3, 7, 16, 64}) {
          CAPTURE(B);
          CAPTURE(N);
          CAPTURE(H);
          CAPTURE(d);
          compare_with_reference({B, N, H, d}, seed += 10);
        }
  for (Dims s : {Dims{2, 9, 2, 8}, Dims{2, 17, 1, 24}, Dims{1, 31, 2, 33}, Dims{2, 193, 1, 5}, Dims{1, 16, 3, 9}}) {
    CAPTURE(s.N);
    CAPTURE(s.d);
    compare_with_reference(s, seed += 10);
  }
}

// The kernel is one template over the vector type: 16 lanes (VecPair<VecAvx2> here, the AVX-512 width and tile
// shapes), 2 lanes and the scalar fallback run the same code as the native width.
#if defined(__AVX2__) && defined(__FMA__)
#define TESSERA_ATTENTION_VECS                                                \
  kernels::simd::VecScalar, kernels::simd::VecPair<kernels::simd::VecScalar>, \
      kernels::simd::VecPair<kernels::simd::VecAvx2>
#else
#define TESSERA_ATTENTION_VECS kernels::simd::VecScalar, kernels::simd::VecPair<kernels::simd::VecScalar>
#endif

TEST_CASE_TEMPLATE("attention on every vector width matches the reference at odd sizes", V, TESSERA_ATTENTION_VECS) {
  uint64_t seed = 9000;
  for (Dims s : {Dims{1, 1, 1, 1}, Dims{2, 3, 2, 7}, Dims{1, 7, 3, 16}, Dims{2, 15, 1, 17}, Dims{1, 16, 2, 33},
                 Dims{2, 17, 3, 64}, Dims{2, 65, 3, 64}, Dims{1, 97, 2, 5}, Dims{1, 197, 1, 64}})
    for (double p : {0.0, 0.3}) {
      CAPTURE(V::width);
      CAPTURE(s.N);
      CAPTURE(s.d);
      CAPTURE(p);
      compare_with_reference<V>(s, seed += 10, p);
    }
}

TEST_CASE("fast attention kernel with dropout matches the reference") {
  uint64_t seed = 7000;
  for (Dims s : {Dims{1, 7, 2, 3}, Dims{2, 65, 3, 64}, Dims{3, 97, 1, 7}, Dims{1, 1, 1, 1}})
    for (double p : {0.1, 0.5}) {
      CAPTURE(s.N);
      CAPTURE(p);
      compare_with_reference(s, seed += 10, p);
    }
}

TEST_CASE("attention probabilities are softmax rows that sum to 1") {
  const Dims s{2, 65, 3, 16};
  const auto qkv = random_floats(s.qkv(), 42, -3.0, 3.0);
  std::vector<float> out(size_t(s.out()), kNaN), probs(size_t(s.probs()), kNaN);
  kernels::attention_forward(out.data(), probs.data(), qkv.data(), s.B, s.N, s.H, s.d);
  const float scale = 1.0f / 4.0f;
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.N; i += 16) {
        const float* row = probs.data() + ((int64_t(b) * s.H + h) * s.N + i) * s.N;
        double sum = 0.0, max_score = -1e30;
        std::vector<double> score(size_t(s.N));
        for (int j = 0; j < s.N; ++j) {
          double dot = 0.0;
          for (int c = 0; c < s.d; ++c)
            dot += double(qkv[size_t(((int64_t(b) * s.N + i) * 3 + 0) * s.H * s.d + h * s.d + c)]) *
                   qkv[size_t(((int64_t(b) * s.N + j) * 3 + 1) * s.H * s.d + h * s.d + c)];
          score[size_t(j)] = dot * scale;
          max_score = std::max(max_score, score[size_t(j)]);
        }
        double denominator = 0.0;
        for (int j = 0; j < s.N; ++j) denominator += std::exp(score[size_t(j)] - max_score);
        for (int j = 0; j < s.N; ++j) {
          CHECK(row[j] >= 0.0f);
          CHECK(row[j] == doctest::Approx(std::exp(score[size_t(j)] - max_score) / denominator).epsilon(1e-4));
          sum += row[j];
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
      }
}

TEST_CASE("results are bit-identical for 1, 2 and 3 threads") {
  const Dims s{3, 65, 3, 64};
  const auto qkv = random_floats(s.qkv(), 1), dout = random_floats(s.out(), 2), init = random_floats(s.qkv(), 3);
  const int saved = omp_get_max_threads();
  std::vector<FastRun> runs;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    runs.push_back(run_fast(s, qkv, dout, init, 0.2, 99));
  }
  omp_set_num_threads(saved);
  for (size_t r = 1; r < runs.size(); ++r) {
    CHECK(std::memcmp(runs[0].out.data(), runs[r].out.data(), runs[0].out.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(runs[0].probs.data(), runs[r].probs.data(), runs[0].probs.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(runs[0].dqkv.data(), runs[r].dqkv.data(), runs[0].dqkv.size() * sizeof(float)) == 0);
  }
}

TEST_CASE_TEMPLATE("attention on every vector width is bit-identical for 1, 2 and 3 threads", V,
                   TESSERA_ATTENTION_VECS) {
  const Dims s{3, 33, 2, 16};
  const auto qkv = random_floats(s.qkv(), 4), dout = random_floats(s.out(), 5), init = random_floats(s.qkv(), 6);
  const int saved = omp_get_max_threads();
  std::vector<FastRun> runs;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    runs.push_back(run_fast<V>(s, qkv, dout, init, 0.2, 98));
  }
  omp_set_num_threads(saved);
  for (size_t r = 1; r < runs.size(); ++r) {
    CHECK(std::memcmp(runs[0].out.data(), runs[r].out.data(), runs[0].out.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(runs[0].probs.data(), runs[r].probs.data(), runs[0].probs.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(runs[0].dqkv.data(), runs[r].dqkv.data(), runs[0].dqkv.size() * sizeof(float)) == 0);
  }
}

// attention's softmax is kernels::softmax_forward's row function: the same row gives the same bits both ways.
template <class V>
void check_softmax_bits(uint64_t seed) {
  for (int cols : {1, 3, 7, 8, 15, 16, 17, 31, 65, 197}) {
    CAPTURE(V::width);
    CAPTURE(cols);
    const int rows = 5;
    const auto scores = random_floats(int64_t(rows) * cols, seed + uint64_t(cols), -30.0, 30.0);
    std::vector<float> by_softmax(scores.size(), kNaN), by_attention = scores;
    kernels::softmax_forward<V>(by_softmax.data(), scores.data(), rows, cols);
    kernels::attention_detail::softmax_rows<V>(by_attention.data(), cols, rows, cols);
    CHECK(std::memcmp(by_softmax.data(), by_attention.data(), scores.size() * sizeof(float)) == 0);
  }
  // End to end: attention_forward's saved probabilities are softmax_forward of its own score tiles.
  for (Dims s : {Dims{2, 7, 3, 16}, Dims{1, 65, 3, 64}, Dims{1, 197, 2, 64}}) {
    CAPTURE(s.N);
    const auto qkv = random_floats(s.qkv(), seed + 7, -2.0, 2.0);
    std::vector<float> out(size_t(s.out())), probs(size_t(s.probs()), kNaN), scores(size_t(s.probs()), kNaN);
    kernels::attention_forward<V>(out.data(), probs.data(), qkv.data(), s.B, s.N, s.H, s.d);
    kernels::attention_scores<V>(scores.data(), qkv.data(), s.B, s.N, s.H, s.d);
    kernels::softmax_forward<V>(scores.data(), scores.data(), s.B * s.H * s.N, s.N);
    CHECK(std::memcmp(probs.data(), scores.data(), probs.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("attention's softmax and kernels::softmax_forward give the same bits for the same row") {
  check_softmax_bits<kernels::simd::VecNative>(31);
  check_softmax_bits<kernels::simd::VecScalar>(32);
  check_softmax_bits<kernels::simd::VecPair<kernels::simd::VecScalar>>(33);
#if defined(__AVX2__) && defined(__FMA__)
  check_softmax_bits<kernels::simd::VecPair<kernels::simd::VecAvx2>>(34);
#endif
}

TEST_CASE("ops::softmax of attention's score tiles gives ops::attention's probabilities bit for bit") {
  for (Dims s : {Dims{2, 65, 3, 64}, Dims{1, 9, 2, 5}}) {
    CAPTURE(s.N);
    Generator gen(60 + uint64_t(s.N));
    const TensorF qkv = TensorF::uniform({s.B, s.N, 3 * s.H * s.d}, -1.0f, 1.0f, gen);
    TensorF probs;
    ops::attention(qkv, s.H, 0.0, false, nullptr, &probs);
    TensorF scores({s.B, s.H, s.N, s.N});
    kernels::attention_scores(scores.data(), qkv.data(), s.B, s.N, s.H, s.d);
    const TensorF softmax = ops::softmax(scores);
    REQUIRE(probs.shape() == softmax.shape());
    CHECK(std::memcmp(probs.data(), softmax.data(), size_t(probs.numel()) * sizeof(float)) == 0);
  }
}

TEST_CASE("attention dropout: p = 0 is no dropout, a seed repeats its mask, the drop rate is p") {
  const Dims s{2, 33, 2, 8};
  const auto qkv = random_floats(s.qkv(), 5), dout = random_floats(s.out(), 6), init = random_floats(s.qkv(), 7);
  const FastRun plain = run_fast(s, qkv, dout, init);
  const FastRun zero = run_fast(s, qkv, dout, init, 0.0, 1234);
  CHECK(zero.out == plain.out);
  CHECK(zero.dqkv == plain.dqkv);
  const FastRun a = run_fast(s, qkv, dout, init, 0.3, 1234), b = run_fast(s, qkv, dout, init, 0.3, 1234);
  const FastRun c = run_fast(s, qkv, dout, init, 0.3, 4321);
  CHECK(a.out == b.out);
  CHECK(a.dqkv == b.dqkv);
  CHECK(a.out != c.out);
  CHECK(a.out != plain.out);
  CHECK(a.probs == plain.probs);  // the saved probabilities are taken before dropout

  for (double p : {0.1, 0.5, 0.9}) {
    const uint64_t threshold = kernels::attention_dropout_threshold(p);
    int64_t dropped = 0;
    const int64_t n = 200000;
    for (int64_t i = 0; i < n; ++i) dropped += !kernels::attention_dropout_keep(77, uint64_t(i), threshold);
    CHECK(double(dropped) / n == doctest::Approx(p).epsilon(0.02));
  }
  CHECK(kernels::attention_dropout_keep(1, 5, kernels::attention_dropout_threshold(0.0)));
}

TEST_CASE("ops::attention gradcheck in double") {
  for (Dims s : {Dims{1, 1, 1, 1}, Dims{2, 3, 2, 3}, Dims{1, 7, 3, 1}, Dims{1, 5, 1, 7}}) {
    CAPTURE(s.N);
    CAPTURE(s.H);
    CAPTURE(s.d);
    const int H = s.H;
    auto qkv = test::random_input({s.B, s.N, 3 * s.H * s.d}, 300 + uint64_t(s.N));
    CHECK_GRADCHECK([H](const Inputs& x) { return ops::attention(x[0], H); }, {qkv});
    CHECK_GRADCHECK(
        [H](const Inputs& x) {
          Generator gen(11);
          return ops::attention(x[0], H, 0.4, true, &gen);
        },
        {qkv});
  }
  auto qkv5 = test::random_input({2, 4, 3, 2, 3}, 400);
  CHECK_GRADCHECK([](const Inputs& x) { return ops::attention(x[0], 2); }, {qkv5});
}

TEST_CASE("ops::attention shapes, probabilities, float/double agreement, dropout switches") {
  Generator gen(3);
  TensorD qkv = TensorD::uniform({2, 7, 3 * 3 * 5}, -1.0, 1.0, gen);
  TensorD probs;
  TensorD out = ops::attention(qkv, 3, 0.0, false, nullptr, &probs);
  CHECK(out.shape() == Shape{2, 7, 15});
  REQUIRE(probs.defined());
  CHECK(probs.shape() == Shape{2, 3, 7, 7});
  TensorD out5 = ops::attention(qkv.view({2, 7, 3, 3, 5}), 3);
  CHECK(out5.to_vector() == out.to_vector());

  TensorF qkv_f(qkv.shape());
  for (int64_t i = 0; i < qkv.numel(); ++i) qkv_f.data()[i] = float(qkv.data()[i]);
  TensorF out_f = ops::attention(qkv_f, 3);
  for (int64_t i = 0; i < out.numel(); ++i) CHECK(out_f.data()[i] == doctest::Approx(out.data()[i]).epsilon(1e-4));

  // Dropout applies only in training with p > 0; the generator advances once per call.
  Generator g1(9), g2(9);
  TensorD eval = ops::attention(qkv, 3, 0.5, false, &g1);
  CHECK(eval.to_vector() == out.to_vector());
  TensorD train1 = ops::attention(qkv, 3, 0.5, true, &g1), train2 = ops::attention(qkv, 3, 0.5, true, &g2);
  CHECK(train1.to_vector() == train2.to_vector());
  CHECK(train1.to_vector() != out.to_vector());

  TensorD empty = ops::attention(TensorD::zeros({0, 4, 6}), 1);
  CHECK(empty.shape() == Shape{0, 4, 2});
}

TEST_CASE("ops::attention float backward matches double backward") {
  Generator gen(21);
  TensorD qkv = TensorD::uniform({2, 65, 3 * 3 * 16}, -1.0, 1.0, gen).set_requires_grad();
  TensorF qkv_f(qkv.shape());
  for (int64_t i = 0; i < qkv.numel(); ++i) qkv_f.data()[i] = float(qkv.data()[i]);
  qkv_f.set_requires_grad();
  TensorD g = TensorD::uniform({2, 65, 48}, -1.0, 1.0, gen);
  TensorF g_f(g.shape());
  for (int64_t i = 0; i < g.numel(); ++i) g_f.data()[i] = float(g.data()[i]);
  ops::attention(qkv, 3).backward(g);
  ops::attention(qkv_f, 3).backward(g_f);
  REQUIRE(qkv.grad().defined());
  REQUIRE(qkv_f.grad().defined());
  std::vector<float> fast = qkv_f.grad().to_vector();
  check_close(fast, qkv.grad().to_vector(), 5e-5, 2e-4, "dqkv");
}

TEST_CASE("ops::attention rejects bad shapes and options with clear errors") {
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  TensorF x = TensorF::zeros({2, 5, 18});
  CHECK(message([&] { ops::attention(x, 4); }).find("attention: the last dimension of qkv shape (2, 5, 18)") !=
        std::string::npos);
  CHECK(message([&] { ops::attention(TensorF::zeros({5, 18}), 1); }).find("attention: qkv must be") !=
        std::string::npos);
  CHECK(message([&] { ops::attention(TensorF::zeros({2, 5, 2, 3, 3}), 3); }).find("(2, 5, 2, 3, 3)") !=
        std::string::npos);
  CHECK(message([&] { ops::attention(TensorF::zeros({2, 5, 3, 2, 3}), 3); }).find("num_heads = 3") !=
        std::string::npos);
  CHECK(message([&] { ops::attention(x, 0); }).find("num_heads must be at least 1") != std::string::npos);
  CHECK(message([&] { ops::attention(x, 2, 1.0, true); }).find("dropout_p must be in [0, 1)") != std::string::npos);
  CHECK(message([&] { ops::attention(x, 2, -0.1); }).find("dropout_p") != std::string::npos);
  CHECK(message([&] { ops::attention(TensorF::zeros({2, 5, 0}), 2); }).find("d >= 1") != std::string::npos);
}

TEST_CASE("ops::attention equals attention composed from matmul, permute and softmax ops") {
  for (Dims s : {Dims{2, 7, 3, 5}, Dims{1, 65, 3, 64}, Dims{3, 1, 2, 3}}) {
    CAPTURE(s.N);
    Generator gen(50 + uint64_t(s.N));
    TensorD qkv = TensorD::uniform({s.B, s.N, 3 * s.H * s.d}, -1.0, 1.0, gen).set_requires_grad();
    TensorD qkv_composed = qkv.clone().set_requires_grad();
    TensorD g = TensorD::uniform({s.B, s.N, s.H * s.d}, -1.0, 1.0, gen);
    TensorD fused = ops::attention(qkv, s.H), composed = composed_attention(qkv_composed, s.H);
    REQUIRE(fused.shape() == composed.shape());
    fused.backward(g);
    composed.backward(g);
    for (int64_t i = 0; i < fused.numel(); ++i)
      REQUIRE(fused.data()[i] == doctest::Approx(composed.data()[i]).epsilon(1e-12).scale(1.0));
    for (int64_t i = 0; i < qkv.numel(); ++i)
      REQUIRE(qkv.grad().data()[i] == doctest::Approx(qkv_composed.grad().data()[i]).epsilon(1e-12).scale(1.0));

    TensorF qkv_f(qkv.shape()), g_f(g.shape());
    for (int64_t i = 0; i < qkv.numel(); ++i) qkv_f.data()[i] = float(qkv.data()[i]);
    for (int64_t i = 0; i < g.numel(); ++i) g_f.data()[i] = float(g.data()[i]);
    TensorF qkv_f2 = qkv_f.clone().set_requires_grad();
    qkv_f.set_requires_grad();
    TensorF fused_f = ops::attention(qkv_f, s.H), composed_f = composed_attention(qkv_f2, s.H);
    fused_f.backward(g_f);
    composed_f.backward(g_f);
    check_close(fused_f.to_vector(), composed.to_vector(), 2e-5, 1e-4, "float fused vs double composed out");
    check_close(composed_f.to_vector(), composed.to_vector(), 2e-5, 1e-4, "float composed vs double composed out");
    check_close(qkv_f.grad().to_vector(), qkv_composed.grad().to_vector(), 5e-5, 2e-4, "float fused dqkv");
  }
}
