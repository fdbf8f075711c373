// Tests of the convolutional-stem building blocks: kernels/conv2d.hpp and kernels/batch_norm.hpp (fast float against
// the reference at odd sizes, bit-identical for 1, 2 and 3 threads), ops::conv2d and ops::batch_norm (gradchecks in
// double, a direct convolution written here, hand-computed running statistics, errors), nn::Conv2d and
// nn::BatchNorm2d (names, buffers, train/eval, checkpoints).
#include <omp.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <tessera/nn/batch_norm.hpp>
#include <tessera/nn/conv2d.hpp>
#include <tessera/ops/batch_norm.hpp>
#include <tessera/ops/conv2d.hpp>
#include <vector>

#include "test_helpers.hpp"

using namespace tessera;
using test::check_error;
using test::random_input;
using test::TensorD;
using test::TensorF;
using Inputs = std::vector<TensorD>;

namespace {

// A direct convolution written independently of the kernels: each output pixel visits its window of the padded input,
// reading zero outside the image, all in double.
std::vector<double> direct_conv2d(const TensorD& input, const TensorD& weight, const TensorD* bias, int64_t sh,
                                  int64_t sw, int64_t ph, int64_t pw) {
  const int64_t B = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t O = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  const int64_t Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
  auto pixel = [&](int64_t b, int64_t c, int64_t y, int64_t x) {  // the padded input
    y -= ph;
    x -= pw;
    return y < 0 || y >= H || x < 0 || x >= W ? 0.0 : input.at({b, c, y, x});
  };
  std::vector<double> out;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t y = 0; y < Ho; ++y)
        for (int64_t x = 0; x < Wo; ++x) {
          double sum = bias ? bias->at({o}) : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t u = 0; u < kh; ++u)
              for (int64_t v = 0; v < kw; ++v) sum += weight.at({o, c, u, v}) * pixel(b, c, y * sh + u, x * sw + v);
          out.push_back(sum);
        }
  return out;
}

TensorF to_float(const TensorD& t) {
  return TensorF::from_vector(std::vector<float>(t.data(), t.data() + t.numel()), t.shape());
}

std::vector<float> random_floats(int64_t n, Generator& gen) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(gen.uniform(-1.0, 1.0));
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// |got - want| <= atol + rtol |want| for every element; reports the first mismatch.
void check_close(const float* got, const double* want, int64_t n, double atol, double rtol, const char* what) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(diff <= atol + rtol * std::fabs(want[i]))) {
      if (bad == 0) MESSAGE(what << ": first mismatch at " << i << ": got " << got[i] << ", want " << want[i]);
      ++bad;
    }
  }
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << n << " elements differ");
}

template <class F>
void with_threads(int threads, F&& f) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  f();
  omp_set_num_threads(previous);
}

struct ConvCase {
  int64_t B, C, H, W, O, kh, kw, sh, sw, ph, pw;
  bool bias;
};

std::string describe(const ConvCase& c) {
  return "B" + std::to_string(c.B) + " C" + std::to_string(c.C) + " " + std::to_string(c.H) + "x" +
         std::to_string(c.W) + " O" + std::to_string(c.O) + " k" + std::to_string(c.kh) + "x" + std::to_string(c.kw) +
         " s" + std::to_string(c.sh) + "," + std::to_string(c.sw) + " p" + std::to_string(c.ph) + "," +
         std::to_string(c.pw) + (c.bias ? " bias" : "");
}

kernels::Conv2dSizes sizes_of(const ConvCase& c) {
  return {int(c.B),  int(c.C),  int(c.H),  int(c.W),  int(c.O), int(c.kh),
          int(c.kw), int(c.sh), int(c.sw), int(c.ph), int(c.pw)};
}

// The odd-size cases for the gradchecks and the float-vs-reference comparison: every kernel size, stride and padding
// of the brief, batch 1..3, channels 1 and 3, images 5 and 7 (not square too), with and without bias; plus a
// non-square kernel with different strides and paddings per axis.
std::vector<ConvCase> odd_cases() {
  std::vector<ConvCase> cases;
  int i = 0;
  for (int64_t k : {1, 3, 4})
    for (int64_t s : {1, 2, 4})
      for (int64_t p : {0, 1}) {
        const int64_t B = 1 + i % 3, C = i % 2 ? 3 : 1, H = i % 4 < 2 ? 5 : 7, W = i % 3 ? 7 : 5, O = 1 + i % 4;
        cases.push_back({B, C, H, W, O, k, k, s, s, p, p, i % 2 == 0});
        ++i;
      }
  cases.push_back({2, 3, 7, 5, 2, 3, 1, 2, 1, 1, 0, true});
  cases.push_back({1, 2, 5, 7, 3, 1, 4, 1, 2, 0, 1, false});
  return cases;
}

}  // namespace

// ---- conv2d -------------------------------------------------------------------------------------------------------

