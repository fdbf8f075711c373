// Tests of the row kernels (softmax, log-softmax, layer_norm, gelu, cross_entropy, adamw, patchify) and simd.hpp:
// each vector path against the reference in double at odd sizes, reference backwards against finite
// differences, exp/erf accuracy in ulps, and bit-identical results for 1, 2 and 3 threads.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <tessera/core/rng.hpp>
#include <tessera/kernels/adamw.hpp>
#include <tessera/kernels/cross_entropy.hpp>
#include <tessera/kernels/gelu.hpp>
#include <tessera/kernels/layer_norm.hpp>
#include <tessera/kernels/patchify.hpp>
#include <tessera/kernels/reference/adamw.hpp>
#include <tessera/kernels/reference/cross_entropy.hpp>
#include <tessera/kernels/reference/gelu.hpp>
#include <tessera/kernels/reference/layer_norm.hpp>
#include <tessera/kernels/reference/patchify.hpp>
#include <tessera/kernels/reference/softmax.hpp>
#include <tessera/kernels/simd.hpp>
#include <tessera/kernels/softmax.hpp>
#include <vector>

namespace k = tessera::kernels;
namespace ref = tessera::kernels::reference;
namespace simd = tessera::kernels::simd;
using tessera::Generator;

// Every vector type this build can run: the scalar fallback always, the SIMD types the compiler targets, and pairs:
// VecPair<VecAvx2> runs every kernel's 16-lane logic (the AVX-512 width) on an AVX2 machine.
#if defined(__AVX512F__)
#define TESSERA_TEST_VECS \
  simd::VecScalar, simd::VecPair<simd::VecScalar>, simd::VecAvx2, simd::VecPair<simd::VecAvx2>, simd::VecAvx512
#elif defined(__AVX2__) && defined(__FMA__)
#define TESSERA_TEST_VECS simd::VecScalar, simd::VecPair<simd::VecScalar>, simd::VecAvx2, simd::VecPair<simd::VecAvx2>
#else
#define TESSERA_TEST_VECS simd::VecScalar, simd::VecPair<simd::VecScalar>
#endif

namespace {

const std::vector<int> kSizes = {1, 3, 7, 8, 15, 16, 17, 31, 65, 97, 193};
const std::vector<int> kRowSizes = {1, 3, 7, 31, 65};
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> normal(int64_t n, Generator& gen, double stddev = 1.0) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(gen.normal(0.0, stddev));
  return v;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

std::vector<int64_t> random_targets(int rows, int classes, Generator& gen) {
  std::vector<int64_t> t(rows);
  for (auto& x : t) x = static_cast<int64_t>(gen.below(static_cast<uint64_t>(classes)));
  return t;
}

// Number of i with |got - want| > atol + rtol |want| (NaN counts as a mismatch); reports the first one.
int64_t count_mismatches(const std::vector<float>& got, const std::vector<double>& want, double atol, double rtol,
                         const std::string& what) {
  REQUIRE(got.size() == want.size());
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(diff <= atol + rtol * std::fabs(want[i]))) {
      if (bad == 0) MESSAGE(what << ": first mismatch at " << i << ": got " << got[i] << ", want " << want[i]);
      ++bad;
    }
  }
  return bad;
}

#define CHECK_CLOSE(got, want, atol, rtol) CHECK(count_mismatches(got, want, atol, rtol, #got) == 0)

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs f with the given number of OpenMP threads, then restores the previous setting.
template <class F>
void with_threads(int threads, F&& f) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  f();
  omp_set_num_threads(previous);
}

