// gradchecks, forward values and error tests of the network ops: ops/activation.hpp (gelu, softmax,
// log_softmax), ops/layer_norm.hpp, ops/loss.hpp (cross_entropy) and ops/dropout.hpp.
#include "test_helpers.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>
#include <tessera/ops/activation.hpp>
#include <tessera/ops/dropout.hpp>
#include <tessera/ops/layer_norm.hpp>
#include <tessera/ops/loss.hpp>
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

void check_close(const TensorD& actual, const std::vector<double>& expected, double epsilon = 1e-12) {
  REQUIRE(actual.numel() == static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) CHECK(actual.data()[i] == doctest::Approx(expected[i]).epsilon(epsilon));
}

// Runs f in double and in float on the same values, with the same upstream gradient, and compares the outputs and
// the gradients of every input.
template <class F>
void check_float_matches_double(F f, const std::vector<TensorD>& inputs, double epsilon = 1e-5) {
  std::vector<TensorF> inputs_f;
  for (const auto& x : inputs) inputs_f.push_back(to_float(x).set_requires_grad());
  auto yd = f(inputs);
  auto yf = f(inputs_f);
  REQUIRE(yf.shape() == yd.shape());
  for (int64_t i = 0; i < yd.numel(); ++i) CHECK(yf.data()[i] == doctest::Approx(yd.data()[i]).epsilon(epsilon));
  auto upstream = random_input(yd.shape(), 999).detach();
  yd.backward(upstream);
  yf.backward(to_float(upstream));
  for (size_t k = 0; k < inputs.size(); ++k) {
    CAPTURE(k);
    const auto gd = inputs[k].grad();
    const auto gf = inputs_f[k].grad();
    REQUIRE(gf.defined());
    for (int64_t i = 0; i < gd.numel(); ++i) CHECK(gf.data()[i] == doctest::Approx(gd.data()[i]).epsilon(10 * epsilon));
  }
}

}  // namespace

TEST_CASE("gelu forward values") {
  // Exact-erf GELU x Φ(x) (torch.nn.functional.gelu, approximate="none"), e.g. gelu(1) = Φ(1) = 0.8413447460685429.
  auto x = TensorD::from_vector({-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0});
  const std::vector<double> expected = {-0.00404969409489031, -0.15865525393145702, -0.15426876936299344, 0.0,
                                        0.34573123063700656,  0.841344746068543,    1.9544997361036416};
  check_close(ops::gelu(x), expected);
  auto yf = ops::gelu(to_float(x));
  for (size_t i = 0; i < expected.size(); ++i) CHECK(yf.data()[i] == doctest::Approx(expected[i]).epsilon(1e-6));
}

TEST_CASE("gelu gradcheck and float") {
  for (const Shape& shape : {Shape{65}, Shape{3, 7}, Shape{2, 1, 3}, Shape{}}) {
    CAPTURE(shape.str());
    auto x = random_input(shape, 100, -3.0, 3.0);
    CHECK_GRADCHECK([](const Inputs& in) { return ops::gelu(in[0]); }, {x});
  }
  check_float_matches_double([](const auto& in) { return ops::gelu(in[0]); }, {random_input({7, 65}, 101, -5.0, 5.0)});
}

TEST_CASE("softmax and log_softmax forward values") {
  auto x = TensorD::from_vector({1, 2, 3, -1, 0, 1000}, {2, 3});
  // Row 0: e^{x} / (e + e^2 + e^3); row 1 holds a huge logit, which the max subtraction keeps finite.
  check_close(ops::softmax(x), {0.09003057317038045, 0.2447284710547976, 0.6652409557748218, 0.0, 0.0, 1.0});
  check_close(ops::log_softmax(x),
              {-2.4076059644443806, -1.4076059644443804, -0.4076059644443804, -1001.0, -1000.0, 0.0});
  auto sf = ops::softmax(to_float(x));
  auto lf = ops::log_softmax(to_float(x));
  CHECK(sf.data()[5] == 1.0f);
  CHECK(lf.data()[3] == -1001.0f);
  CHECK(ops::softmax(TensorD::from_vector({4.0})).item() == 1.0);
  CHECK(ops::softmax(TensorD::zeros({3, 0})).shape() == Shape{3, 0});
}