TEST_CASE("conv2d forward values by hand") {
  // One 3x3 image, one channel, a 2x2 kernel of ones, stride 1, padding 1: each output sums a 2x2 window of the
  // zero-padded image.
  auto image = TensorD::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  auto ones = TensorD::ones({1, 1, 2, 2});
  const TensorD out = ops::conv2d(image, ones, TensorD(), {.stride = {1, 1}, .padding = {1, 1}});
  CHECK(out.shape() == Shape{1, 1, 4, 4});
  CHECK(out.to_vector() == std::vector<double>{1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9});
  // Stride 2, no padding, two output channels with a bias each: windows at (0,0) only (3x3 input, 2x2 kernel).
  auto w = TensorD::from_vector({1, 0, 0, 1, 0, 1, 1, 0}, {2, 1, 2, 2});
  auto b = TensorD::from_vector({10, -10});
  CHECK(ops::conv2d(image, w, b, {.stride = {2, 2}}).to_vector() == std::vector<double>{16, -4});
  // The float path on the same numbers.
  CHECK(ops::conv2d(to_float(image), to_float(ones), TensorF(), {.stride = {1, 1}, .padding = {1, 1}}).to_vector() ==
        std::vector<float>{1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9});
}

TEST_CASE("conv2d matches a direct convolution written here, in double and float") {
  uint64_t seed = 100;
  for (const ConvCase& c : odd_cases()) {
    CAPTURE(describe(c));
    auto input = random_input({c.B, c.C, c.H, c.W}, seed++), weight = random_input({c.O, c.C, c.kh, c.kw}, seed++);
    auto bias = random_input({c.O}, seed++);
    const std::vector<double> want = direct_conv2d(input, weight, c.bias ? &bias : nullptr, c.sh, c.sw, c.ph, c.pw);
    const ops::Conv2dOptions options{.stride = {c.sh, c.sw}, .padding = {c.ph, c.pw}};
    const TensorD got = ops::conv2d(input, weight, c.bias ? bias : TensorD(), options);
    REQUIRE(got.numel() == int64_t(want.size()));
    CHECK(got.size(2) == (c.H + 2 * c.ph - c.kh) / c.sh + 1);
    CHECK(got.size(3) == (c.W + 2 * c.pw - c.kw) / c.sw + 1);
    for (int64_t i = 0; i < got.numel(); ++i) CHECK(got.data()[i] == doctest::Approx(want[size_t(i)]).epsilon(1e-12));
    const TensorF fast = ops::conv2d(to_float(input), to_float(weight), c.bias ? to_float(bias) : TensorF(), options);
    check_close(fast.data(), want.data(), fast.numel(), 1e-5, 1e-5, "float conv2d");
  }
}

TEST_CASE("conv2d gradcheck in double at odd sizes") {
  uint64_t seed = 200;
  for (const ConvCase& c : odd_cases()) {
    CAPTURE(describe(c));
    auto input = random_input({c.B, c.C, c.H, c.W}, seed++), weight = random_input({c.O, c.C, c.kh, c.kw}, seed++);
    const ops::Conv2dOptions options{.stride = {c.sh, c.sw}, .padding = {c.ph, c.pw}};
    if (c.bias) {
      auto bias = random_input({c.O}, seed++);
      CHECK_GRADCHECK([&](const Inputs& in) { return ops::conv2d(in[0], in[1], in[2], options); },
                      {input, weight, bias});
    } else {
      CHECK_GRADCHECK([&](const Inputs& in) { return ops::conv2d(in[0], in[1], TensorD(), options); }, {input, weight});
    }
  }
  // Only some inputs wanting a gradient: the others stay untouched.
  auto input = random_input({2, 3, 5, 5}, seed++), weight = random_input({2, 3, 3, 3}, seed++);
  input.set_requires_grad(false);
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return ops::conv2d(in[0], in[1], TensorD(), {.padding = {1, 1}});
      },
      {input, weight});
  CHECK_FALSE(input.grad().defined());
}