// Central differences of loss() with respect to x[i] for every i, in double.
std::vector<double> numeric_gradient(std::vector<double>& x, const std::function<double()>& loss, double h = 1e-6) {
  std::vector<double> grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Distance in units in the last place between two finite floats of any sign.
int64_t ulp_distance(float a, float b) {
  const auto ordered = [](float x) {
    const int32_t i = std::bit_cast<int32_t>(x);
    return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
  };
  return std::llabs(ordered(a) - ordered(b));
}

// Applies a vector function to xs chunk by chunk.
template <class V, class F>
std::vector<float> apply_vec(const std::vector<float>& xs, F f) {
  std::vector<float> out(xs.size(), kNaN);
  simd::for_each_chunk<V>(static_cast<int64_t>(xs.size()), [&](const simd::Chunk& ch) {
    simd::store_chunk(out.data(), ch, f(simd::load_chunk<V>(xs.data(), ch)));
  });
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- simd.hpp

TEST_CASE_TEMPLATE("simd loads, stores and reductions honour partial tails", V, TESSERA_TEST_VECS) {
  std::vector<float> src(V::width + 1);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i) - 3.5f;
  for (int n = 1; n <= V::width; ++n) {
    std::vector<float> dst(V::width + 1, kNaN);
    const V x = V::load_partial(src.data(), n, 100.0f);
    x.store_partial(dst.data(), n);
    for (int i = 0; i < n; ++i) CHECK(dst[i] == src[i]);
    for (int i = n; i <= V::width; ++i) CHECK(std::isnan(dst[i]));
    float want_sum = 0, want_max = -1e30f;
    for (int i = 0; i < V::width; ++i) {
      const float v = i < n ? src[i] : 100.0f;
      want_sum += v;
      want_max = std::max(want_max, v);
    }
    CHECK(reduce_add(x) == doctest::Approx(want_sum));
    CHECK(reduce_max(x) == want_max);
  }
}

TEST_CASE_TEMPLATE("simd transpose turns rows into columns, and load_broadcast and zero fill every lane", V,
                   TESSERA_TEST_VECS) {
  constexpr int w = V::width;
  std::vector<float> m(w * w), out(w * w, kNaN);
  for (int i = 0; i < w * w; ++i) m[i] = static_cast<float>(i) + 0.25f;
  V rows[w];
  for (int r = 0; r < w; ++r) rows[r] = V::load(m.data() + r * w);
  simd::transpose(rows);
  for (int r = 0; r < w; ++r) rows[r].store(out.data() + r * w);
  for (int r = 0; r < w; ++r)
    for (int c = 0; c < w; ++c) CHECK(out[r * w + c] == m[c * w + r]);
  const float x = 3.5f;
  std::vector<float> lanes(w, kNaN), zeros(w, kNaN);
  V::load_broadcast(&x).store(lanes.data());
  V::zero().store(zeros.data());
  for (int i = 0; i < w; ++i) {
    CHECK(lanes[i] == x);
    CHECK(zeros[i] == 0.0f);
  }
}

TEST_CASE_TEMPLATE("simd chunks cover a row once, overlapping tails keep earlier lanes", V, TESSERA_TEST_VECS) {
  for (int n : {1, 3, 7, 8, 15, 16, 17, 31, 33, 65, 97}) {
    CAPTURE(n);
    std::vector<float> x(n), out(n, kNaN), twice(n);
    for (int i = 0; i < n; ++i) twice[i] = x[i] = static_cast<float>(i + 1);
    std::vector<int> visits(n, 0);
    simd::for_each_chunk<V>(n, [&](const simd::Chunk& ch) {
      for (int lane = ch.skip; lane < ch.count; ++lane) ++visits[ch.offset + lane];
      simd::store_chunk(out.data(), ch, simd::load_chunk<V>(x.data(), ch, -1.0f) + V::broadcast(1.0f));
      simd::store_chunk(twice.data(), ch, simd::load_chunk<V>(twice.data(), ch) * V::broadcast(2.0f));  // in place
    });
    for (int i = 0; i < n; ++i) {
      CHECK(visits[i] == 1);
      CHECK(out[i] == x[i] + 1.0f);
      CHECK(twice[i] == 2.0f * x[i]);
    }
    const float sum = simd::row_sum<V>(x.data(), n);
    CHECK(sum == static_cast<float>(n) * (n + 1) / 2);
    CHECK(simd::row_max<V>(x.data(), n) == static_cast<float>(n));
    const std::vector<float> ones(n, 1.0f);
    const float count = reduce_add(simd::reduce_chunks<V>(
        n, V::broadcast(0.0f), [&](const simd::Chunk& ch) { return simd::load_chunk<V>(ones.data(), ch); },
        simd::add<V>));
    CHECK(count == static_cast<float>(n));
  }
}

TEST_CASE_TEMPLATE("simd exp is within 1 ulp of the correctly rounded value", V, TESSERA_TEST_VECS) {
  std::vector<float> xs;
  for (double x = -87.3; x < 88.7; x += 1.0 / 1024) xs.push_back(static_cast<float>(x));
  for (float x = 1e-30f; x < 1e-2f; x *= 1.01f) {
    xs.push_back(x);
    xs.push_back(-x);
  }
  const auto got = apply_vec<V>(xs, [](V x) { return exp(x); });
  int64_t worst = 0;
  for (size_t i = 0; i < xs.size(); ++i)
    worst = std::max(worst, ulp_distance(got[i], static_cast<float>(std::exp(static_cast<double>(xs[i])))));
  MESSAGE("exp max error " << worst << " ulp over " << xs.size() << " points");
  CHECK(worst <= 1);
  const std::vector<float> edges = {-std::numeric_limits<float>::infinity(), -200.0f, -87.5f, 0.0f, 89.0f,
                                    std::numeric_limits<float>::infinity(),  kNaN};
  const auto e = apply_vec<V>(edges, [](V x) { return exp(x); });
  CHECK(e[0] == 0.0f);
  CHECK(e[1] == 0.0f);
  CHECK(e[2] <= std::numeric_limits<float>::min());
  CHECK(e[3] == 1.0f);
  CHECK(e[4] == std::numeric_limits<float>::infinity());
  CHECK(e[5] == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(e[6]));
  std::vector<float> nonpositive;
  for (float x : xs)
    if (x <= 0.0f) nonpositive.push_back(x);
  const auto got_np = apply_vec<V>(nonpositive, [](V x) { return exp_nonpositive(x); });
  int64_t worst_np = 0;
  for (size_t i = 0; i < nonpositive.size(); ++i)
    worst_np = std::max(worst_np, ulp_distance(got_np[i], static_cast<float>(std::exp(double{nonpositive[i]}))));
  MESSAGE("exp_nonpositive max error " << worst_np << " ulp over " << nonpositive.size() << " points");
  CHECK(worst_np <= 1);
  const auto e_np =
      apply_vec<V>({edges[0], edges[1], edges[2], edges[3], edges[6]}, [](V x) { return exp_nonpositive(x); });
  CHECK(e_np[0] == 0.0f);
  CHECK(e_np[1] == 0.0f);
  CHECK(e_np[2] <= std::numeric_limits<float>::min());
  CHECK(e_np[3] == 1.0f);
  CHECK(std::isnan(e_np[4]));
  // Around ln FLT_MIN the polynomial exp gives 0 or a normal float, never a denormal (none inside either: see
  // kLnFltMin); exp_nonpositive gives exactly 0 from -87.7 down (2^n underflows to 0, no denormal product) and the
  // denormal e^x just above. Scalar lanes use std::exp, whose denormal results are correct.
  if constexpr (V::width < 8) return;
  std::vector<float> low;
  for (float x = -87.34f; x < -87.33f; x = std::nextafter(x, 0.0f)) low.push_back(x);
  int64_t denormal = 0;
  for (float e : apply_vec<V>(low, [](V x) { return exp(x); }))
    denormal += e != 0.0f && !(e >= std::numeric_limits<float>::min());
  CHECK(denormal == 0);
  std::vector<float> far;
  for (float x = -87.7f; x > -89.0f; x = std::nextafter(x, -100.0f)) far.push_back(x);
  int64_t nonzero = 0;
  for (float e : apply_vec<V>(far, [](V x) { return exp_nonpositive(x); })) nonzero += e != 0.0f;
  CHECK(nonzero == 0);
}

TEST_CASE_TEMPLATE("simd erf is within 2 ulp of std::erf on [-10, 10]", V, TESSERA_TEST_VECS) {
  std::vector<float> xs;
  for (double x = -10; x <= 10; x += 1.0 / 8192) xs.push_back(static_cast<float>(x));
  for (float x = 1e-30f; x < 1e-2f; x *= 1.01f) {
    xs.push_back(x);
    xs.push_back(-x);
  }
  for (float x = 0.86f; x < 0.89f; x = std::nextafter(x, 1.0f)) xs.push_back(x);  // around the branch split
  const auto got = apply_vec<V>(xs, [](V x) { return erf(x); });
  int64_t worst = 0;
  double worst_abs = 0, worst_x = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double want = std::erf(static_cast<double>(xs[i]));
    const int64_t u = ulp_distance(got[i], static_cast<float>(want));
    if (u > worst) worst = u, worst_x = xs[i];
    worst_abs = std::max(worst_abs, std::fabs(got[i] - want));
  }
  MESSAGE("erf max error " << worst << " ulp (at " << worst_x << "), max abs error " << worst_abs << " over "
                           << xs.size() << " points");
  CHECK(worst <= 2);
  CHECK(worst_abs < 1.5e-7);
  const std::vector<float> edges = {-std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity(),
                                    0.0f, -0.0f, kNaN};
  const auto e = apply_vec<V>(edges, [](V x) { return erf(x); });
  CHECK(e[0] == -1.0f);
  CHECK(e[1] == 1.0f);
  CHECK(e[2] == 0.0f);
  CHECK(e[3] == 0.0f);
  CHECK(std::isnan(e[4]));
}