TEST_CASE("softmax and log_softmax gradcheck and float") {
  for (const Shape& shape : {Shape{7}, Shape{3, 7}, Shape{2, 3, 65}, Shape{5, 1}, Shape{1, 1}}) {
    CAPTURE(shape.str());
    auto x = random_input(shape, 110, -3.0, 3.0);
    CHECK_GRADCHECK([](const Inputs& in) { return ops::softmax(in[0]); }, {x});
    CHECK_GRADCHECK([](const Inputs& in) { return ops::log_softmax(in[0]); }, {x});
  }
  check_float_matches_double([](const auto& in) { return ops::softmax(in[0]); }, {random_input({7, 65}, 111, -4, 4)});
  check_float_matches_double([](const auto& in) { return ops::log_softmax(in[0]); },
                             {random_input({3, 2, 97}, 112, -4, 4)});
}

TEST_CASE("layer_norm forward values") {
  auto x = TensorD::from_vector({1, 2, 4, 5, 0, 0, 0, 0}, {2, 4});
  auto w = TensorD::from_vector({1, 2, 0.5, -1}), b = TensorD::from_vector({0, 1, 0, -1});
  // Row 0: mean 3, variance 2.5, so xhat = (x - 3) / sqrt(2.5 + 1e-5); row 1 is constant, so xhat = 0.
  const double s = 1.0 / std::sqrt(2.5 + 1e-5);
  check_close(ops::layer_norm(x), {-2 * s, -s, s, 2 * s, 0, 0, 0, 0});
  check_close(ops::layer_norm(x, w, b), {-2 * s, 1 - 2 * s, 0.5 * s, -1 - 2 * s, 0, 1, 0, -1});
  check_close(ops::layer_norm(x, w, b),
              {-1.264908534252813, -0.264908534252813, 0.31622713356320326, -2.264908534252813, 0, 1, 0, -1});
  check_close(ops::layer_norm(x, TensorD(), TensorD(), 0.0).rows(0, 1), {-2 / std::sqrt(2.5), -1 / std::sqrt(2.5),
                                                                         1 / std::sqrt(2.5), 2 / std::sqrt(2.5)});
}

TEST_CASE("layer_norm gradcheck and float") {
  struct Case {
    Shape x;
    bool weight, bias;
  };
  const std::vector<Case> cases = {{{3, 7}, true, true}, {{2, 3, 65}, true, true}, {{7}, true, false},
                                   {{5, 3}, false, true}, {{3, 1, 7}, false, false}, {{3, 1}, true, true}};
  uint64_t seed = 120;
  for (const auto& c : cases) {
    CAPTURE(c.x.str());
    CAPTURE(c.weight);
    CAPTURE(c.bias);
    const int64_t C = c.x[c.x.rank() - 1];
    Inputs in = {random_input(c.x, seed++, -2.0, 2.0)};
    in.push_back(c.weight ? random_input({C}, seed++, 0.5, 1.5) : TensorD());
    in.push_back(c.bias ? random_input({C}, seed++) : TensorD());
    Inputs defined;
    for (const auto& t : in)
      if (t.defined()) defined.push_back(t);
    const bool weight = c.weight, bias = c.bias;
    CHECK_GRADCHECK(
        [weight, bias](const Inputs& v) {
          size_t next = 1;
          const TensorD w = weight ? v[next++] : TensorD();
          const TensorD b = bias ? v[next++] : TensorD();
          return ops::layer_norm(v[0], w, b);
        },
        defined);
  }
  // A weight that needs no gradient: x and bias still get theirs, the weight none.
  auto x = random_input({3, 7}, 133), constant_weight = TensorD::normal({7}), bias = random_input({7}, 134);
  CHECK_GRADCHECK([](const Inputs& v) { return ops::layer_norm(v[0], v[1], v[2]); }, {x, constant_weight, bias});
  CHECK_FALSE(constant_weight.grad().defined());

  check_float_matches_double([](const auto& in) { return ops::layer_norm(in[0], in[1], in[2]); },
                             {random_input({7, 65}, 130, -3, 3), random_input({65}, 131), random_input({65}, 132)},
                             1e-4);
}