TEST_CASE("conv2d fast float kernels against the reference at odd sizes") {
  std::vector<ConvCase> cases = odd_cases();
  // Beyond the gradcheck sizes: several weight-gradient slices (B > 8), a pointwise kernel, stem-like shapes.
  cases.push_back({19, 3, 9, 11, 5, 3, 3, 1, 1, 1, 1, true});
  cases.push_back({9, 4, 6, 5, 7, 1, 1, 1, 1, 0, 0, true});
  cases.push_back({3, 8, 17, 17, 16, 3, 3, 2, 2, 1, 1, false});
  cases.push_back({2, 3, 32, 32, 32, 3, 3, 1, 1, 1, 1, true});
  cases.push_back({2, 5, 13, 13, 6, 4, 4, 4, 4, 0, 0, true});
  Generator gen(300);
  for (const ConvCase& c : cases) {
    CAPTURE(describe(c));
    const kernels::Conv2dSizes s = sizes_of(c);
    const int64_t in_n = c.B * c.C * c.H * c.W, w_n = c.O * c.C * c.kh * c.kw, out_n = c.B * c.O * s.Ho() * s.Wo();
    const std::vector<float> inp = random_floats(in_n, gen), weight = random_floats(w_n, gen),
                             bias = random_floats(c.O, gen), dout = random_floats(out_n, gen);
    const std::vector<double> inp_d(inp.begin(), inp.end()), weight_d(weight.begin(), weight.end()),
        bias_d(bias.begin(), bias.end()), dout_d(dout.begin(), dout.end());
    std::vector<float> out(static_cast<size_t>(out_n), -7.0f);
    std::vector<double> out_d(static_cast<size_t>(out_n));
    kernels::conv2d_forward(out.data(), inp.data(), weight.data(), c.bias ? bias.data() : nullptr, s);
    kernels::reference::conv2d_forward<double>(out_d.data(), inp_d.data(), weight_d.data(),
                                               c.bias ? bias_d.data() : nullptr, s);
    check_close(out.data(), out_d.data(), out_n, 1e-5, 1e-5, "conv2d_forward");

    // The backward adds into its gradients: start them from the same non-zero values.
    std::vector<float> dinp = random_floats(in_n, gen), dweight = random_floats(w_n, gen),
                       dbias = random_floats(c.O, gen);
    std::vector<double> dinp_d(dinp.begin(), dinp.end()), dweight_d(dweight.begin(), dweight.end()),
        dbias_d(dbias.begin(), dbias.end());
    kernels::conv2d_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(), s);
    kernels::reference::conv2d_backward<double>(dinp_d.data(), dweight_d.data(), dbias_d.data(), dout_d.data(),
                                                inp_d.data(), weight_d.data(), s);
    check_close(dinp.data(), dinp_d.data(), in_n, 1e-5, 1e-5, "conv2d_backward dinp");
    check_close(dweight.data(), dweight_d.data(), w_n, 1e-4, 1e-5, "conv2d_backward dweight");
    check_close(dbias.data(), dbias_d.data(), c.O, 1e-4, 1e-5, "conv2d_backward dbias");

    // Each gradient alone (the others null) gives the same values.
    std::vector<float> dinp_only(static_cast<size_t>(in_n), 0.0f), dweight_only(static_cast<size_t>(w_n), 0.0f);
    kernels::conv2d_backward(dinp_only.data(), nullptr, nullptr, dout.data(), inp.data(), weight.data(), s);
    kernels::conv2d_backward(nullptr, dweight_only.data(), nullptr, dout.data(), inp.data(), weight.data(), s);
    std::vector<double> dinp_ref(static_cast<size_t>(in_n), 0.0), dweight_ref(static_cast<size_t>(w_n), 0.0);
    kernels::reference::conv2d_backward<double>(dinp_ref.data(), dweight_ref.data(), nullptr, dout_d.data(),
                                                inp_d.data(), weight_d.data(), s);
    check_close(dinp_only.data(), dinp_ref.data(), in_n, 1e-5, 1e-5, "conv2d_backward dinp alone");
    check_close(dweight_only.data(), dweight_ref.data(), w_n, 1e-4, 1e-5, "conv2d_backward dweight alone");
  }
}

TEST_CASE("conv2d kernels are bit-identical for 1, 2 and 3 threads") {
  // Above the parallel threshold: many images (images shared out; three or five weight-gradient slices, shared out
  // or run in turn with threaded GEMMs), few images (the GEMMs threaded instead), a pointwise kernel.
  const std::vector<ConvCase> cases = {{19, 3, 16, 16, 8, 3, 3, 1, 1, 1, 1, true},
                                       {33, 3, 10, 10, 8, 3, 3, 1, 1, 1, 1, true},
                                       {3, 32, 16, 16, 24, 3, 3, 2, 2, 1, 1, true},
                                       {12, 16, 9, 9, 8, 1, 1, 1, 1, 0, 0, false}};
  Generator gen(400);
  for (const ConvCase& c : cases) {
    CAPTURE(describe(c));
    const kernels::Conv2dSizes s = sizes_of(c);
    const int64_t in_n = c.B * c.C * c.H * c.W, w_n = c.O * c.C * c.kh * c.kw, out_n = c.B * c.O * s.Ho() * s.Wo();
    const std::vector<float> inp = random_floats(in_n, gen), weight = random_floats(w_n, gen),
                             bias = random_floats(c.O, gen), dout = random_floats(out_n, gen);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3}) {
      std::vector<float> out(static_cast<size_t>(out_n)), dinp(static_cast<size_t>(in_n), 0.5f),
          dweight(static_cast<size_t>(w_n), 0.5f), dbias(static_cast<size_t>(c.O), 0.5f);
      with_threads(threads, [&] {
        kernels::conv2d_forward(out.data(), inp.data(), weight.data(), c.bias ? bias.data() : nullptr, s);
        kernels::conv2d_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(), s);
      });
      std::vector<float> all = out;
      all.insert(all.end(), dinp.begin(), dinp.end());
      all.insert(all.end(), dweight.begin(), dweight.end());
      all.insert(all.end(), dbias.begin(), dbias.end());
      results.push_back(all);
    }
    CHECK(same_bits(results[0], results[1]));
    CHECK(same_bits(results[0], results[2]));
  }
}

