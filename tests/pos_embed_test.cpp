// nn::resample_abs_pos_embed against timm/PyTorch (tests/fixtures/pos_embed_resample.safetensors, made by
// make_pos_embed_fixture.py: bicubic interpolate, align_corners=False, with and without antialias), the prefix
// (class-token) rows untouched, square-grid inference, resample_pos_embed_in_state_dict, and the errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_helpers.hpp"

#include <tessera/io/safetensors.hpp>
#include <tessera/nn/nn.hpp>
#include <tessera/nn/pos_embed.hpp>

using tessera::Shape;
using tessera::Tensor;
namespace io = tessera::io;
namespace nn = tessera::nn;

namespace {

constexpr double kTolerance = 1e-5;

const io::SafetensorsFile& fixture() {
  static const io::SafetensorsFile file =
      io::SafetensorsFile::read(std::string(TESSERA_FIXTURES_DIR) + "/pos_embed_resample.safetensors");
  return file;
}

struct Case {
  std::string name;
  nn::GridSize old_grid, new_grid;
  int64_t prefix = 1;
  bool antialias = false;
};

std::vector<Case> cases() {
  const auto meta = nlohmann::json::parse(fixture().metadata().at("cases"));
  std::vector<Case> out;
  for (const auto& [name, c] : meta.items())
    out.push_back({name,
                   {c["old_grid"][0].get<int64_t>(), c["old_grid"][1].get<int64_t>()},
                   {c["new_grid"][0].get<int64_t>(), c["new_grid"][1].get<int64_t>()},
                   c["num_prefix_tokens"].get<int64_t>(),
                   c["antialias"].get<bool>()});
  return out;
}

template <class T>
double max_abs_difference(const Tensor<T>& a, const Tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i]));
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
  }
  return worst;
}

Tensor<double> to_double(const Tensor<float>& t) {
  Tensor<double> out(t.shape());
  std::transform(t.data(), t.data() + t.numel(), out.data(), [](float v) { return static_cast<double>(v); });
  return out;
}

}  // namespace

TEST_CASE("resample_abs_pos_embed matches timm's resample_abs_pos_embed (torch bicubic) on every fixture case") {
  const auto all = cases();
  REQUIRE(all.size() == 8);
  int antialiased = 0, nonsquare = 0, shrinking = 0, prefix_variants = 0;
  for (const Case& c : all) {
    CAPTURE(c.name);
    const Tensor<float> input = fixture().tensor<float>(c.name + ".input");
    const Tensor<float> expected = fixture().tensor<float>(c.name + ".output");
    REQUIRE(input.size(1) == c.prefix + c.old_grid.height * c.old_grid.width);
    REQUIRE(expected.size(1) == c.prefix + c.new_grid.height * c.new_grid.width);
    antialiased += c.antialias;
    nonsquare += c.old_grid.height != c.old_grid.width || c.new_grid.height != c.new_grid.width;
    shrinking += c.new_grid.height < c.old_grid.height;
    prefix_variants += c.prefix != 1;

    const Tensor<float> parameter = input.clone().set_requires_grad();
    const Tensor<float> out = nn::resample_abs_pos_embed(parameter, c.new_grid, c.old_grid, c.prefix, c.antialias);
    const double error = max_abs_difference(out, expected);
    MESSAGE(c.name << ": max |tessera - torch| = " << error);
    CHECK(error <= kTolerance);
    // The prefix (class-token) rows are copied bit for bit.
    const int64_t D = input.size(2);
    CHECK(std::equal(input.data(), input.data() + c.prefix * D, out.data()));
    CHECK(!out.requires_grad());

    const Tensor<double> out_double =
        nn::resample_abs_pos_embed(to_double(input), c.new_grid, c.old_grid, c.prefix, c.antialias);
    CHECK(max_abs_difference(out_double, expected) <= kTolerance);
  }
  CHECK(antialiased == 3);
  CHECK(nonsquare >= 2);
  CHECK(shrinking >= 2);
  CHECK(prefix_variants == 2);
}