TEST_CASE_TEMPLATE("simd normal CDF and PDF are accurate in relative terms", V, TESSERA_TEST_VECS) {
  // Down to x = -13 Phi stays above FLT_MIN; the lower tail is computed from erfc, not as 1 + erf.
  std::vector<float> xs;
  for (double x = -13; x <= 10; x += 1.0 / 4096) xs.push_back(static_cast<float>(x));
  const auto cdf = apply_vec<V>(xs, [](V x) { return normal_cdf_pdf(x).cdf; });
  const auto pdf = apply_vec<V>(xs, [](V x) { return normal_cdf_pdf(x).pdf; });
  int64_t worst_cdf = 0, worst_pdf = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i];
    worst_cdf = std::max(worst_cdf, ulp_distance(cdf[i], static_cast<float>(0.5 * std::erfc(-x / std::sqrt(2.0)))));
    worst_pdf =
        std::max(worst_pdf, ulp_distance(pdf[i], static_cast<float>(std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI))));
  }
  MESSAGE("normal cdf max error " << worst_cdf << " ulp, pdf " << worst_pdf << " ulp on [-13, 10]");
  CHECK(worst_cdf <= 8);
  CHECK(worst_pdf <= 4);
}

// ---------------------------------------------------------------------------------------------- softmax