TEST_CASE("cross_entropy forward values") {
  auto logits = TensorD::from_vector({1, 2, 3, 1, 0, -1}, {2, 3});
  const std::vector<int64_t> targets = {2, 0};
  // Both rows: -log softmax at the target = log(1 + e^-1 + e^-2) = 0.40760596444438.
  auto loss = ops::cross_entropy(logits, targets);
  CHECK(loss.shape() == Shape{});
  CHECK(loss.item() == doctest::Approx(0.4076059644443804).epsilon(1e-12));
  // Smoothing 0.1: 0.9 * 0.40760596 + (0.1 / 3) * (2.40760596 + 1.40760596 + 0.40760596) = 0.50760596.
  CHECK(ops::cross_entropy(logits, targets, 0.1).item() == doctest::Approx(0.5076059644443804).epsilon(1e-12));
  CHECK(ops::cross_entropy(to_float(logits), targets, 0.1).item() == doctest::Approx(0.5076059644443804).epsilon(1e-6));
  const int64_t raw[] = {2, 0};
  CHECK(ops::cross_entropy(logits, std::span<const int64_t>(raw)).item() == loss.item());
}

TEST_CASE("cross_entropy matches PyTorch on the timm fixture") {
  // The fixture's header is JSON; logits are F32 (4, 10), labels I64 (4), loss values F32 (1).
  const std::string path = std::string(TESSERA_SHARED_DIR) + "/fixtures/timm_vit_p4_d96.safetensors";
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "cannot open ", path);
  uint64_t header_size = 0;
  file.read(reinterpret_cast<char*>(&header_size), sizeof header_size);
  std::string header(header_size, ' ');
  file.read(header.data(), static_cast<std::streamsize>(header_size));
  const auto json = nlohmann::json::parse(header);
  auto read_bytes = [&](const std::string& key) {
    const auto offsets = json.at(key).at("data_offsets");
    const uint64_t begin = offsets[0], end = offsets[1];
    std::string bytes(end - begin, '\0');
    file.seekg(static_cast<std::streamoff>(8 + header_size + begin));
    file.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return bytes;
  };
  REQUIRE(json.at("logits").at("shape") == nlohmann::json::array({4, 10}));
  const std::string logit_bytes = read_bytes("logits"), label_bytes = read_bytes("labels");
  std::vector<float> logit_values(40);
  std::vector<int64_t> labels(4);
  std::memcpy(logit_values.data(), logit_bytes.data(), logit_bytes.size());
  std::memcpy(labels.data(), label_bytes.data(), label_bytes.size());
  float loss = 0, smoothed = 0;
  std::memcpy(&loss, read_bytes("loss").data(), sizeof loss);
  std::memcpy(&smoothed, read_bytes("loss_label_smoothing_0.1").data(), sizeof smoothed);

  auto logits = TensorF::from_vector(logit_values, {4, 10});
  CHECK(ops::cross_entropy(logits, labels).item() == doctest::Approx(loss).epsilon(1e-6));
  CHECK(ops::cross_entropy(logits, labels, 0.1).item() == doctest::Approx(smoothed).epsilon(1e-6));
  std::vector<double> logit_doubles(logit_values.begin(), logit_values.end());
  CHECK(ops::cross_entropy(TensorD::from_vector(logit_doubles, {4, 10}), labels, 0.1).item() ==
        doctest::Approx(smoothed).epsilon(1e-6));
}