TEST_CASE("resample_abs_pos_embed: the fixture's plain and antialiased upsampling differ, so the test tells them apart") {
  const Tensor<float> up = fixture().tensor<float>("up_14_24.output");
  const Tensor<float> aa = fixture().tensor<float>("antialias_up_14_24.output");
  CHECK(up.shape() == Shape{1, 577, 8});
  CHECK(max_abs_difference(up, aa) > 1e-3);  // a = -0.75 and a = -0.5 give different values
}

TEST_CASE("resample_abs_pos_embed: square old grid inferred from the token count, same grid is a copy") {
  const Tensor<float> input = fixture().tensor<float>("down_14_8.input");
  const Tensor<float> expected = fixture().tensor<float>("down_14_8.output");
  const Tensor<float> out = nn::resample_abs_pos_embed(input, nn::GridSize{8, 8});
  CHECK(max_abs_difference(out, expected) <= kTolerance);

  const Tensor<float> same = nn::resample_abs_pos_embed(input, nn::GridSize{14, 14});
  CHECK(max_abs_difference(same, input) == 0.0);
  CHECK(!same.shares_storage_with(input));

  // Two prefix tokens, square grid inferred after them.
  const Tensor<float> two = fixture().tensor<float>("two_prefix_4x4_7x7.input");
  CHECK(max_abs_difference(nn::resample_abs_pos_embed(two, nn::GridSize{7, 7}, 2),
                           fixture().tensor<float>("two_prefix_4x4_7x7.output")) <= kTolerance);
}

TEST_CASE("resample_abs_pos_embed: a constant grid stays constant, and upsampling by 1x1 -> n keeps the value") {
  // Bicubic weights sum to 1 per axis, with clamped borders.
  Tensor<double> pe = Tensor<double>::full(Shape{1, 1 + 5 * 3, 4}, 0.25);
  pe.at({0, 0, 0}) = -7.0;
  const Tensor<double> out = nn::resample_abs_pos_embed(pe, nn::GridSize{9, 2}, nn::GridSize{5, 3});
  CHECK(out.shape() == Shape{1, 1 + 18, 4});
  CHECK(out.at({0, 0, 0}) == -7.0);
  for (int64_t i = 4; i < out.numel(); ++i) CHECK(out.data()[i] == doctest::Approx(0.25).epsilon(1e-6));
  for (bool antialias : {false, true}) {
    Tensor<double> one = Tensor<double>::from_vector({1.0, 2.0, 3.5}, Shape{1, 3, 1});  // two prefix, 1x1 grid
    const Tensor<double> big = nn::resample_abs_pos_embed(one, nn::GridSize{4, 6}, nn::GridSize{1, 1}, 2, antialias);
    CHECK(big.size(1) == 2 + 24);
    CHECK(big.data()[0] == 1.0);
    CHECK(big.data()[1] == 2.0);
    for (int64_t i = 2; i < big.numel(); ++i) CHECK(big.data()[i] == doctest::Approx(3.5).epsilon(1e-6));
  }
}

TEST_CASE("resample_abs_pos_embed: errors name the problem") {
  const Tensor<float> pe = Tensor<float>::zeros(Shape{1, 1 + 16, 3});
  auto throws_with = [](auto&& f, const std::string& part) {
    try {
      f();
      FAIL("no exception; expected one mentioning '" << part << "'");
    } catch (const tessera::Error& e) {
      const std::string message = e.what();
      CHECK_MESSAGE(message.find("resample_abs_pos_embed") != std::string::npos, message);
      CHECK_MESSAGE(message.find(part) != std::string::npos, message);
    }
  };
  throws_with([&] { nn::resample_abs_pos_embed(Tensor<float>::zeros(Shape{17, 3}), nn::GridSize{2, 2}); }, "(17, 3)");
  throws_with([&] { nn::resample_abs_pos_embed(Tensor<float>::zeros(Shape{2, 17, 3}), nn::GridSize{2, 2}, nn::GridSize{4, 4}); },
              "(2, 17, 3)");
  throws_with([&] { nn::resample_abs_pos_embed(pe, nn::GridSize{2, 2}, nn::GridSize{3, 5}); }, "3x5");
  throws_with([&] { nn::resample_abs_pos_embed(pe, nn::GridSize{0, 2}, nn::GridSize{4, 4}); }, "positive");
  throws_with([&] { nn::resample_abs_pos_embed(pe, nn::GridSize{2, 2}, nn::GridSize{4, 4}, -1); }, "non-negative");
  throws_with([&] { nn::resample_abs_pos_embed(Tensor<float>::zeros(Shape{1, 1 + 15, 3}), nn::GridSize{2, 2}); },
              "not a square grid");
  throws_with([&] { nn::resample_abs_pos_embed(Tensor<float>(), nn::GridSize{2, 2}, nn::GridSize{4, 4}); }, "undefined");
}