TEST_CASE_TEMPLATE("softmax and log_softmax match the reference at odd sizes", V, TESSERA_TEST_VECS) {
  Generator gen(1);
  for (int rows : kRowSizes) {
    for (int cols : kSizes) {
      CAPTURE(rows);
      CAPTURE(cols);
      const int64_t n = int64_t{rows} * cols;
      const auto inp = normal(n, gen, 3.0);
      const auto dout = normal(n, gen);
      const auto dinp0 = normal(n, gen);
      for (bool log : {false, true}) {
        CAPTURE(log);
        std::vector<float> out(n, kNaN);
        std::vector<double> want(n);
        if (log) {
          k::log_softmax_forward<V>(out.data(), inp.data(), rows, cols);
          ref::log_softmax_forward(want.data(), to_double(inp).data(), rows, cols);
        } else {
          k::softmax_forward<V>(out.data(), inp.data(), rows, cols);
          ref::softmax_forward(want.data(), to_double(inp).data(), rows, cols);
        }
        CHECK_CLOSE(out, want, log ? 1e-6 : 1e-7, 4e-6);  // log: the float sum's rounding enters additively
        auto dinp = dinp0;
        auto want_dinp = to_double(dinp0);
        if (log) {
          k::log_softmax_backward<V>(dinp.data(), dout.data(), out.data(), rows, cols);
          ref::log_softmax_backward(want_dinp.data(), to_double(dout).data(), to_double(out).data(), rows, cols);
        } else {
          k::softmax_backward<V>(dinp.data(), dout.data(), out.data(), rows, cols);
          ref::softmax_backward(want_dinp.data(), to_double(dout).data(), to_double(out).data(), rows, cols);
        }
        CHECK_CLOSE(dinp, want_dinp, 1e-5, 1e-5);
      }
    }
  }
}

TEST_CASE_TEMPLATE("softmax handles extreme and in-place rows", V, TESSERA_TEST_VECS) {
  std::vector<float> x = {-80.0f, 80.0f, 80.0f, -1e30f, 0.0f, 79.0f, -80.0f, 80.0f, 1.0f};
  k::softmax_forward<V>(x.data(), x.data(), 1, static_cast<int>(x.size()));
  std::vector<double> want(x.size());
  const std::vector<double> xd = {-80, 80, 80, -1e30, 0, 79, -80, 80, 1};
  ref::softmax_forward(want.data(), xd.data(), 1, static_cast<int>(x.size()));
  CHECK_CLOSE(x, want, 1e-7, 4e-6);
  std::vector<float> y = {-std::numeric_limits<float>::infinity(), 0.0f, 1.0f};
  k::log_softmax_forward<V>(y.data(), y.data(), 1, 3);
  CHECK(y[0] == -std::numeric_limits<float>::infinity());
  CHECK(y[2] == doctest::Approx(-std::log1p(std::exp(-1.0))));
}

TEST_CASE("reference softmax and log_softmax backwards match finite differences") {
  Generator gen(2);
  for (bool log : {false, true}) {
    const int rows = 3, cols = 7;
    auto x = to_double(normal(rows * cols, gen, 2.0));
    const auto w = to_double(normal(rows * cols, gen));
    std::vector<double> out(rows * cols);
    auto forward = [&] {
      if (log)
        ref::log_softmax_forward(out.data(), x.data(), rows, cols);
      else
        ref::softmax_forward(out.data(), x.data(), rows, cols);
    };
    auto loss = [&] {
      forward();
      return dot(out, w);
    };
    const auto numeric = numeric_gradient(x, loss);
    forward();
    std::vector<double> grad(rows * cols, 0.0);
    if (log)
      ref::log_softmax_backward(grad.data(), w.data(), out.data(), rows, cols);
    else
      ref::softmax_backward(grad.data(), w.data(), out.data(), rows, cols);
    CHECK(max_abs_diff(grad, numeric) < 1e-7);
  }
}

// ---------------------------------------------------------------------------------------------- layer_norm