TEST_CASE("conv2d errors name the op and the shapes") {
  auto x = TensorF::zeros({2, 3, 8, 8});
  auto w = TensorF::zeros({4, 3, 3, 3});
  check_error([&] { ops::conv2d(x, TensorF::zeros({4, 3, 3})); }, {"conv2d", "weight", "(4, 3, 3)"});
  check_error([&] { ops::conv2d(TensorF::zeros({2, 5, 8, 8}), w); }, {"conv2d", "(2, 5, 8, 8)", "(4, 3, 3, 3)"});
  check_error([&] { ops::conv2d(TensorF::zeros({3, 8, 8}), w); }, {"conv2d", "input", "(3, 8, 8)"});
  check_error([&] { ops::conv2d(x, w, TensorF::zeros({3})); }, {"conv2d", "bias", "(3)", "(4, 3, 3, 3)"});
  check_error([&] { ops::conv2d(x, w, TensorF(), {.stride = {0, 1}}); }, {"conv2d", "stride", "(0, 1)"});
  check_error([&] { ops::conv2d(x, w, TensorF(), {.padding = {-1, 0}}); }, {"conv2d", "padding", "(-1, 0)"});
  check_error([&] { ops::conv2d(TensorF::zeros({2, 3, 2, 8}), w); }, {"conv2d", "kernel 3x3", "(2, 3, 2, 8)"});
  nn::Conv2d<float> conv(3, 4, 3);
  check_error([&] { conv(TensorF::zeros({2, 4, 8, 8})); }, {"Conv2d", "(B, 3, H, W)", "(2, 4, 8, 8)"});
  check_error([] { nn::Conv2d<float>(3, 0, 3); }, {"Conv2d", "positive"});
}

// ---- batch_norm ---------------------------------------------------------------------------------------------------

TEST_CASE("batch_norm running statistics and outputs against hand-computed values") {
  // Two images, two channels, 1x2 pixels. Channel 0 holds 1, 2 | 3, 4: mean 2.5, biased variance 1.25, unbiased
  // 5/3. Channel 1 holds 0, 0 | 0, 8: mean 2, biased variance 12, unbiased 16.
  const std::vector<double> values = {1, 2, 0, 0, 3, 4, 0, 8};
  auto check = [&](auto zero) {
    using T = decltype(zero);
    using Tn = Tensor<T>;
    const Tn x = Tn::from_vector(std::vector<T>(values.begin(), values.end()), {2, 2, 1, 2});
    const Tn weight = Tn::from_vector({2, 1}), bias = Tn::from_vector({0, 1});
    const Tn running_mean = Tn::from_vector({1, 0}), running_var = Tn::from_vector({1, 2});
    const double eps = 1e-5;
    const Tn y = ops::batch_norm(x, weight, bias, running_mean, running_var, {.momentum = 0.25, .eps = eps});
    const double r0 = 1 / std::sqrt(1.25 + eps), r1 = 1 / std::sqrt(12 + eps);
    const std::vector<double> want = {2 * (1 - 2.5) * r0, 2 * (2 - 2.5) * r0, (0 - 2) * r1 + 1, (0 - 2) * r1 + 1,
                                      2 * (3 - 2.5) * r0, 2 * (4 - 2.5) * r0, (0 - 2) * r1 + 1, (8 - 2) * r1 + 1};
    for (size_t i = 0; i < want.size(); ++i) CHECK(double(y.data()[i]) == doctest::Approx(want[i]).epsilon(1e-6));
    // running = 0.75 running + 0.25 batch, with the unbiased variance.
    CHECK(double(running_mean.data()[0]) == doctest::Approx(0.75 * 1 + 0.25 * 2.5).epsilon(1e-7));
    CHECK(double(running_mean.data()[1]) == doctest::Approx(0.75 * 0 + 0.25 * 2).epsilon(1e-7));
    CHECK(double(running_var.data()[0]) == doctest::Approx(0.75 * 1 + 0.25 * 5.0 / 3.0).epsilon(1e-7));
    CHECK(double(running_var.data()[1]) == doctest::Approx(0.75 * 2 + 0.25 * 16).epsilon(1e-7));
    // Evaluation uses the running statistics and leaves them alone.
    const Tn z = ops::batch_norm(x, weight, bias, running_mean, running_var, {.training = false, .eps = eps});
    const double m0 = 1.375, v0 = 0.75 + 0.25 * 5.0 / 3.0, m1 = 0.5, v1 = 5.5;
    CHECK(double(running_mean.data()[0]) == doctest::Approx(m0).epsilon(1e-7));
    CHECK(double(z.data()[1]) == doctest::Approx(2 * (2 - m0) / std::sqrt(v0 + eps)).epsilon(1e-6));
    CHECK(double(z.data()[7]) == doctest::Approx((8 - m1) / std::sqrt(v1 + eps) + 1).epsilon(1e-6));
  };
  SUBCASE("double") { check(0.0); }
  SUBCASE("float") { check(0.0f); }
}

TEST_CASE("batch_norm gradcheck in double, training and evaluation") {
  const std::vector<Shape> shapes = {{3, 2, 5, 7}, {1, 3, 1, 2}, {2, 1, 3, 3}, {2, 3, 1, 1}, {5, 4}, {2, 3, 7}};
  uint64_t seed = 600;
  for (const Shape& shape : shapes) {
    CAPTURE(shape.str());
    const int64_t C = shape[1];
    auto x = random_input(shape, seed++, -2.0, 3.0);
    auto weight = random_input({C}, seed++, 0.5, 1.5), bias = random_input({C}, seed++);
    const TensorD running_mean = random_input({C}, seed++).detach(),
                  running_var = random_input({C}, seed++, 0.5, 2).detach();
    CHECK_GRADCHECK([&](const Inputs& in) { return ops::batch_norm(in[0], in[1], in[2], running_mean, running_var); },
                    {x, weight, bias});
    CHECK_GRADCHECK(
        [&](const Inputs& in) { return ops::batch_norm(in[0], TensorD(), TensorD(), TensorD(), TensorD()); }, {x});
    CHECK_GRADCHECK(
        [&](const Inputs& in) {
          return ops::batch_norm(in[0], in[1], in[2], running_mean, running_var, {.training = false});
        },
        {x, weight, bias});
  }
}