TEST_CASE("resample_pos_embed_in_state_dict fits a checkpoint's pos_embed to another grid, then loads strictly") {
  nn::ViTConfig big;  // 56 / 4 = 14x14 patches
  big.img_size = 56;
  big.patch_size = 4;
  big.num_classes = 3;
  big.embed_dim = 8;
  big.depth = 1;
  big.num_heads = 2;
  nn::ViTConfig small = big;  // 32 / 4 = 8x8 patches
  small.img_size = 32;
  nn::ViTConfig large = big;  // 96 / 4 = 24x24 patches
  large.img_size = 96;

  for (const auto& [config, key] : {std::pair{small, std::string("down_14_8")}, std::pair{large, std::string("up_14_24")}}) {
    const std::string& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
    CAPTURE(name);
    nn::VisionTransformer<float> source(big, 1);
    source.pos_embed.detach().copy_(fixture().tensor<float>(name + ".input"));
    nn::StateDict<float> dict = source.state_dict();
    const std::vector<std::string> names_before = dict.names();
    CHECK(nn::resample_pos_embed_in_state_dict(dict, config));
    CHECK(dict.names() == names_before);  // replaced in place
    CHECK(max_abs_difference(dict.at("pos_embed"), fixture().tensor<float>(name + ".output")) <= kTolerance);
    CHECK(source.pos_embed.shape() == Shape{1, 197, 8});  // the source model is untouched

    nn::VisionTransformer<float> target(config, 2);
    target.load_state_dict(dict);  // strict: every shape now matches
    CHECK(max_abs_difference(target.pos_embed, fixture().tensor<float>(name + ".output")) <= kTolerance);
    // A dict already on the model's grid is left alone.
    const Tensor<float> before = dict.at("pos_embed");
    CHECK(!nn::resample_pos_embed_in_state_dict(dict, config));
    CHECK(dict.at("pos_embed").shares_storage_with(before));
  }

  // A non-square old grid must be given; then it matches the direct call.
  nn::StateDict<float> dict;
  const Tensor<float> nonsquare = fixture().tensor<float>("nonsquare_6x10_9x4.input");
  dict.insert("pos_embed", nonsquare);
  CHECK_THROWS_WITH_AS(nn::resample_pos_embed_in_state_dict(dict, small),
                       doctest::Contains("not a square grid; give old_grid"), tessera::Error);
  CHECK(nn::resample_pos_embed_in_state_dict(dict, small, nn::GridSize{6, 10}));
  CHECK(max_abs_difference(dict.at("pos_embed"),
                           nn::resample_abs_pos_embed(nonsquare, nn::GridSize{8, 8}, nn::GridSize{6, 10})) == 0.0);
  CHECK_THROWS_WITH_AS(nn::resample_pos_embed_in_state_dict(dict, small, nn::GridSize{5, 5}),
                       doctest::Contains("does not match the old grid 5x5"), tessera::Error);

  // Wrong width, and a dict without pos_embed.
  nn::StateDict<float> wide;
  wide.insert("pos_embed", Tensor<float>::zeros(Shape{1, 197, 16}));
  CHECK_THROWS_WITH_AS(nn::resample_pos_embed_in_state_dict(wide, small), doctest::Contains("(1, tokens, 8)"),
                       tessera::Error);
  nn::StateDict<float> empty;
  CHECK(!nn::resample_pos_embed_in_state_dict(empty, small));
}