TEST_CASE_TEMPLATE("layer_norm matches the reference at odd sizes, with and without affine parameters", V,
                   TESSERA_TEST_VECS) {
  Generator gen(3);
  const float eps = 1e-5f;
  for (int rows : {1, 3, 7, 31, 65, 97}) {
    for (int cols : kSizes) {
      for (int affine = 0; affine < 3; ++affine) {  // 0: none, 1: weight only, 2: weight and bias
        CAPTURE(rows);
        CAPTURE(cols);
        CAPTURE(affine);
        const int64_t n = int64_t{rows} * cols;
        auto inp = normal(n, gen, 2.0);
        for (auto& v : inp) v += 3.0f;  // an offset mean exercises the variance pass
        const auto weight = normal(cols, gen);
        const auto bias = normal(cols, gen);
        const float* w = affine >= 1 ? weight.data() : nullptr;
        const float* b = affine == 2 ? bias.data() : nullptr;
        const auto wd = to_double(weight), bd = to_double(bias);
        std::vector<float> out(n, kNaN), mean(rows, kNaN), rstd(rows, kNaN);
        k::layer_norm_forward<V>(out.data(), mean.data(), rstd.data(), inp.data(), w, b, rows, cols, eps);
        std::vector<double> want(n), want_mean(rows), want_rstd(rows);
        ref::layer_norm_forward(want.data(), want_mean.data(), want_rstd.data(), to_double(inp).data(),
                                w ? wd.data() : nullptr, b ? bd.data() : nullptr, rows, cols, double{eps});
        CHECK_CLOSE(out, want, 2e-5, 1e-5);
        CHECK_CLOSE(mean, want_mean, 1e-6, 1e-6);
        CHECK_CLOSE(rstd, want_rstd, 1e-6, 1e-5);

        const auto dout = normal(n, gen);
        auto dinp = normal(n, gen);
        auto dweight = normal(cols, gen), dbias = normal(cols, gen);
        auto want_dinp = to_double(dinp), want_dweight = to_double(dweight), want_dbias = to_double(dbias);
        k::layer_norm_backward<V>(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), w, mean.data(),
                                  rstd.data(), rows, cols);
        ref::layer_norm_backward(want_dinp.data(), want_dweight.data(), want_dbias.data(), to_double(dout).data(),
                                 to_double(inp).data(), w ? wd.data() : nullptr, to_double(mean).data(),
                                 to_double(rstd).data(), rows, cols);
        // dinp's terms cancel to about 0 when the variance is tiny (cols = 1): the error scales with rstd |g|.
        double scale = 0;
        for (int r = 0; r < rows; ++r)
          for (int c = 0; c < cols; ++c)
            scale = std::max(scale, double{rstd[r]} * std::fabs(dout[int64_t{r} * cols + c] * (w ? w[c] : 1.0f)));
        CHECK_CLOSE(dinp, want_dinp, 1e-6 * scale, 1e-5);
        CHECK_CLOSE(dweight, want_dweight, 1e-4, 1e-5);
        CHECK_CLOSE(dbias, want_dbias, 1e-4, 1e-5);
      }
    }
  }
}

TEST_CASE_TEMPLATE("layer_norm without saved statistics or parameter gradients", V, TESSERA_TEST_VECS) {
  Generator gen(4);
  const int rows = 65, cols = 17;
  const auto inp = normal(rows * cols, gen);
  std::vector<float> out(rows * cols, kNaN), out2(rows * cols, kNaN), mean(rows), rstd(rows);
  k::layer_norm_forward<V>(out.data(), nullptr, nullptr, inp.data(), nullptr, nullptr, rows, cols, 1e-5f);
  k::layer_norm_forward<V>(out2.data(), mean.data(), rstd.data(), inp.data(), nullptr, nullptr, rows, cols, 1e-5f);
  CHECK(bit_identical(out, out2));
  const auto dout = normal(rows * cols, gen);
  std::vector<float> dinp(rows * cols, 0.0f), dinp2(rows * cols, 0.0f), dweight(cols, 0.0f), dbias(cols, 0.0f);
  k::layer_norm_backward<V>(dinp.data(), nullptr, nullptr, dout.data(), inp.data(), nullptr, mean.data(), rstd.data(),
                            rows, cols);
  k::layer_norm_backward<V>(dinp2.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), nullptr, mean.data(),
                            rstd.data(), rows, cols);
  CHECK(bit_identical(dinp, dinp2));
}

TEST_CASE("reference layer_norm backward matches finite differences") {
  Generator gen(5);
  const int rows = 3, cols = 7;
  const double eps = 1e-5;
  auto x = to_double(normal(rows * cols, gen, 2.0));
  auto weight = to_double(normal(cols, gen));
  auto bias = to_double(normal(cols, gen));
  const auto w = to_double(normal(rows * cols, gen));
  std::vector<double> out(rows * cols), mean(rows), rstd(rows);
  auto loss = [&] {
    ref::layer_norm_forward(out.data(), mean.data(), rstd.data(), x.data(), weight.data(), bias.data(), rows, cols,
                            eps);
    return dot(out, w);
  };
  const auto numeric_x = numeric_gradient(x, loss);
  const auto numeric_w = numeric_gradient(weight, loss);
  const auto numeric_b = numeric_gradient(bias, loss);
  loss();
  std::vector<double> dx(rows * cols, 0.0), dw(cols, 0.0), db(cols, 0.0);
  ref::layer_norm_backward(dx.data(), dw.data(), db.data(), w.data(), x.data(), weight.data(), mean.data(), rstd.data(),
                           rows, cols);
  CHECK(max_abs_diff(dx, numeric_x) < 1e-7);
  CHECK(max_abs_diff(dw, numeric_w) < 1e-7);
  CHECK(max_abs_diff(db, numeric_b) < 1e-7);
}

// ---------------------------------------------------------------------------------------------- gelu