TEST_CASE("batch_norm fast float kernels against the reference, and bit-identical for 1, 2 and 3 threads") {
  struct Case {
    int B, C, HW;
  };
  Generator gen(700);
  for (const Case& c :
       {Case{1, 1, 2}, Case{3, 5, 7}, Case{2, 3, 65}, Case{7, 5, 33 * 33}, Case{17, 4, 1}, Case{4, 9, 31}}) {
    CAPTURE(c.B);
    CAPTURE(c.C);
    CAPTURE(c.HW);
    const int64_t n = int64_t{c.B} * c.C * c.HW;
    std::vector<float> inp = random_floats(n, gen);
    for (auto& v : inp) v = 3.0f + 2.0f * v;  // away from zero mean
    const std::vector<float> weight = random_floats(c.C, gen), bias = random_floats(c.C, gen),
                             dout = random_floats(n, gen);
    std::vector<float> rm0 = random_floats(c.C, gen), rv0 = random_floats(c.C, gen);
    for (auto& v : rv0) v = 1.5f + v;
    auto d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };

    // Training forward and backward.
    std::vector<double> out_d(static_cast<size_t>(n)), mean_d(static_cast<size_t>(c.C)),
        rstd_d(static_cast<size_t>(c.C)), rm_d = d(rm0), rv_d = d(rv0);
    kernels::reference::batch_norm_forward<double>(out_d.data(), mean_d.data(), rstd_d.data(), rm_d.data(), rv_d.data(),
                                                   d(inp).data(), d(weight).data(), d(bias).data(), c.B, c.C, c.HW,
                                                   1e-5, 0.1);
    std::vector<double> dinp_d(static_cast<size_t>(n), 0.25), dweight_d(static_cast<size_t>(c.C), 0.25),
        dbias_d(static_cast<size_t>(c.C), 0.25);
    kernels::reference::batch_norm_backward<double>(dinp_d.data(), dweight_d.data(), dbias_d.data(), d(dout).data(),
                                                    d(inp).data(), d(weight).data(), mean_d.data(), rstd_d.data(), c.B,
                                                    c.C, c.HW);
    // Evaluation forward and backward with the updated running statistics.
    std::vector<double> eval_rstd_d(static_cast<size_t>(c.C));
    for (int i = 0; i < c.C; ++i) eval_rstd_d[size_t(i)] = 1 / std::sqrt(double(float(rv_d[size_t(i)])) + 1e-5);
    std::vector<double> eval_out_d(static_cast<size_t>(n)), eval_dinp_d(static_cast<size_t>(n), 0.25),
        eval_dweight_d(static_cast<size_t>(c.C), 0.25), eval_dbias_d(static_cast<size_t>(c.C), 0.25);

    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3}) {
      std::vector<float> out(static_cast<size_t>(n)), mean(static_cast<size_t>(c.C)), rstd(static_cast<size_t>(c.C)),
          rm = rm0, rv = rv0;
      std::vector<float> dinp(static_cast<size_t>(n), 0.25f), dweight(static_cast<size_t>(c.C), 0.25f),
          dbias(static_cast<size_t>(c.C), 0.25f);
      std::vector<float> eval_out(static_cast<size_t>(n)), eval_rstd(static_cast<size_t>(c.C)),
          eval_dinp(static_cast<size_t>(n), 0.25f), eval_dweight(static_cast<size_t>(c.C), 0.25f),
          eval_dbias(static_cast<size_t>(c.C), 0.25f);
      with_threads(threads, [&] {
        kernels::batch_norm_forward(out.data(), mean.data(), rstd.data(), rm.data(), rv.data(), inp.data(),
                                    weight.data(), bias.data(), c.B, c.C, c.HW, 1e-5f, 0.1f);
        kernels::batch_norm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(),
                                     mean.data(), rstd.data(), c.B, c.C, c.HW);
        for (int i = 0; i < c.C; ++i) eval_rstd[size_t(i)] = 1.0f / std::sqrt(rv[size_t(i)] + 1e-5f);
        kernels::batch_norm_forward_eval(eval_out.data(), inp.data(), rm.data(), eval_rstd.data(), weight.data(),
                                         bias.data(), c.B, c.C, c.HW);
        kernels::batch_norm_backward_eval(eval_dinp.data(), eval_dweight.data(), eval_dbias.data(), dout.data(),
                                          inp.data(), weight.data(), rm.data(), eval_rstd.data(), c.B, c.C, c.HW);
      });
      if (threads == 1) {
        check_close(out.data(), out_d.data(), n, 1e-5, 1e-5, "batch_norm_forward out");
        check_close(mean.data(), mean_d.data(), c.C, 1e-6, 1e-6, "batch_norm_forward mean");
        check_close(rstd.data(), rstd_d.data(), c.C, 1e-6, 1e-5, "batch_norm_forward rstd");
        check_close(rm.data(), rm_d.data(), c.C, 1e-6, 1e-6, "running_mean");
        check_close(rv.data(), rv_d.data(), c.C, 1e-6, 1e-6, "running_var");
        check_close(dinp.data(), dinp_d.data(), n, 1e-5, 1e-4, "batch_norm_backward dinp");
        check_close(dweight.data(), dweight_d.data(), c.C, 1e-4, 1e-5, "batch_norm_backward dweight");
        check_close(dbias.data(), dbias_d.data(), c.C, 1e-4, 1e-5, "batch_norm_backward dbias");
        const std::vector<double> rm_f = d(rm);
        kernels::reference::batch_norm_forward_eval<double>(eval_out_d.data(), d(inp).data(), rm_f.data(),
                                                            eval_rstd_d.data(), d(weight).data(), d(bias).data(), c.B,
                                                            c.C, c.HW);
        kernels::reference::batch_norm_backward_eval<double>(
            eval_dinp_d.data(), eval_dweight_d.data(), eval_dbias_d.data(), d(dout).data(), d(inp).data(),
            d(weight).data(), rm_f.data(), eval_rstd_d.data(), c.B, c.C, c.HW);
        check_close(eval_out.data(), eval_out_d.data(), n, 1e-5, 1e-5, "batch_norm_forward_eval");
        check_close(eval_dinp.data(), eval_dinp_d.data(), n, 1e-5, 1e-5, "batch_norm_backward_eval dinp");
        check_close(eval_dweight.data(), eval_dweight_d.data(), c.C, 1e-4, 1e-5, "batch_norm_backward_eval dweight");
        check_close(eval_dbias.data(), eval_dbias_d.data(), c.C, 1e-4, 1e-5, "batch_norm_backward_eval dbias");
      }
      std::vector<float> all;
      for (const auto* v :
           {&out, &mean, &rstd, &rm, &rv, &dinp, &dweight, &dbias, &eval_out, &eval_dinp, &eval_dweight, &eval_dbias})
        all.insert(all.end(), v->begin(), v->end());
      results.push_back(all);
    }
    CHECK(same_bits(results[0], results[1]));
    CHECK(same_bits(results[0], results[2]));
  }
}