TEST_CASE("cross_entropy gradcheck and float") {
  struct Case {
    Shape logits;
    std::vector<int64_t> targets;
    double smoothing;
  };
  const std::vector<Case> cases = {{{3, 7}, {6, 0, 3}, 0.0},
                                   {{3, 7}, {6, 0, 3}, 0.1},
                                   {{1, 1}, {0}, 0.0},
                                   {{7, 65}, {0, 64, 3, 3, 10, 20, 64}, 0.2},
                                   {{2, 5}, {1, 4}, 1.0}};
  uint64_t seed = 140;
  for (const auto& c : cases) {
    CAPTURE(c.logits.str());
    CAPTURE(c.smoothing);
    auto logits = random_input(c.logits, seed++, -3.0, 3.0);
    CHECK_GRADCHECK([&c](const Inputs& in) { return ops::cross_entropy(in[0], c.targets, c.smoothing); }, {logits});
  }
  const std::vector<int64_t> targets = {0, 96, 5, 5, 40, 1, 2};
  check_float_matches_double([&](const auto& in) { return ops::cross_entropy(in[0], targets, 0.1); },
                             {random_input({7, 97}, 150, -4, 4)});
}

TEST_CASE("the ops compose: a two-layer classifier gradchecks end to end") {
  // linear -> layer_norm -> gelu -> linear -> cross_entropy, every parameter checked.
  Inputs params = {random_input({5, 3, 7}, 160), random_input({6, 7}, 161), random_input({6}, 162),
                   random_input({6}, 163, 0.5, 1.5), random_input({6}, 164), random_input({4, 6}, 165),
                   random_input({4}, 166)};
  const std::vector<int64_t> targets = {0, 3, 1, 2, 2, 0, 3, 1, 1, 0, 2, 3, 0, 0, 1};
  CHECK_GRADCHECK(
      [&targets](const Inputs& p) {
        auto h = ops::gelu(ops::layer_norm(ops::linear(p[0], p[1], p[2]), p[3], p[4]));
        auto logits = ops::linear(h, p[5], p[6]);
        return ops::cross_entropy(ops::reshape(logits, {15, 4}), targets, 0.1);
      },
      params);
}