TEST_CASE_TEMPLATE("gelu matches the reference, tails included", V, TESSERA_TEST_VECS) {
  Generator gen(6);
  std::vector<int64_t> sizes(kSizes.begin(), kSizes.end());
  for (int64_t n : {1000, 8191, 8192, 8193, 40001}) sizes.push_back(n);
  for (int64_t n : sizes) {
    CAPTURE(n);
    auto inp = normal(n, gen, 3.0);
    for (int64_t i = 0; i < n; i += 5) inp[i] = static_cast<float>(gen.uniform(-16.0, 16.0));
    std::vector<float> out(n, kNaN);
    k::gelu_forward<V>(out.data(), inp.data(), n);
    std::vector<double> want(n);
    ref::gelu_forward(want.data(), to_double(inp).data(), n);
    CHECK_CLOSE(out, want, 1e-37, 2e-6);
    const auto dout = normal(n, gen);
    auto dinp = normal(n, gen);
    auto want_dinp = to_double(dinp);
    k::gelu_backward<V>(dinp.data(), dout.data(), inp.data(), n);
    ref::gelu_backward(want_dinp.data(), to_double(dout).data(), to_double(inp).data(), n);
    CHECK_CLOSE(dinp, want_dinp, 1e-6, 1e-6);
  }
  std::vector<float> edges = {
      0.0f, -0.0f, 1.0f, -1.0f, 5.0f, -5.0f, 30.0f, -30.0f, std::numeric_limits<float>::infinity(), kNaN};
  const auto edges_d = to_double(edges);
  k::gelu_forward<V>(edges.data(), edges.data(), static_cast<int64_t>(edges.size()));  // in place
  CHECK(edges[0] == 0.0f);
  CHECK(edges[2] == doctest::Approx(0.8413447460685429));
  CHECK(edges[6] == 30.0f);
  CHECK(edges[7] == 0.0f);
  CHECK(edges[8] == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(edges[9]));
  std::vector<double> want(8);
  ref::gelu_forward(want.data(), edges_d.data(), 8);
  CHECK_CLOSE(std::vector<float>(edges.begin(), edges.begin() + 8), want, 1e-37, 2e-6);
}

TEST_CASE("reference gelu backward matches finite differences") {
  Generator gen(7);
  auto x = to_double(normal(31, gen, 3.0));
  const auto w = to_double(normal(31, gen));
  std::vector<double> out(31);
  auto loss = [&] {
    ref::gelu_forward(out.data(), x.data(), 31);
    return dot(out, w);
  };
  const auto numeric = numeric_gradient(x, loss);
  std::vector<double> grad(31, 0.0);
  ref::gelu_backward(grad.data(), w.data(), x.data(), 31);
  CHECK(max_abs_diff(grad, numeric) < 1e-7);
}

// ---------------------------------------------------------------------------------------------- cross_entropy

TEST_CASE_TEMPLATE("cross_entropy matches the reference with and without label smoothing", V, TESSERA_TEST_VECS) {
  Generator gen(8);
  for (int rows : kRowSizes) {
    for (int classes : kSizes) {
      for (float smoothing : {0.0f, 0.1f}) {
        CAPTURE(rows);
        CAPTURE(classes);
        CAPTURE(smoothing);
        const int64_t n = int64_t{rows} * classes;
        const auto logits = normal(n, gen, 3.0);
        const auto targets = random_targets(rows, classes, gen);
        std::vector<float> losses(rows, kNaN), probs(n, kNaN), losses_only(rows, kNaN);
        k::cross_entropy_forward<V>(losses.data(), probs.data(), logits.data(), targets.data(), rows, classes,
                                    smoothing);
        k::cross_entropy_forward<V>(losses_only.data(), nullptr, logits.data(), targets.data(), rows, classes,
                                    smoothing);
        std::vector<double> want_losses(rows), want_probs(n);
        ref::cross_entropy_forward(want_losses.data(), want_probs.data(), to_double(logits).data(), targets.data(),
                                   rows, classes, double{smoothing});
        CHECK_CLOSE(losses, want_losses, 2e-6, 2e-6);
        CHECK_CLOSE(losses_only, want_losses, 2e-6, 2e-6);
        CHECK_CLOSE(probs, want_probs, 1e-7, 4e-6);
        const auto dlosses = normal(rows, gen);
        auto dlogits = normal(n, gen);
        auto want_dlogits = to_double(dlogits);
        k::cross_entropy_backward<V>(dlogits.data(), dlosses.data(), probs.data(), targets.data(), rows, classes,
                                     smoothing);
        ref::cross_entropy_backward(want_dlogits.data(), to_double(dlosses).data(), to_double(probs).data(),
                                    targets.data(), rows, classes, double{smoothing});
        CHECK_CLOSE(dlogits, want_dlogits, 1e-6, 1e-6);
      }
    }
  }
}