TEST_CASE("batch_norm errors name the op and the shapes") {
  auto x = TensorF::zeros({2, 3, 4, 4});
  auto c3 = TensorF::ones({3});
  check_error([&] { ops::batch_norm(TensorF::zeros({3}), c3, c3, c3, c3); }, {"batch_norm", "(B, C, ...)", "(3)"});
  check_error([&] { ops::batch_norm(x, TensorF::ones({4}), c3, c3, c3); },
              {"batch_norm", "weight", "(4)", "(2, 3, 4, 4)"});
  check_error([&] { ops::batch_norm(x, c3, c3, TensorF::ones({2}), c3); }, {"batch_norm", "running_mean", "(2)"});
  check_error([&] { ops::batch_norm(x, c3, c3, c3, TensorF()); }, {"batch_norm", "together"});
  check_error([&] { ops::batch_norm(x, c3, c3, TensorF(), TensorF(), {.training = false}); },
              {"batch_norm", "evaluation", "running_mean"});
  check_error(
      [&] {
        ops::batch_norm(TensorF::zeros({1, 3, 1, 1}), c3, c3, c3, c3);
      },
      {"batch_norm", "more than one value per channel", "(1, 3, 1, 1)"});
  check_error([&] { ops::batch_norm(x, c3, c3, c3, c3, {.momentum = 1.5}); }, {"batch_norm", "momentum", "1.5"});
  nn::BatchNorm2d<float> bn(3);
  check_error([&] { bn(TensorF::zeros({2, 4, 4, 4})); }, {"BatchNorm2d", "(B, 3, H, W)", "(2, 4, 4, 4)"});
  check_error([&] { bn(TensorF::zeros({2, 3, 4})); }, {"BatchNorm2d", "(2, 3, 4)"});
}

// ---- modules ------------------------------------------------------------------------------------------------------

namespace {

// A stem-like stack: conv -> batch norm -> relu -> conv, PyTorch's names.
template <class T>
struct TinyStem : nn::Module<T> {
  explicit TinyStem(Generator& gen)
      : nn::Module<T>("TinyStem"),
        conv(3, 4, 3, {.padding = {1, 1}}, false, gen),
        bn(4),
        proj(4, 5, 2, {.stride = {2, 2}}, true, gen) {
    this->register_module("conv", conv);
    this->register_module("bn", bn);
    this->register_module("proj", proj);
  }
  Tensor<T> forward(const Tensor<T>& x) const { return proj(ops::relu(bn(conv(x)))); }
  nn::Conv2d<T> conv;
  nn::BatchNorm2d<T> bn;
  nn::Conv2d<T> proj;
};

}  // namespace