TEST_CASE("activation, layer_norm and cross_entropy errors name the op and the shapes") {
  CHECK_THROWS_WITH_AS(ops::softmax(TensorD::from_vector({1.0}, {})),
                       doctest::Contains("softmax: needs a tensor of rank >= 1 (it works over the last dimension), got shape ()"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::log_softmax(TensorD::from_vector({1.0}, {})), doctest::Contains("log_softmax"), Error);

  auto x = TensorD::zeros({2, 4});
  CHECK_THROWS_WITH_AS(ops::layer_norm(x, TensorD::ones({3})),
                       doctest::Contains("layer_norm: weight of shape (3) does not match input of shape (2, 4) (expected (4))"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::layer_norm(x, TensorD::ones({4}), TensorD::ones({4, 1})),
                       doctest::Contains("layer_norm: bias of shape (4, 1)"), Error);
  CHECK_THROWS_WITH_AS(ops::layer_norm(x, TensorD(), TensorD(), -1.0), doctest::Contains("layer_norm: eps must be >= 0"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::layer_norm(TensorD::from_vector({1.0}, {})), doctest::Contains("layer_norm: needs"), Error);

  auto logits = TensorD::zeros({3, 10});
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, std::vector<int64_t>{1, 10, 2}),
                       doctest::Contains("cross_entropy: target 10 at position 1 is out of range for 10 classes (logits shape (3, 10))"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, std::vector<int64_t>{1, -1, 2}), doctest::Contains("target -1"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, std::vector<int64_t>{1, 2}),
                       doctest::Contains("cross_entropy: 2 targets given for logits of shape (3, 10) (expected 3)"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(TensorD::zeros({3, 10, 1}), std::vector<int64_t>{1, 2, 3}),
                       doctest::Contains("cross_entropy: logits must be (batch, classes), got shape (3, 10, 1)"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(TensorD::zeros({0, 10}), std::vector<int64_t>{}),
                       doctest::Contains("cross_entropy: logits of shape (0, 10) are empty"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, std::vector<int64_t>{1, 2, 3}, 1.5),
                       doctest::Contains("cross_entropy: label_smoothing must be in [0, 1], got 1.5"), Error);
}

TEST_CASE("dropout is the identity when not training or p == 0") {
  auto x = random_input({3, 7}, 1);
  Generator gen(5);
  auto eval = ops::dropout(x, 0.5, false, gen);
  CHECK(eval.shares_storage_with(x));
  CHECK(eval.to_vector() == x.to_vector());
  CHECK(ops::dropout(x, 0.0, true, gen).to_vector() == x.to_vector());
  // Neither drew from the generator.
  Generator fresh(5);
  CHECK(gen.next_u64() == fresh.next_u64());
}

TEST_CASE("dropout zeroes about p of the elements and scales the rest by 1/(1-p)") {
  auto x = TensorD::ones({100, 65});
  for (double p : {0.1, 0.5, 0.9}) {
    CAPTURE(p);
    Generator gen(7);
    auto y = ops::dropout(x, p, true, gen);
    int64_t kept = 0;
    bool values_ok = true;
    for (int64_t i = 0; i < y.numel(); ++i) {
      if (y.data()[i] != 0.0) {
        ++kept;
        values_ok = values_ok && y.data()[i] == 1.0 / (1.0 - p);
      }
    }
    CHECK(values_ok);
    const double kept_fraction = static_cast<double>(kept) / static_cast<double>(y.numel());
    CHECK(kept_fraction == doctest::Approx(1.0 - p).epsilon(0.05));
  }
}

TEST_CASE("dropout masks are reproducible from the seed, the same in float and double") {
  auto x = random_input({7, 65}, 2);
  Generator g1(11), g2(11), g3(12), gf(11);
  auto a = ops::dropout(x, 0.3, true, g1), b = ops::dropout(x, 0.3, true, g2), c = ops::dropout(x, 0.3, true, g3);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  const TensorF xf = to_float(x);
  auto af = ops::dropout(xf, 0.3, true, gf);
  for (int64_t i = 0; i < a.numel(); ++i) CHECK(af.data()[i] == doctest::Approx(a.data()[i]).epsilon(1e-6));
}

TEST_CASE("dropout gradcheck") {
  // Each evaluation reseeds, so every call of f uses the same mask.
  auto x = random_input({3, 1, 65}, 3);
  CHECK_GRADCHECK([](const Inputs& in) {
    Generator gen(21);
    return ops::dropout(in[0], 0.4, true, gen);
  }, {x});
  // The gradient is the mask: 0 where dropped, 1/(1-p) where kept.
  auto y = random_input({7, 3}, 4);
  Generator gen(22);
  auto out = ops::dropout(y, 0.5, true, gen);
  out.backward(TensorD::ones(out.shape()));
  for (int64_t i = 0; i < y.numel(); ++i) CHECK(y.grad().data()[i] == (out.data()[i] == 0.0 ? 0.0 : 2.0));
}

TEST_CASE("dropout rejects p outside [0, 1)") {
  auto x = TensorD::zeros({2, 3});
  Generator gen(1);
  CHECK_THROWS_WITH_AS(ops::dropout(x, 1.0, true, gen),
                       doctest::Contains("dropout: probability p must be in [0, 1), got 1 (input shape (2, 3))"), Error);
  CHECK_THROWS_WITH_AS(ops::dropout(x, -0.1, true, gen), doctest::Contains("got -0.1"), Error);
  CHECK_THROWS_WITH_AS(ops::dropout(x, 1.5, false, gen), doctest::Contains("dropout"), Error);
  CHECK_THROWS_AS(ops::dropout(x, std::nan(""), true, gen), Error);
}