TEST_CASE_TEMPLATE("cross_entropy stays finite and accurate with logits of +-80", V, TESSERA_TEST_VECS) {
  Generator gen(9);
  for (float smoothing : {0.0f, 0.1f}) {
    const int rows = 65, classes = 17;
    std::vector<float> logits(rows * classes);
    for (auto& x : logits) x = gen.bernoulli(0.5) ? 80.0f : -80.0f;
    const auto targets = random_targets(rows, classes, gen);
    std::vector<float> losses(rows, kNaN), probs(rows * classes, kNaN);
    k::cross_entropy_forward<V>(losses.data(), probs.data(), logits.data(), targets.data(), rows, classes, smoothing);
    std::vector<double> want(rows), want_probs(rows * classes);
    ref::cross_entropy_forward(want.data(), want_probs.data(), to_double(logits).data(), targets.data(), rows, classes,
                               double{smoothing});
    for (float l : losses) CHECK(std::isfinite(l));
    CHECK_CLOSE(losses, want, 1e-5, 1e-6);
    CHECK_CLOSE(probs, want_probs, 1e-7, 4e-6);
    std::vector<float> dlogits(rows * classes, 0.0f);
    const std::vector<float> dlosses(rows, 1.0f / rows);
    k::cross_entropy_backward<V>(dlogits.data(), dlosses.data(), probs.data(), targets.data(), rows, classes,
                                 smoothing);
    for (float d : dlogits) CHECK(std::isfinite(d));
  }
}

TEST_CASE("reference cross_entropy backward matches finite differences") {
  Generator gen(10);
  for (double smoothing : {0.0, 0.1}) {
    const int rows = 3, classes = 7;
    auto x = to_double(normal(rows * classes, gen, 2.0));
    const auto targets = random_targets(rows, classes, gen);
    const auto dl = to_double(normal(rows, gen));
    std::vector<double> losses(rows), probs(rows * classes);
    auto loss = [&] {
      ref::cross_entropy_forward(losses.data(), probs.data(), x.data(), targets.data(), rows, classes, smoothing);
      return dot(losses, dl);
    };
    const auto numeric = numeric_gradient(x, loss);
    loss();
    std::vector<double> grad(rows * classes, 0.0);
    ref::cross_entropy_backward(grad.data(), dl.data(), probs.data(), targets.data(), rows, classes, smoothing);
    CHECK(max_abs_diff(grad, numeric) < 1e-7);
  }
}

// ---------------------------------------------------------------------------------------------- adamw

TEST_CASE_TEMPLATE("adamw matches the reference over several steps", V, TESSERA_TEST_VECS) {
  Generator gen(11);
  std::vector<int64_t> sizes(kSizes.begin(), kSizes.end());
  sizes.push_back(40001);
  for (int64_t n : sizes) {
    for (double weight_decay : {0.0, 0.05}) {
      CAPTURE(n);
      CAPTURE(weight_decay);
      auto param = normal(n, gen, 0.1);
      std::vector<float> m(n, 0.0f), v(n, 0.0f);
      auto want_param = to_double(param);
      std::vector<double> want_m(n, 0.0), want_v(n, 0.0);
      for (int step = 1; step <= 3; ++step) {
        auto grad = normal(n, gen, 0.01);
        for (int64_t i = 0; i < n; i += 7) grad[i] = 0.0f;  // v = 0 on the first step: the denominator is eps
        k::adamw_step<V>(param.data(), grad.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.999, 1e-8, weight_decay, step);
        ref::adamw_step(want_param.data(), to_double(grad).data(), want_m.data(), want_v.data(), n, 1e-3, 0.9, 0.999,
                        1e-8, weight_decay, step);
      }
      CHECK_CLOSE(param, want_param, 1e-9, 1e-6);
      CHECK_CLOSE(m, want_m, 1e-9, 1e-6);  // m can cancel: the error scales with the gradients (~1e-2)
      CHECK_CLOSE(v, want_v, 1e-16, 1e-6);
    }
  }
}

TEST_CASE("adamw first step moves every parameter by about lr against its gradient's sign") {
  // With m = (1-b1) g and v = (1-b2) g^2, the bias-corrected first step is lr * g / (|g| + eps).
  const std::vector<float> grad = {0.5f, -2.0f, 1e-3f, -1e-4f};
  std::vector<float> param(4, 1.0f), m(4, 0.0f), v(4, 0.0f);
  k::adamw_step(param.data(), grad.data(), m.data(), v.data(), 4, 0.01, 0.9, 0.999, 1e-8, 0.1, 1);
  const float decayed = 1.0f * (1.0f - 0.01f * 0.1f);
  CHECK(param[0] == doctest::Approx(decayed - 0.01f).epsilon(1e-6));
  CHECK(param[1] == doctest::Approx(decayed + 0.01f).epsilon(1e-6));
  CHECK(param[2] == doctest::Approx(decayed - 0.01f).epsilon(1e-5));
  CHECK(param[3] == doctest::Approx(decayed + 0.01f).epsilon(1e-5));
}

// ---------------------------------------------------------------------------------------------- patchify