TEST_CASE("nn::Conv2d and nn::BatchNorm2d: names, buffers, initialisation, train and eval") {
  Generator gen(800);
  TinyStem<float> stem(gen);
  std::vector<std::string> parameters;
  for (const auto& [name, p] : stem.named_parameters()) parameters.push_back(name);
  CHECK(parameters == std::vector<std::string>{"conv.weight", "bn.weight", "bn.bias", "proj.weight", "proj.bias"});
  CHECK(stem.state_dict().names() == std::vector<std::string>{"conv.weight", "bn.weight", "bn.bias", "bn.running_mean",
                                                              "bn.running_var", "bn.num_batches_tracked", "proj.weight",
                                                              "proj.bias"});
  CHECK(stem.conv.weight.shape() == Shape{4, 3, 3, 3});
  CHECK_FALSE(stem.conv.has_bias());
  CHECK(stem.proj.bias.shape() == Shape{5});
  CHECK(stem.bn.num_batches_tracked.shape() == Shape{});
  CHECK_FALSE(stem.bn.running_mean.requires_grad());
  // PyTorch's bound: 1/sqrt(fan_in), fan_in = 3*3*3 for conv; the weights fill it (not all zero or tiny).
  const float bound = 1.0f / std::sqrt(27.0f);
  float largest = 0.0f;
  for (float v : stem.conv.weight.to_vector()) largest = std::max(largest, std::fabs(v));
  CHECK(largest <= bound);
  CHECK(largest > 0.8f * bound);
  CHECK(nn::Conv2d<float>(2, 3, std::array<int64_t, 2>{3, 1}).weight.shape() == Shape{3, 2, 3, 1});

  const TensorF x = TensorF::uniform({3, 3, 6, 6}, -1.0f, 1.0f, gen);
  const TensorF y = stem.forward(x);
  CHECK(y.shape() == Shape{3, 5, 3, 3});
  CHECK(stem.bn.num_batches_tracked.item() == 1.0f);
  const std::vector<float> running_mean = stem.bn.running_mean.to_vector();
  CHECK(running_mean != std::vector<float>(4, 0.0f));
  {
    NoGradGuard no_grad;  // still a training step for the statistics, as in PyTorch
    stem.forward(x);
  }
  CHECK(stem.bn.num_batches_tracked.item() == 2.0f);
  stem.eval();
  const std::vector<float> frozen = stem.bn.running_mean.to_vector();
  const TensorF e1 = stem.forward(x), e2 = stem.forward(x.rows(0, 1));
  CHECK(stem.bn.num_batches_tracked.item() == 2.0f);
  CHECK(stem.bn.running_mean.to_vector() == frozen);
  // Evaluation normalises each image alone: the first image's output does not depend on the others.
  for (int64_t i = 0; i < e2.numel(); ++i) CHECK(e2.data()[i] == doctest::Approx(e1.data()[i]).epsilon(1e-5));

  // Training the stem's parameters: every parameter gets a gradient, the buffers none.
  stem.train();
  ops::sum(stem.forward(x)).backward();
  for (const auto& named : stem.named_parameters()) {
    CAPTURE(named.first);
    CHECK(named.second.grad().defined());
  }
  CHECK_FALSE(stem.bn.running_var.grad().defined());
}

TEST_CASE("nn::BatchNorm2d buffers round-trip through a checkpoint") {
  Generator gen(900);
  TinyStem<float> stem(gen);
  stem.forward(TensorF::uniform({2, 3, 4, 4}, -1.0f, 1.0f, gen));
  const auto dir = std::filesystem::temp_directory_path() / "tessera_conv_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / "stem.safetensors";
  io::save_checkpoint(path, stem, nlohmann::json{{"model", "TinyStem"}}, nullptr, {});
  Generator other_gen(901);
  TinyStem<float> restored(other_gen);
  io::load_checkpoint(path, restored, nlohmann::json{{"model", "TinyStem"}}, nullptr);
  for (const auto& entry : stem.state_dict()) {
    CAPTURE(entry.first);
    CHECK(restored.state_dict().at(entry.first).to_vector() == entry.second.to_vector());
  }
  CHECK(restored.bn.num_batches_tracked.item() == 1.0f);
  std::filesystem::remove_all(dir);
}

TEST_CASE("nn::BatchNorm2d loads PyTorch's integer num_batches_tracked from a plain weights file") {
  // A file as timm / PyTorch write it: float parameters and running statistics, num_batches_tracked an I64 scalar.
  Generator gen(910);
  TinyStem<float> source(gen);
  std::vector<io::SafetensorsEntry> entries;
  for (const auto& [name, tensor] : source.state_dict())
    if (name != "bn.num_batches_tracked") entries.push_back({name, io::TensorBytes(tensor)});
  entries.push_back({"bn.num_batches_tracked", io::TensorBytes(std::vector<int64_t>{7}, std::vector<int64_t>{})});
  const auto dir = std::filesystem::temp_directory_path() / "tessera_conv_test_timm";
  std::filesystem::create_directories(dir);
  const auto path = dir / "timm_like.safetensors";
  io::save_safetensors(path, entries, {});
  Generator other_gen(911);
  TinyStem<float> restored(other_gen);
  const nn::LoadReport report = io::load_model_weights(path, restored);
  CHECK(report.ok());
  CHECK(restored.bn.num_batches_tracked.item() == 7.0f);
  CHECK(restored.conv.weight.to_vector() == source.conv.weight.to_vector());
  std::filesystem::remove_all(dir);
}

TEST_CASE("a conv -> batch norm -> conv stack: gradcheck in double, float bit-identical for 1, 2 and 3 threads") {
  // Through autograd: the gradient of the second convolution flows through the batch statistics into the first.
  auto x = random_input({3, 2, 7, 5}, 950), w1 = random_input({4, 2, 3, 3}, 951), b1 = random_input({4}, 952);
  auto gamma = random_input({4}, 953, 0.5, 1.5), beta = random_input({4}, 954), w2 = random_input({3, 4, 2, 2}, 955);
  auto stack = [](const auto& in) {
    using T = typename std::decay_t<decltype(in[0])>;
    const T h = ops::conv2d(in[0], in[1], in[2], {.padding = {1, 1}});
    const T n = ops::batch_norm(h, in[3], in[4], T(), T());
    return ops::conv2d(n, in[5], T(), {.stride = {2, 2}});
  };
  CHECK_GRADCHECK([&](const Inputs& in) { return stack(in); }, {x, w1, b1, gamma, beta, w2});

  Generator gen(960);
  const std::vector<TensorF> inputs = {
      TensorF::uniform({9, 8, 20, 20}, -1.0f, 1.0f, gen), TensorF::uniform({16, 8, 3, 3}, -0.3f, 0.3f, gen),
      TensorF::uniform({16}, -0.3f, 0.3f, gen),           TensorF::uniform({16}, 0.5f, 1.5f, gen),
      TensorF::uniform({16}, -0.3f, 0.3f, gen),           TensorF::uniform({8, 16, 2, 2}, -0.3f, 0.3f, gen)};
  const TensorF upstream = TensorF::uniform({9, 8, 10, 10}, -1.0f, 1.0f, gen);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    std::vector<TensorF> leaves;
    for (const auto& t : inputs) leaves.push_back(t.clone().set_requires_grad());
    std::vector<float> all;
    with_threads(threads, [&] {
      const TensorF y = stack(leaves);
      y.backward(upstream);
      all = y.to_vector();
    });
    for (const auto& leaf : leaves) {
      const std::vector<float> g = leaf.grad().to_vector();
      all.insert(all.end(), g.begin(), g.end());
    }
    results.push_back(all);
  }
  CHECK(same_bits(results[0], results[1]));
  CHECK(same_bits(results[0], results[2]));
}

namespace {

// The stem of tests/fixtures/make_conv_stem_fixture.py, PyTorch's names.
template <class T>
struct FixtureStem : nn::Module<T> {
  FixtureStem()
      : nn::Module<T>("FixtureStem"),
        conv(3, 8, 3, {.padding = {1, 1}}, false),
        bn(8),
        proj(8, 6, std::array<int64_t, 2>{3, 2}, {.stride = {2, 1}, .padding = {1, 0}}) {
    this->register_module("conv", conv);
    this->register_module("bn", bn);
    this->register_module("proj", proj);
  }
  Tensor<T> forward(const Tensor<T>& x) const { return proj(ops::relu(bn(conv(x)))); }
  nn::Conv2d<T> conv;
  nn::BatchNorm2d<T> bn;
  nn::Conv2d<T> proj;
};

// |got - want| <= tolerance max(1, max |want|) everywhere.
template <class T>
void check_against(const Tensor<T>& got, const TensorD& want, double tolerance, const std::string& what) {
  REQUIRE_MESSAGE(got.shape() == want.shape(), what << ": shape " << got.shape() << " against " << want.shape());
  std::vector<double> got_d(got.data(), got.data() + got.numel());
  int64_t bad = 0;
  double scale = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::fabs(want.data()[i]));
  for (int64_t i = 0; i < want.numel(); ++i)
    if (!(std::fabs(got_d[size_t(i)] - want.data()[i]) <= tolerance * std::max(1.0, scale))) ++bad;
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << want.numel() << " elements differ from PyTorch");
}

template <class T>
void check_pytorch_stem(double tolerance) {
  const auto file =
      io::SafetensorsFile::read(std::filesystem::path(TESSERA_FIXTURES_DIR) / "torch_conv_stem.safetensors");
  auto read = [&](const std::string& name) { return file.tensor<double>(name, io::IntegerDtypes::convert); };
  FixtureStem<T> stem;
  nn::StateDict<T> params;
  for (const auto& [name, tensor] : stem.state_dict())
    params.insert(name, file.tensor<T>("param." + name, io::IntegerDtypes::convert));
  stem.load_state_dict(params);
  const Tensor<T> x = file.tensor<T>("input").set_requires_grad();
  const Tensor<T> y = stem.forward(x);
  check_against(y, read("output"), tolerance, "training output");
  y.backward(file.tensor<T>("upstream"));
  check_against(x.grad(), read("grad.input"), tolerance, "grad.input");
  for (const auto& named : stem.named_parameters())
    check_against(named.second.grad(), read("grad." + named.first), tolerance, "grad." + named.first);
  for (const auto& entry : stem.state_dict())
    check_against(entry.second, read("after." + entry.first), tolerance, "after." + entry.first);
  stem.eval();
  check_against(stem.forward(x), read("eval_output"), tolerance, "eval output");
}

}  // namespace

TEST_CASE("a conv stem against PyTorch: outputs, every gradient, running statistics, eval output") {
  SUBCASE("double") { check_pytorch_stem<double>(1e-12); }
  SUBCASE("float") { check_pytorch_stem<float>(2e-5); }
}