TEST_CASE("patchify matches the reference exactly and orders columns like a Conv2d weight") {
  Generator gen(12);
  for (int B : {1, 3})
    for (int C : {1, 3})
      for (int p : {1, 2, 4, 7})
        for (int Hp : {1, 3})
          for (int Wp : {1, 7}) {
            CAPTURE(B);
            CAPTURE(C);
            CAPTURE(p);
            const int H = Hp * p, W = Wp * p;
            const int64_t n = int64_t{B} * C * H * W;
            const auto image = normal(n, gen);
            std::vector<float> patches(n, kNaN), want(n, kNaN);
            k::patchify_forward(patches.data(), image.data(), B, C, H, W, p);
            ref::patchify_forward(want.data(), image.data(), B, C, H, W, p);
            CHECK(bit_identical(patches, want));
            const auto dpatches = normal(n, gen);
            auto dimage = normal(n, gen);
            auto want_dimage = dimage;
            k::patchify_backward(dimage.data(), dpatches.data(), B, C, H, W, p);
            ref::patchify_backward(want_dimage.data(), dpatches.data(), B, C, H, W, p);
            CHECK(bit_identical(dimage, want_dimage));
          }
  // One explicit element: image (1, 2, 4, 4), p = 2; patch (i=1, j=0), channel 1, ky=1, kx=0 is pixel (3, 0).
  std::vector<float> image(32);
  for (int i = 0; i < 32; ++i) image[i] = static_cast<float>(i);
  std::vector<float> patches(32, kNaN);
  k::patchify_forward(patches.data(), image.data(), 1, 2, 4, 4, 2);
  const int row = 1 * 2 + 0, col = (1 * 2 + 1) * 2 + 0;
  CHECK(patches[row * 8 + col] == image[(1 * 4 + 3) * 4 + 0]);
}

TEST_CASE("reference patchify backward is the adjoint of its forward") {
  Generator gen(13);
  const int B = 2, C = 3, H = 6, W = 9, p = 3;
  const int64_t n = int64_t{B} * C * H * W;
  const auto x = to_double(normal(n, gen));
  const auto y = to_double(normal(n, gen));
  std::vector<double> px(n), pty(n, 0.0);
  ref::patchify_forward(px.data(), x.data(), B, C, H, W, p);
  ref::patchify_backward(pty.data(), y.data(), B, C, H, W, p);
  CHECK(dot(px, y) == doctest::Approx(dot(x, pty)).epsilon(1e-12));
}

// ---------------------------------------------------------------------------------------------- determinism

TEST_CASE("every kernel gives bit-identical results for 1, 2 and 3 threads") {
  Generator gen(14);
  const int rows = 1031, cols = 97;  // above the parallel threshold, many layer_norm chunks, odd tails
  const int64_t n = int64_t{rows} * cols;
  const auto inp = normal(n, gen, 2.0);
  const auto dout = normal(n, gen);
  const auto weight = normal(cols, gen), bias = normal(cols, gen);
  const auto targets = random_targets(rows, cols, gen);
  const auto dlosses = normal(rows, gen);
  const auto grad = normal(n, gen, 0.01);

  auto run_all = [&] {
    std::vector<std::vector<float>> results;
    std::vector<float> out(n), dinp(n, 0.5f);
    k::softmax_forward(out.data(), inp.data(), rows, cols);
    k::softmax_backward(dinp.data(), dout.data(), out.data(), rows, cols);
    results.push_back(out);
    results.push_back(dinp);
    k::log_softmax_forward(out.data(), inp.data(), rows, cols);
    k::log_softmax_backward(dinp.data(), dout.data(), out.data(), rows, cols);
    results.push_back(out);
    results.push_back(dinp);
    std::vector<float> mean(rows), rstd(rows), dweight(cols, 0.25f), dbias(cols, -0.25f);
    k::layer_norm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), rows, cols,
                          1e-5f);
    k::layer_norm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(),
                           mean.data(), rstd.data(), rows, cols);
    results.insert(results.end(), {out, mean, rstd, dinp, dweight, dbias});
    k::gelu_forward(out.data(), inp.data(), n);
    k::gelu_backward(dinp.data(), dout.data(), inp.data(), n);
    results.push_back(out);
    results.push_back(dinp);
    std::vector<float> losses(rows);
    k::cross_entropy_forward(losses.data(), out.data(), inp.data(), targets.data(), rows, cols, 0.1f);
    k::cross_entropy_backward(dinp.data(), dlosses.data(), out.data(), targets.data(), rows, cols, 0.1f);
    results.insert(results.end(), {losses, out, dinp});
    std::vector<float> param = inp, m(n, 0.0f), v(n, 0.0f);
    for (int step = 1; step <= 2; ++step)
      k::adamw_step(param.data(), grad.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.999, 1e-8, 0.05, step);
    results.insert(results.end(), {param, m, v});
    const int B = 3, C = 3, H = 32, W = 128, p = 4;
    REQUIRE(int64_t{B} * C * H * W <= n);
    std::vector<float> patches(int64_t{B} * C * H * W), dimage(patches.size(), 1.0f);
    k::patchify_forward(patches.data(), inp.data(), B, C, H, W, p);
    k::patchify_backward(dimage.data(), dout.data(), B, C, H, W, p);
    results.push_back(patches);
    results.push_back(dimage);
    return results;
  };
  std::vector<std::vector<float>> one, two, three;
  with_threads(1, [&] { one = run_all(); });
  with_threads(2, [&] { two = run_all(); });
  with_threads(3, [&] { three = run_all(); });
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(bit_identical(one[i], two[i]));
    CHECK(bit_identical(one[i], three[i]));
  }
}
