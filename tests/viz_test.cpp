// viz: class-token attention maps and attention rollout against plain re-computations from the timm fixture's
// attention probabilities (../shared/fixtures/timm_vit_p4_d96.safetensors, attn.<block>), the same from a
// VisionTransformer, colour maps, bilinear upsampling, heatmap and head-grid pictures, the overlay, the bitmap font,
// colour bars, titles and head numbers, PNG files read back with stb_image, and the errors; then models without a
// class token: patch-mean maps and rollout against values worked out by hand, a ViT with a conv stem and average
// pooling, sequence pooling's weights.
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/data/image.hpp>
#include <tessera/data/transforms.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/nn/nn.hpp>
#include <tessera/viz/viz.hpp>

using tessera::Shape;
using tessera::Tensor;
namespace data = tessera::data;
namespace fs = std::filesystem;
namespace io = tessera::io;
namespace nn = tessera::nn;
namespace viz = tessera::viz;

namespace {

const io::SafetensorsFile& fixture() {
  static const io::SafetensorsFile file =
      io::SafetensorsFile::read(std::string(TESSERA_SHARED_DIR) + "/fixtures/timm_vit_p4_d96.safetensors");
  return file;
}

std::vector<Tensor<float>> fixture_attention() {
  std::vector<Tensor<float>> probs;
  for (int i = 0; fixture().contains("attn." + std::to_string(i)); ++i)
    probs.push_back(fixture().tensor<float>("attn." + std::to_string(i)));
  return probs;
}

// P[b, h, i, j] of a (B, H, N, N) tensor, in double.
double prob(const Tensor<float>& p, int64_t b, int64_t h, int64_t i, int64_t j) {
  return static_cast<double>(p.at({b, h, i, j}));
}

using Matrix = std::vector<std::vector<double>>;

// The rollout of RolloutOptions written out plainly: fuse heads, add the residual, renormalise rows, multiply.
Matrix plain_rollout(const std::vector<Tensor<float>>& probs, int64_t b, viz::HeadFusion fusion, double residual) {
  const int64_t H = probs[0].size(1), N = probs[0].size(2);
  Matrix joint(N, std::vector<double>(N, 0.0));
  for (int64_t i = 0; i < N; ++i) joint[i][i] = 1.0;
  for (const auto& p : probs) {
    Matrix a(N, std::vector<double>(N));
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        std::vector<double> heads;
        for (int64_t h = 0; h < H; ++h) heads.push_back(prob(p, b, h, i, j));
        double fused = 0.0;
        if (fusion == viz::HeadFusion::mean) {
          for (double v : heads) fused += v;
          fused /= static_cast<double>(H);
        } else if (fusion == viz::HeadFusion::max) {
          fused = *std::max_element(heads.begin(), heads.end());
        } else {
          fused = *std::min_element(heads.begin(), heads.end());
        }
        a[i][j] = (1.0 - residual) * fused + (i == j ? residual : 0.0);
      }
      double sum = 0.0;
      for (double v : a[i]) sum += v;
      for (double& v : a[i]) v /= sum;
    }
    Matrix next(N, std::vector<double>(N, 0.0));
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < N; ++k)
        for (int64_t j = 0; j < N; ++j) next[i][j] += a[i][k] * joint[k][j];
    joint = next;
  }
  return joint;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device entropy;
    path = fs::temp_directory_path() / ("tessera_viz_test_" + std::to_string(entropy()) + std::to_string(entropy()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

data::Image random_image(int64_t height, int64_t width, int64_t channels, uint32_t seed) {
  std::mt19937 gen(seed);
  data::Image image(height, width, channels);
  for (auto& p : image.pixels) p = static_cast<uint8_t>(gen() & 0xff);
  return image;
}

nn::ViTConfig fixture_config() { return nn::ViTConfig::from_json_string(fixture().metadata().at("config")); }

// Copies the timm fixture's parameters into `model` (built from fixture_config()).
void load_fixture_parameters(nn::VisionTransformer<float>& model) {
  for (const auto& [name, tensor] : model.state_dict()) fixture().read_into("param." + name, tensor);
}

template <class F>
void check_throws_with(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL("no exception; expected one mentioning '" << parts.front() << "'");
  } catch (const tessera::Error& e) {
    const std::string message = e.what();
    for (const auto& part : parts) CHECK_MESSAGE(message.find(part) != std::string::npos, message);
  }
}

}  // namespace

TEST_CASE("cls_attention_map: per head and fused maps equal the class-token rows of the fixture's probabilities") {
  const auto probs = fixture_attention();
  REQUIRE(probs.size() == 3);
  REQUIRE(probs[0].shape() == Shape{4, 3, 65, 65});
  for (int64_t layer = 0; layer < 3; ++layer)
    for (int64_t b = 0; b < 4; ++b) {
      CAPTURE(layer);
      CAPTURE(b);
      const Tensor<float>& p = probs[static_cast<size_t>(layer)];
      const Tensor<float> all = viz::cls_attention_maps(probs, layer, b);
      REQUIRE(all.shape() == Shape{3, 8, 8});
      for (int64_t h = 0; h < 3; ++h) {
        const Tensor<float> map = viz::cls_attention_map(probs, layer, h, b);
        REQUIRE(map.shape() == Shape{8, 8});
        bool same = true, stacked = true;
        for (int64_t y = 0; y < 8; ++y)
          for (int64_t x = 0; x < 8; ++x) {
            same &= map.at({y, x}) == p.at({b, h, 0, 1 + y * 8 + x});
            stacked &= all.at({h, y, x}) == map.at({y, x});
          }
        CHECK(same);
        CHECK(stacked);
      }
      const Tensor<float> mean = viz::mean_cls_attention_map(probs, layer, b);
      const Tensor<float> mx = viz::fused_cls_attention_map(p, viz::HeadFusion::max, b);
      const Tensor<float> mn = viz::fused_cls_attention_map(p, viz::HeadFusion::min, b);
      double worst = 0.0, sum = 0.0;
      bool extremes = true;
      for (int64_t k = 1; k < 65; ++k) {
        const double m = (prob(p, b, 0, 0, k) + prob(p, b, 1, 0, k) + prob(p, b, 2, 0, k)) / 3.0;
        const double a = std::max({prob(p, b, 0, 0, k), prob(p, b, 1, 0, k), prob(p, b, 2, 0, k)});
        const double c = std::min({prob(p, b, 0, 0, k), prob(p, b, 1, 0, k), prob(p, b, 2, 0, k)});
        const int64_t y = (k - 1) / 8, x = (k - 1) % 8;
        worst = std::max(worst, std::abs(mean.at({y, x}) - m));
        extremes &= mx.at({y, x}) == static_cast<float>(a) && mn.at({y, x}) == static_cast<float>(c);
        sum += mean.at({y, x});
      }
      CHECK(worst <= 1e-7);
      CHECK(extremes);
      // The patches' share of the class token's attention: 1 minus its attention to itself.
      const double self = (prob(p, b, 0, 0, 0) + prob(p, b, 1, 0, 0) + prob(p, b, 2, 0, 0)) / 3.0;
      CHECK(sum + self == doctest::Approx(1.0).epsilon(1e-5));
    }
}

TEST_CASE("attention_rollout equals the plain product of residual-added, renormalised, head-fused attention") {
  const auto probs = fixture_attention();
  struct Variant {
    viz::HeadFusion fusion;
    double residual;
  };
  for (const Variant v : {Variant{viz::HeadFusion::mean, 0.5}, Variant{viz::HeadFusion::max, 0.5},
                          Variant{viz::HeadFusion::min, 0.5}, Variant{viz::HeadFusion::mean, 0.0},
                          Variant{viz::HeadFusion::max, 0.25}})
    for (int64_t b : {0, 3}) {
      CAPTURE(static_cast<int>(v.fusion));
      CAPTURE(v.residual);
      CAPTURE(b);
      const viz::RolloutOptions options{v.fusion, v.residual};
      const Matrix expected = plain_rollout(probs, b, v.fusion, v.residual);
      const Tensor<float> matrix = viz::attention_rollout_matrix(probs, b, options);
      const Tensor<float> map = viz::attention_rollout(probs, b, options);
      REQUIRE(matrix.shape() == Shape{65, 65});
      REQUIRE(map.shape() == Shape{8, 8});
      double worst_matrix = 0.0, worst_map = 0.0, worst_row_sum = 0.0;
      for (int64_t i = 0; i < 65; ++i) {
        double row_sum = 0.0;
        for (int64_t j = 0; j < 65; ++j) {
          worst_matrix = std::max(worst_matrix, std::abs(matrix.at({i, j}) - expected[i][j]));
          row_sum += matrix.at({i, j});
        }
        worst_row_sum = std::max(worst_row_sum, std::abs(row_sum - 1.0));
      }
      double map_sum = 0.0;
      for (int64_t k = 1; k < 65; ++k) {
        worst_map = std::max(worst_map, std::abs(map.at({(k - 1) / 8, (k - 1) % 8}) - expected[0][k]));
        map_sum += map.at({(k - 1) / 8, (k - 1) % 8});
      }
      CHECK(worst_matrix <= 1e-6);
      CHECK(worst_map <= 1e-6);
      CHECK(worst_row_sum <= 1e-5);
      CHECK(map_sum + expected[0][0] == doctest::Approx(1.0).epsilon(1e-5));
    }
}

TEST_CASE("attention_rollout of one block is (1 - residual) times its mean class-token map; order of blocks matters") {
  const auto probs = fixture_attention();
  const Tensor<float> single = viz::attention_rollout(std::vector<Tensor<float>>{probs[1]}, 2);
  const Tensor<float> mean = viz::mean_cls_attention_map(probs[1], 2);
  for (int64_t k = 0; k < 64; ++k) CHECK(single.data()[k] == doctest::Approx(0.5 * mean.data()[k]).epsilon(1e-6));
  // Later blocks multiply on the left: reversing the blocks changes the map.
  const Tensor<float> forward = viz::attention_rollout(probs, 0);
  const Tensor<float> reversed = viz::attention_rollout(std::vector<Tensor<float>>{probs[2], probs[1], probs[0]}, 0);
  double difference = 0.0;
  for (int64_t k = 0; k < 64; ++k) difference = std::max(difference, std::abs(double(forward.data()[k]) - reversed.data()[k]));
  CHECK(difference > 1e-4);
}

TEST_CASE("attention maps: errors for wrong shapes, non-square grids and out-of-range layer, head or image") {
  const auto probs = fixture_attention();
  check_throws_with([&] { viz::cls_attention_map(Tensor<float>::zeros(Shape{3, 65, 65}), 0); },
                    {"cls_attention_map", "(batch, heads, tokens, tokens)", "(3, 65, 65)"});
  check_throws_with([&] { viz::cls_attention_map(Tensor<float>::zeros(Shape{1, 3, 65, 64}), 0); }, {"(1, 3, 65, 64)"});
  check_throws_with([&] { viz::cls_attention_maps(Tensor<float>::zeros(Shape{1, 3, 66, 66})); },
                    {"cls_attention_maps", "65 patch tokens do not form a square grid"});
  check_throws_with([&] { viz::mean_cls_attention_map(Tensor<float>::zeros(Shape{1, 3, 1, 1})); }, {"no patch tokens"});
  check_throws_with([&] { viz::cls_attention_map(probs, 0, 3); }, {"cls_attention_map", "head 3", "3 heads"});
  check_throws_with([&] { viz::cls_attention_map(probs, 0, -1); }, {"head -1"});
  check_throws_with([&] { viz::cls_attention_map(probs, 3, 0); }, {"cls_attention_map", "layer 3", "3 layers"});
  check_throws_with([&] { viz::mean_cls_attention_map(probs, -1); }, {"layer -1"});
  check_throws_with([&] { viz::cls_attention_maps(probs, 0, 4); }, {"image 4", "batch of 4"});
  check_throws_with([&] { viz::cls_attention_map(Tensor<float>(), 0); }, {"undefined", "set_keep_attention"});
  check_throws_with([&] { viz::attention_rollout(std::vector<Tensor<float>>{}); }, {"attention_rollout", "no attention layers"});
  check_throws_with(
      [&] { viz::attention_rollout(probs, 0, viz::RolloutOptions{viz::HeadFusion::mean, 1.5, std::nullopt}); },
      {"residual must be in [0, 1]"});
  check_throws_with([&] { viz::attention_rollout(probs, 5); }, {"image 5"});
  check_throws_with(
      [&] { viz::attention_rollout_matrix(std::vector<Tensor<float>>{probs[0], Tensor<float>::zeros(Shape{4, 3, 17, 17})}); },
      {"attention_rollout_matrix", "layer 1", "(4, 3, 17, 17)"});
  check_throws_with([&] { viz::attention_rollout(std::vector<Tensor<float>>{Tensor<float>::zeros(Shape{1, 2, 5, 5})}, 0,
                                                 viz::RolloutOptions{viz::HeadFusion::mean, 0.0, std::nullopt}); },
                    {"row 0", "cannot be renormalised"});
}

TEST_CASE("record_attention runs the model's own forward, restores its mode, and feeds the convenience overloads") {
  nn::VisionTransformer<float> model(fixture_config(), 0);
  load_fixture_parameters(model);
  const Tensor<float> input = fixture().tensor<float>("input");
  const auto reference = fixture_attention();
  model.train();
  const auto probs = viz::record_attention(model, input);
  REQUIRE(probs.size() == reference.size());
  for (size_t i = 0; i < probs.size(); ++i) {
    REQUIRE(probs[i].shape() == reference[i].shape());
    double worst = 0.0;
    for (int64_t k = 0; k < probs[i].numel(); ++k)
      worst = std::max(worst, std::abs(double(probs[i].data()[k]) - reference[i].data()[k]));
    CHECK(worst <= 1e-5);
  }
  CHECK(model.is_training());
  for (const auto& block : model.blocks) {
    CHECK(!block->attn.keeps_attention());
    CHECK(!block->attn.attention_probs().defined());
  }
  model.eval();
  model.set_keep_attention(true);
  viz::record_attention(model, input);
  CHECK(!model.is_training());
  for (const auto& block : model.blocks) CHECK(block->attn.keeps_attention());
  model.set_keep_attention(false);

  // One image through its preprocessing gives what the hand-made input tensor gives.
  const data::Image image = random_image(32, 32, 3, 11);
  const data::Compose preprocess{data::ToTensor(), data::Normalize({0.5f, 0.4f, 0.3f}, {0.25f, 0.2f, 0.3f})};
  Tensor<float> by_hand(Shape{1, 3, 32, 32});
  const float mean[3] = {0.5f, 0.4f, 0.3f}, stdev[3] = {0.25f, 0.2f, 0.3f};
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 32; ++x)
        by_hand.at({0, c, y, x}) = (static_cast<float>(image.at(y, x, c)) / 255.0f - mean[c]) / stdev[c];
  const auto expected = viz::record_attention(model, by_hand);
  const auto from_image = viz::record_attention(model, image, preprocess);
  for (size_t i = 0; i < expected.size(); ++i)
    CHECK(std::equal(expected[i].data(), expected[i].data() + expected[i].numel(), from_image[i].data()));
  const Tensor<float> head_map = viz::cls_attention_map(model, image, preprocess, 2, 1);
  const Tensor<float> head_expected = viz::cls_attention_map(expected, 2, 1);
  CHECK(std::equal(head_map.data(), head_map.data() + 64, head_expected.data()));
  const Tensor<float> mean_map = viz::mean_cls_attention_map(model, image, preprocess, 0);
  const Tensor<float> mean_expected = viz::mean_cls_attention_map(expected, 0);
  CHECK(std::equal(mean_map.data(), mean_map.data() + 64, mean_expected.data()));
  const Tensor<float> rollout = viz::attention_rollout(model, image, preprocess);
  const Tensor<float> rollout_expected = viz::attention_rollout(expected);
  CHECK(std::equal(rollout.data(), rollout.data() + 64, rollout_expected.data()));

  TempDir dir;
  viz::write_attention_heatmap_png(dir.path / "head.png", model, image, preprocess, 2, 1);
  viz::write_rollout_heatmap_png(dir.path / "rollout.png", model, image, preprocess);
  viz::write_head_grid_png(dir.path / "grid.png", model, image, preprocess, 1);
  CHECK(data::decode_image(dir.path / "head.png").pixels == viz::heatmap_image(head_expected, image).pixels);
  CHECK(data::decode_image(dir.path / "rollout.png").pixels == viz::heatmap_image(rollout_expected, image).pixels);
  CHECK(data::decode_image(dir.path / "grid.png").pixels ==
        viz::head_grid_image(viz::cls_attention_maps(expected, 1), image).pixels);

  check_throws_with([&] { viz::cls_attention_map(model, image, preprocess, 3, 0); },
                    {"cls_attention_map", "layer 3", "3 blocks"});
  check_throws_with([&] { viz::cls_attention_map(model, image, preprocess, 0, 3); }, {"head 3", "3 heads"});
  check_throws_with([&] { viz::write_head_grid_png(dir.path / "x.png", model, image, preprocess, 7); }, {"layer 7"});
  check_throws_with([&] { viz::record_attention(model, random_image(16, 16, 3, 1), preprocess); },
                    {"record_attention", "(batch, 3, 32, 32)", "(1, 3, 16, 16)"});
  CHECK(!fs::exists(dir.path / "x.png"));
}

TEST_CASE("colour maps: known end colours, clamping, and viridis/inferno brighten monotonically") {
  CHECK(viz::colormap_color(viz::Colormap::viridis, 0.0) == viz::Rgb{68, 1, 84});
  CHECK(viz::colormap_color(viz::Colormap::viridis, 1.0) == viz::Rgb{253, 231, 37});
  CHECK(viz::colormap_color(viz::Colormap::inferno, 0.0) == viz::Rgb{0, 0, 4});
  CHECK(viz::colormap_color(viz::Colormap::inferno, 1.0) == viz::Rgb{252, 255, 164});
  CHECK(viz::colormap_color(viz::Colormap::jet, 0.0) == viz::Rgb{0, 0, 128});
  CHECK(viz::colormap_color(viz::Colormap::jet, 1.0) == viz::Rgb{128, 0, 0});
  CHECK(viz::colormap_color(viz::Colormap::jet, 0.5) == viz::Rgb{123, 255, 123});
  CHECK(viz::colormap_color(viz::Colormap::viridis, -3.0) == viz::colormap_color(viz::Colormap::viridis, 0.0));
  CHECK(viz::colormap_color(viz::Colormap::inferno, 7.0) == viz::colormap_color(viz::Colormap::inferno, 1.0));
  // Halfway between the stops at 4/9 and 5/9.
  CHECK(viz::colormap_color(viz::Colormap::viridis, 0.5) == viz::Rgb{0x23, 0x90, 0x8c});
  for (viz::Colormap map : {viz::Colormap::viridis, viz::Colormap::inferno}) {
    double previous = -1.0;
    bool increasing = true;
    for (int i = 0; i <= 200; ++i) {
      const viz::Rgb c = viz::colormap_color(map, i / 200.0);
      const double luminance = 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b;
      increasing &= luminance > previous - 0.5;  // rounding to bytes may tie
      previous = luminance;
    }
    CHECK_MESSAGE(increasing, viz::colormap_name(map));
  }
  check_throws_with([] { viz::colormap_color(viz::Colormap::jet, std::nan("")); }, {"colormap_color", "NaN", "jet"});
}

TEST_CASE("upsample_bilinear matches torch's interpolate(bilinear, align_corners=False)") {
  const Tensor<float> a = Tensor<float>::from_vector({0, 1, 2, 3}, Shape{2, 2});
  const Tensor<double> up = viz::upsample_bilinear(a, 4, 4);
  const std::vector<double> expected = {0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3};
  for (int64_t i = 0; i < 16; ++i) CHECK(up.data()[i] == doctest::Approx(expected[static_cast<size_t>(i)]).epsilon(1e-12));
  // torch.tensor([[0, 1, 5], [2, 3, -1]]) to (3, 7).
  const Tensor<double> b = viz::upsample_bilinear(Tensor<double>::from_vector({0, 1, 5, 2, 3, -1}, Shape{2, 3}), 3, 7);
  const std::vector<double> expected_b = {0, 1 / 7.0, 4 / 7.0, 1, 19 / 7.0, 31 / 7.0, 5,  1, 8 / 7.0, 11 / 7.0, 2,
                                          2, 2,       2,       2, 15 / 7.0, 18 / 7.0, 3, 9 / 7.0, -3 / 7.0, -1};
  for (int64_t i = 0; i < 21; ++i) CHECK(b.data()[i] == doctest::Approx(expected_b[static_cast<size_t>(i)]).epsilon(1e-12));
  check_throws_with([&] { viz::upsample_bilinear(a, 0, 4); }, {"upsample_bilinear", "positive"});
  check_throws_with([&] { viz::upsample_bilinear(Tensor<float>::zeros(Shape{4}), 2, 2); }, {"upsample_bilinear", "(4)"});
}

TEST_CASE("heatmap_image, uniform overlay: enlarged image, hot region coloured, cold region the cold colour blended") {
  data::Image grey(32, 32, 3, 100);
  Tensor<float> map = Tensor<float>::zeros(Shape{8, 8});
  map.at({2, 5}) = 1.0f;
  viz::HeatmapOptions uniform;
  uniform.overlay = viz::Overlay::uniform;
  uniform.alpha = 0.5;
  const data::Image picture = viz::heatmap_image(map, grey, uniform);  // inferno, alpha 0.5, at least 224 px
  REQUIRE(picture.height == 224);
  REQUIRE(picture.width == 224);
  REQUIRE(picture.channels == 3);
  // Far from the hot cell: t = 0, inferno's (0, 0, 4) half over grey 100.
  CHECK(picture.at(0, 0, 0) == 50);
  CHECK(picture.at(0, 0, 1) == 50);
  CHECK(picture.at(0, 0, 2) == 52);
  CHECK(picture.at(223, 10, 0) == 50);
  // The centre of the hot cell (row 2, column 5 of 28-pixel cells): nearly the hot end (252, 255, 164).
  const int64_t y = 2 * 28 + 14, x = 5 * 28 + 14;
  CHECK(picture.at(y, x, 0) > 160);
  CHECK(picture.at(y, x, 1) > 160);
  CHECK(picture.at(y, x, 0) != 100);
  const viz::Rgb hot = viz::colormap_color(viz::Colormap::inferno, viz::upsample_bilinear(map, 224, 224).at({y, x}));
  CHECK(picture.at(y, x, 0) == static_cast<uint8_t>(std::lround(0.5 * 100 + 0.5 * hot.r)));
  CHECK(picture.at(y, x, 2) == static_cast<uint8_t>(std::lround(0.5 * 100 + 0.5 * hot.b)));
  // Differences concentrate over the hot cell.
  int64_t changed_inside = 0, changed_outside = 0;
  for (int64_t r = 0; r < 224; ++r)
    for (int64_t c = 0; c < 224; ++c) {
      const bool inside = r / 28 == 2 && c / 28 == 5;
      const bool changed = picture.at(r, c, 0) != 50;
      (inside ? changed_inside : changed_outside) += changed;
    }
  CHECK(changed_inside == 28 * 28);
  CHECK(changed_outside < 4 * 28 * 28);

  // alpha 0 keeps the (enlarged) image; alpha 1 is the colour map alone; a grey-scale image; a non-square image.
  viz::HeatmapOptions options = uniform;
  options.alpha = 0.0;
  options.min_size = 64;
  const data::Image image = random_image(20, 30, 3, 5);
  const data::Image kept = viz::heatmap_image(map, image, options);
  REQUIRE(kept.height == 80);  // factor ceil(64 / 20) = 4
  REQUIRE(kept.width == 120);
  bool nearest = true;
  for (int64_t r = 0; r < 80; ++r)
    for (int64_t c = 0; c < 120; ++c)
      for (int64_t k = 0; k < 3; ++k) nearest &= kept.at(r, c, k) == image.at(r / 4, c / 4, k);
  CHECK(nearest);
  options.alpha = 1.0;
  options.colormap = viz::Colormap::viridis;
  const data::Image colour = viz::heatmap_image(map, data::Image(20, 30, 1, 7), options);
  CHECK(colour.channels == 3);
  CHECK(viz::Rgb{colour.at(0, 0, 0), colour.at(0, 0, 1), colour.at(0, 0, 2)} == viz::Rgb{68, 1, 84});
  // Explicit value range: 1 is mid-range of [0, 2], so the hot cell stays far from the hot end.
  options.value_min = 0.0;
  options.value_max = 2.0;
  const data::Image ranged = viz::heatmap_image(map, data::Image(32, 32, 3), options);
  REQUIRE(ranged.height == 64);  // factor ceil(64 / 32) = 2: the hot cell's centre (y, x) of 224 pixels scaled to 64
  CHECK(ranged.at(y * 64 / 224, x * 64 / 224, 1) < 231);
  // A constant map is all cold.
  options.value_min.reset();
  options.value_max.reset();
  const data::Image flat = viz::heatmap_image(Tensor<float>::full(Shape{3, 3}, 0.7f), data::Image(4, 4, 4), options);
  CHECK(flat.height == 64);
  CHECK(viz::Rgb{flat.at(63, 63, 0), flat.at(63, 63, 1), flat.at(63, 63, 2)} == viz::Rgb{68, 1, 84});
}

TEST_CASE("head_grid_image: one panel per head, each the head's heatmap, gaps in the background colour") {
  const auto probs = fixture_attention();
  const Tensor<float> maps = viz::cls_attention_maps(probs, 2, 1);  // (3, 8, 8)
  const data::Image image = random_image(32, 32, 3, 9);
  viz::HeadGridOptions options;
  const data::Image grid = viz::head_grid_image(maps, image, options);
  // 2 columns (ceil(sqrt(3))), 2 rows of 224-pixel panels, 4-pixel gaps.
  REQUIRE(grid.height == 2 * 224 + 3 * 4);
  REQUIRE(grid.width == 2 * 224 + 3 * 4);
  for (int64_t head = 0; head < 3; ++head) {
    CAPTURE(head);
    const data::Image panel = viz::heatmap_image(viz::cls_attention_map(probs, 2, head, 1), image);
    const int64_t top = 4 + (head / 2) * 228, left = 4 + (head % 2) * 228;
    bool same = true;
    for (int64_t r = 0; r < 224; ++r)
      for (int64_t c = 0; c < 224; ++c)
        for (int64_t k = 0; k < 3; ++k) same &= grid.at(top + r, left + c, k) == panel.at(r, c, k);
    CHECK(same);
  }
  auto white = [&](int64_t r, int64_t c) {
    return grid.at(r, c, 0) == 255 && grid.at(r, c, 1) == 255 && grid.at(r, c, 2) == 255;
  };
  CHECK(white(0, 0));
  CHECK(white(230, 100));           // the gap between the rows
  CHECK(white(100, 229));           // the gap between the columns
  CHECK(white(300, 300));           // the empty fourth cell
  CHECK(white(459, 459));

  // A shared scale equals each panel drawn with the global minimum and maximum.
  options.shared_scale = true;
  options.columns = 3;
  options.gap = 0;
  const data::Image shared = viz::head_grid_image(maps, image, options);
  REQUIRE(shared.height == 224);
  REQUIRE(shared.width == 3 * 224);
  viz::HeatmapOptions global;
  global.value_min = *std::min_element(maps.data(), maps.data() + maps.numel());
  global.value_max = *std::max_element(maps.data(), maps.data() + maps.numel());
  const data::Image last = viz::heatmap_image(viz::cls_attention_map(probs, 2, 2, 1), image, global);
  bool same = true;
  for (int64_t r = 0; r < 224; ++r)
    for (int64_t c = 0; c < 224; ++c) same &= shared.at(r, 448 + c, 0) == last.at(r, c, 0);
  CHECK(same);
  check_throws_with([&] { viz::head_grid_image(Tensor<float>::zeros(Shape{8, 8}), image); },
                    {"head_grid_image", "(heads, height, width)", "(8, 8)"});
  options.columns = -1;
  check_throws_with([&] { viz::head_grid_image(maps, image, options); }, {"columns"});
}

namespace {

// The glyphs of a few characters as the font is meant to draw them (5x7, '#' lit), written out here from the design.
const std::vector<std::string> kGlyphOne = {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."};
const std::vector<std::string> kGlyphH = {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"};
const std::vector<std::string> kGlyphQuestion = {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."};

bool is_colour(const data::Image& image, int64_t y, int64_t x, viz::Rgb c) {
  return image.at(y, x, 0) == c.r && image.at(y, x, 1) == c.g && image.at(y, x, 2) == c.b;
}

// Every (row, column) where `text`, drawn in black at `scale` on white, appears in `picture` exactly (the glyph
// pixels black, the other pixels of its box white).
std::vector<std::pair<int64_t, int64_t>> find_text(const data::Image& picture, const std::string& text,
                                                   int64_t scale = 1) {
  const int64_t h = viz::text_height(scale), w = viz::text_width(text, scale);
  data::Image patch(h, w, 3, 255);
  viz::draw_text(patch, 0, 0, text, viz::Rgb{0, 0, 0}, scale);
  std::vector<std::pair<int64_t, int64_t>> found;
  for (int64_t y = 0; y + h <= picture.height; ++y)
    for (int64_t x = 0; x + w <= picture.width; ++x) {
      bool same = true;
      for (int64_t r = 0; r < h && same; ++r)
        same = std::equal(patch.data() + r * w * 3, patch.data() + (r + 1) * w * 3,
                          picture.data() + ((y + r) * picture.width + x) * 3);
      if (same) found.emplace_back(y, x);
    }
  return found;
}

}  // namespace

TEST_CASE("text: the 5x7 font's glyphs land where expected, at any scale, clipped at the edges") {
  CHECK(viz::text_width("", 1) == 0);
  CHECK(viz::text_width("a", 1) == 5);
  CHECK(viz::text_width("ab", 1) == 11);
  CHECK(viz::text_width("ab", 3) == 33);
  CHECK(viz::text_height(2) == 14);

  // "1" at (2, 3), scale 1: exactly the glyph's lit pixels turn black, nothing else changes.
  const viz::Rgb black{0, 0, 0}, white{255, 255, 255};
  data::Image canvas(12, 12, 3, 255);
  viz::draw_text(canvas, 2, 3, "1", black);
  bool exact = true;
  for (int64_t y = 0; y < 12; ++y)
    for (int64_t x = 0; x < 12; ++x) {
      const bool in_box = y >= 2 && y < 9 && x >= 3 && x < 8;
      const bool lit = in_box && kGlyphOne[static_cast<size_t>(y - 2)][static_cast<size_t>(x - 3)] == '#';
      exact &= is_colour(canvas, y, x, lit ? black : white);
    }
  CHECK(exact);

  // "H" at scale 2 in red: every font pixel a 2x2 square; a character outside ' '..'~' is drawn as '?'.
  data::Image big(16, 24, 3, 255);
  viz::draw_text(big, 1, 0, "H\x01", viz::Rgb{200, 0, 0}, 2);
  bool squares = true;
  for (int64_t y = 0; y < 14; ++y)
    for (int64_t x = 0; x < 10; ++x) {
      const bool h_lit = kGlyphH[static_cast<size_t>(y / 2)][static_cast<size_t>(x / 2)] == '#';
      const bool q_lit = kGlyphQuestion[static_cast<size_t>(y / 2)][static_cast<size_t>(x / 2)] == '#';
      squares &= is_colour(big, 1 + y, x, h_lit ? viz::Rgb{200, 0, 0} : white);
      squares &= is_colour(big, 1 + y, 12 + x, q_lit ? viz::Rgb{200, 0, 0} : white);
    }
  CHECK(squares);
  CHECK(is_colour(big, 0, 0, white));    // the row above the text
  CHECK(is_colour(big, 15, 23, white));  // below and right of it

  // Clipped: "1" starting 3 rows above and 2 columns left of the canvas draws the rest of the glyph only.
  data::Image corner(5, 4, 3, 255);
  viz::draw_text(corner, -3, -2, "1", black);
  bool clipped = true;
  for (int64_t y = 0; y < 5; ++y)
    for (int64_t x = 0; x < 3; ++x)
      clipped &= is_colour(corner, y, x,
                           y + 3 < 7 && kGlyphOne[static_cast<size_t>(y + 3)][static_cast<size_t>(x + 2)] == '#'
                               ? black
                               : white);
  CHECK(clipped);

  // Grey canvases get the colour's luma, an alpha channel becomes opaque.
  data::Image grey(7, 5, 2, 0);
  viz::draw_text(grey, 0, 0, "H", viz::Rgb{255, 0, 0});
  CHECK(grey.at(0, 0, 0) == 76);  // 0.299 * 255
  CHECK(grey.at(0, 0, 1) == 255);
  CHECK(grey.at(0, 1, 1) == 0);

  // Every printable character but the space lights something; digits and letters are all different glyphs.
  std::vector<std::string> bitmaps;
  for (char c = ' '; c <= '~'; ++c) {
    std::string bits;
    for (int64_t y = 0; y < viz::kGlyphHeight; ++y)
      for (int64_t x = 0; x < viz::kGlyphWidth; ++x) bits += viz::glyph_pixel(c, x, y) ? '#' : '.';
    CHECK_MESSAGE((bits.find('#') != std::string::npos) == (c != ' '), "character '" << c << "'");
    if (std::isalnum(static_cast<unsigned char>(c))) bitmaps.push_back(bits);
  }
  REQUIRE(bitmaps.size() == 62);
  std::sort(bitmaps.begin(), bitmaps.end());
  CHECK(std::unique(bitmaps.begin(), bitmaps.end()) == bitmaps.end());
  check_throws_with([&] { viz::draw_text(canvas, 0, 0, "x", black, 0); }, {"draw_text", "scale"});
}

TEST_CASE("colour bar: spans the colour map, hot end on top; its labels print hi, the middle and lo") {
  for (viz::Colormap map : {viz::Colormap::inferno, viz::Colormap::viridis, viz::Colormap::jet}) {
    CAPTURE(viz::colormap_name(map));
    const data::Image bar = viz::colorbar_image(map, 50, 6);
    REQUIRE(bar.height == 50);
    REQUIRE(bar.width == 6);
    bool rows_match = true;
    for (int64_t r = 0; r < 50; ++r)
      for (int64_t x = 0; x < 6; ++x) rows_match &= is_colour(bar, r, x, viz::colormap_color(map, 1.0 - r / 49.0));
    CHECK(rows_match);
  }
  const data::Image inferno = viz::colorbar_image(viz::Colormap::inferno, 50, 6);
  CHECK(is_colour(inferno, 0, 0, viz::Rgb{252, 255, 164}));  // the hot end on top
  CHECK(is_colour(inferno, 49, 5, viz::Rgb{0, 0, 4}));       // the cold end at the bottom
  CHECK(is_colour(viz::colorbar_image(viz::Colormap::inferno, 1, 3), 0, 2, viz::Rgb{252, 255, 164}));
  check_throws_with([] { viz::colorbar_image(viz::Colormap::inferno, 0, 4); }, {"colorbar_image", "0x4"});

  using Labels = std::array<std::string, 3>;
  CHECK(viz::colorbar_labels(0.0, 0.5) == Labels{"0.5", "0.25", "0"});
  CHECK(viz::colorbar_labels(-1.0, 1.0) == Labels{"1", "0", "-1"});
  CHECK(viz::colorbar_labels(0.0612, 0.0732) == Labels{"0.0732", "0.0672", "0.0612"});
  // Close values get more digits until the three labels differ.
  CHECK(viz::colorbar_labels(0.06012, 0.06016) == Labels{"0.06016", "0.06014", "0.06012"});
  CHECK(viz::colorbar_labels(0.060121, 0.060125) == Labels{"0.060125", "0.060123", "0.060121"});
  CHECK(viz::colorbar_labels(2.0, 2.0) == Labels{"2", "2", "2"});
  CHECK(viz::colorbar_labels(1e-5, 3e-5) == Labels{"3e-05", "2e-05", "1e-05"});
}

TEST_CASE("by-value overlay: low values keep the photo exactly, opacity grows with the value, a diffuse map barely "
          "tints") {
  const data::Image image = random_image(8, 8, 3, 21);
  Tensor<float> map = Tensor<float>::zeros(Shape{4, 4});
  map.at({0, 0}) = 1.0f;
  viz::HeatmapOptions options;  // by_value, alpha 0.7 are the defaults
  REQUIRE(options.overlay == viz::Overlay::by_value);
  options.min_size = 32;
  const data::Image picture = viz::heatmap_image(map, image, options);
  REQUIRE(picture.height == 32);
  const Tensor<double> up = viz::upsample_bilinear(map, 32, 32);
  int64_t untouched = 0;
  bool expected_everywhere = true, photo_where_zero = true;
  for (int64_t y = 0; y < 32; ++y)
    for (int64_t x = 0; x < 32; ++x) {
      const double t = up.at({y, x});  // lo = 0, hi = 1: t is the value; contrast (1 - 0) / 1 = 1
      const viz::Rgb c = viz::colormap_color(viz::Colormap::inferno, t);
      const double colour[3] = {double(c.r), double(c.g), double(c.b)};
      for (int64_t k = 0; k < 3; ++k) {
        const double base = image.at(y / 4, x / 4, k), a = 0.7 * t;
        const auto expected = static_cast<uint8_t>(std::lround((1 - a) * base + a * colour[k]));
        expected_everywhere &= picture.at(y, x, k) == expected;
        if (t == 0.0) photo_where_zero &= picture.at(y, x, k) == image.at(y / 4, x / 4, k);
      }
      untouched += t == 0.0;
    }
  CHECK(expected_everywhere);
  CHECK(photo_where_zero);
  CHECK(untouched > 32 * 32 / 2);  // the hot cell's bilinear footprint is under a quarter of the picture

  // A diffuse map, values in [0.060, 0.066]: contrast 0.006 / 0.066, so no channel moves by more than
  // 0.7 * 0.091 * 255 < 17 levels; the uniform overlay darkens a mid-grey photo by far more.
  std::mt19937 gen(5);
  Tensor<float> diffuse(Shape{4, 4});
  for (int64_t i = 0; i < 16; ++i) diffuse.data()[i] = 0.060f + 0.006f * static_cast<float>(gen() % 1001) / 1000.0f;
  diffuse.data()[3] = 0.060f;
  diffuse.data()[9] = 0.066f;
  const data::Image mid(8, 8, 3, 128);
  auto largest_change = [&](const data::Image& drawn) {
    int largest = 0;
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 32; ++x)
        for (int64_t k = 0; k < 3; ++k) largest = std::max(largest, std::abs(int(drawn.at(y, x, k)) - 128));
    return largest;
  };
  CHECK(largest_change(viz::heatmap_image(diffuse, mid, options)) <= 17);
  viz::HeatmapOptions uniform = options;
  uniform.overlay = viz::Overlay::uniform;
  CHECK(largest_change(viz::heatmap_image(diffuse, mid, uniform)) >= 80);  // 0.7 of inferno's black at the cold end
}

TEST_CASE("annotated heatmap: title lines above, the heatmap, its colour bar with three labels, a white margin") {
  const data::Image image = random_image(16, 16, 3, 4);
  Tensor<float> map(Shape{4, 4});
  for (int64_t i = 0; i < 16; ++i) map.data()[i] = 0.5f * static_cast<float>(i) / 15.0f;  // lo 0, hi 0.5
  viz::HeatmapOptions options;
  options.min_size = 64;  // 64-pixel heatmap: text scale 1
  const data::Image bare = viz::heatmap_image(map, image, options);
  options.title = "layer 5, head 0\nmean attention";
  options.colorbar = true;
  const data::Image picture = viz::heatmap_image(map, image, options);
  // Margin 4, two title lines of 10, the 64-pixel heatmap; right of it the colour bar block: 3 + 8 (bar) + 2 (ticks)
  // + 1 + the widest label "0.25" (23 pixels) = 37; the first title line (89 pixels) is narrower than 64 + 37.
  REQUIRE(picture.height == 4 + 20 + 64 + 4);
  REQUIRE(picture.width == 4 + 64 + 37 + 4);
  bool heatmap_same = true;
  for (int64_t y = 0; y < 64; ++y)
    for (int64_t x = 0; x < 64; ++x)
      for (int64_t k = 0; k < 3; ++k) heatmap_same &= picture.at(24 + y, 4 + x, k) == bare.at(y, x, k);
  CHECK(heatmap_same);
  // The title: the rows above the heatmap are white but for the two lines, at (4, 4) and (14, 4).
  data::Image title(24, picture.width, 3, 255);
  viz::draw_text(title, 4, 4, "layer 5, head 0", viz::Rgb{0, 0, 0});
  viz::draw_text(title, 14, 4, "mean attention", viz::Rgb{0, 0, 0});
  CHECK(std::equal(title.pixels.begin(), title.pixels.end(), picture.pixels.begin()));
  // The bar, 3 pixels right of the heatmap: hot on the heatmap's first row, cold on its last.
  const int64_t bar_x = 4 + 64 + 3 + 4;
  CHECK(is_colour(picture, 24, bar_x, viz::colormap_color(viz::Colormap::inferno, 1.0)));
  CHECK(is_colour(picture, 24 + 63, bar_x, viz::colormap_color(viz::Colormap::inferno, 0.0)));
  CHECK(is_colour(picture, 24 + 32, bar_x, viz::colormap_color(viz::Colormap::inferno, 1.0 - 32.0 / 63.0)));
  // The labels right of the bar: 0.5 level with the top, 0.25 in the middle, 0 at the bottom.
  const auto top = find_text(picture, "0.5"), middle = find_text(picture, "0.25");
  REQUIRE(top.size() == 1);
  REQUIRE(middle.size() == 1);
  CHECK(top[0].first == 24);
  CHECK(top[0].second > bar_x);
  CHECK(std::abs(middle[0].first + 3 - (24 + 32)) <= 1);
  bool zero_at_bottom = false;
  for (const auto& [y, x] : find_text(picture, "0")) zero_at_bottom |= y == 24 + 64 - 7 && x == top[0].second;
  CHECK(zero_at_bottom);
  CHECK(is_colour(picture, 0, 0, viz::Rgb{255, 255, 255}));
  CHECK(is_colour(picture, picture.height - 1, picture.width - 1, viz::Rgb{255, 255, 255}));
  // A scale of 2 doubles the text and margins.
  options.text_scale = 2;
  const data::Image doubled = viz::heatmap_image(map, image, options);
  CHECK(doubled.height == 8 + 40 + 64 + 8);
  CHECK(find_text(doubled, "0.25", 2).size() == 1);
  options.text_scale = -1;
  check_throws_with([&] { viz::heatmap_image(map, image, options); }, {"text_scale"});
}

TEST_CASE("annotated head grid: a title, the head's number above each panel, each panel's own colour bar") {
  const data::Image image = random_image(16, 16, 3, 8);
  Tensor<float> maps(Shape{3, 4, 4});
  for (int64_t h = 0; h < 3; ++h)
    for (int64_t i = 0; i < 16; ++i)
      maps.data()[h * 16 + i] = static_cast<float>(h + 1) * static_cast<float>((i * 7 + h) % 16) / 16.0f;
  viz::HeadGridOptions options;
  options.heatmap.min_size = 64;
  options.columns = 3;
  options.head_numbers = true;
  options.heatmap.colorbar = true;
  options.heatmap.title = "layer 1: mean attention received";
  const data::Image grid = viz::head_grid_image(maps, image, options);
  CHECK(find_text(grid, "layer 1: mean attention received") == std::vector<std::pair<int64_t, int64_t>>{{4, 4}});
  int64_t previous_left = -1;
  for (int64_t h = 0; h < 3; ++h) {
    CAPTURE(h);
    const auto label = find_text(grid, "head " + std::to_string(h));
    REQUIRE(label.size() == 1);
    const auto [label_y, label_x] = label[0];
    CHECK(label_y == 4 + 10);  // below the gap and the title line (7 pixels and 3 below)
    CHECK(label_x > previous_left);
    previous_left = label_x;
    // The panel 10 pixels below its number is the head's heatmap.
    const Tensor<float> head_map = maps.rows(h, 1).view(Shape{4, 4});
    viz::HeatmapOptions panel_options;
    panel_options.min_size = 64;
    const data::Image panel = viz::heatmap_image(head_map, image, panel_options);
    bool same = true;
    for (int64_t y = 0; y < 64; ++y)
      for (int64_t x = 0; x < 64; ++x)
        for (int64_t k = 0; k < 3; ++k) same &= grid.at(label_y + 10 + y, label_x + x, k) == panel.at(y, x, k);
    CHECK(same);
    // Its own range's top label right of its bar: head 2's maximum is 3 * 15 / 16.
    const std::string hi = viz::colorbar_labels(0.0, (h + 1) * 15.0 / 16.0)[0];
    bool found = false;
    for (const auto& [y, x] : find_text(grid, hi))
      found |= y == label_y + 10 && x > label_x + 64 && x < label_x + 64 + 20;
    CHECK_MESSAGE(found, hi);
  }
  CHECK(viz::colorbar_labels(0.0, 3 * 15.0 / 16.0)[0] == "2.81");
}

TEST_CASE("PNG files: written atomically, read back by stb_image with the right size and pixels") {
  TempDir dir;
  for (int64_t channels : {1, 2, 3, 4}) {
    CAPTURE(channels);
    const data::Image image = random_image(5, 7, channels, static_cast<uint32_t>(channels));
    const fs::path path = dir.path / ("image" + std::to_string(channels) + ".png");
    viz::write_png(path, image);
    const data::Image back = data::decode_image(path, static_cast<int>(channels));
    CHECK(back.height == 5);
    CHECK(back.width == 7);
    CHECK(back.pixels == image.pixels);
    const std::vector<uint8_t> bytes = viz::encode_png(image);
    CHECK(data::decode_image(bytes.data(), bytes.size(), "memory", static_cast<int>(channels)).pixels == image.pixels);
  }
  // The heatmap file is the heatmap picture.
  Tensor<double> map = Tensor<double>::zeros(Shape{4, 4});
  map.at({1, 2}) = 3.0;
  const data::Image image = random_image(32, 32, 3, 3);
  viz::write_heatmap_png(dir.path / "heatmap.png", map, image);
  const data::Image heatmap = data::decode_image(dir.path / "heatmap.png");
  CHECK(heatmap.height == 224);
  CHECK(heatmap.width == 224);
  CHECK(heatmap.pixels == viz::heatmap_image(map, image).pixels);
  viz::write_head_grid_png(dir.path / "grid.png", Tensor<double>::zeros(Shape{2, 4, 4}), image);
  CHECK(data::decode_image(dir.path / "grid.png").width == 2 * 224 + 3 * 4);
  // Only the finished files are left in the folder (no temporaries).
  int64_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    CHECK(entry.path().extension() == ".png");
    ++files;
  }
  CHECK(files == 6);
}

TEST_CASE("PNG and heatmap errors name the operation, the size or the file") {
  TempDir dir;
  const data::Image image(4, 4, 3);
  check_throws_with([&] { viz::encode_png(data::Image(4, 4, 5)); }, {"encode_png", "1 to 4 channels", "4x4x5"});
  check_throws_with([&] { viz::encode_png(data::Image(0, 4, 3)); }, {"encode_png", "empty"});
  data::Image broken(4, 4, 3);
  broken.pixels.resize(10);
  check_throws_with([&] { viz::encode_png(broken); }, {"encode_png", "holds 10 bytes, expected 48"});
  const fs::path missing = dir.path / "no_such_folder" / "a.png";
  check_throws_with([&] { viz::write_png(missing, image); }, {"write_png", missing.string(), "does not exist"});
  check_throws_with([&] { viz::write_png(dir.path, image); }, {"write_png", "is a directory"});
  check_throws_with([&] { viz::write_heatmap_png(missing, Tensor<float>::zeros(Shape{2, 2}), image); },
                    {"write_png", missing.string()});

  const Tensor<float> map = Tensor<float>::zeros(Shape{2, 2});
  check_throws_with([&] { viz::heatmap_image(Tensor<float>::zeros(Shape{1, 2, 2}), image); },
                    {"heatmap_image", "(height, width)", "(1, 2, 2)"});
  Tensor<float> nan_map = Tensor<float>::zeros(Shape{2, 2});
  nan_map.at({1, 0}) = std::nanf("");
  check_throws_with([&] { viz::heatmap_image(nan_map, image); }, {"heatmap_image", "non-finite", "flat index 2"});
  check_throws_with([&] { viz::heatmap_image(map, data::Image(0, 0, 3)); }, {"heatmap_image", "empty"});
  viz::HeatmapOptions options;
  options.alpha = 1.5;
  check_throws_with([&] { viz::heatmap_image(map, image, options); }, {"alpha must be in [0, 1]"});
  options.alpha = 0.5;
  options.min_size = 0;
  check_throws_with([&] { viz::heatmap_image(map, image, options); }, {"min_size"});
  options.min_size = 224;
  options.value_min = 1.0;
  options.value_max = 1.0;
  check_throws_with([&] { viz::heatmap_image(map, image, options); }, {"value_min", "below value_max"});
  options.value_max.reset();
  check_throws_with([&] { viz::heatmap_image(map, image, options); }, {"value range [1, 0] is empty"});
  options.value_min.reset();
  options.min_size = 1 << 20;
  check_throws_with([&] { viz::heatmap_image(map, image, options); }, {"heatmap_image", "too large"});
}

// ---- models without a class token: the mean of the patch rows (AttentionQuery::patch_mean) ---------------------

namespace {

// A (B, H, N, N) tensor from rows written out: rows[b][h][i] is row i of head h of image b.
Tensor<float> attention_from_rows(const std::vector<std::vector<Matrix>>& rows) {
  const auto B = static_cast<int64_t>(rows.size()), H = static_cast<int64_t>(rows[0].size()),
             N = static_cast<int64_t>(rows[0][0].size());
  Tensor<float> p(Shape{B, H, N, N});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) p.at({b, h, i, j}) = static_cast<float>(rows[b][h][i][j]);
  return p;
}

void check_map(const Tensor<float>& map, const std::vector<double>& expected, double tolerance = 1e-7) {
  REQUIRE(map.numel() == static_cast<int64_t>(expected.size()));
  for (size_t k = 0; k < expected.size(); ++k)
    CHECK_MESSAGE(std::abs(double(map.data()[k]) - expected[k]) <= tolerance, "entry " << k << ": " << map.data()[k]
                                                                                       << " vs " << expected[k]);
}

// Two images, two heads, four tokens (a 2x2 grid) and no class token. Image 1's rows are chosen so that the column
// means below are exact sums of a few decimals; image 0 is uniform.
Tensor<float> small_attention() {
  const Matrix uniform(4, std::vector<double>(4, 0.25));
  const Matrix head0 = {{0.1, 0.2, 0.3, 0.4}, {0.4, 0.3, 0.2, 0.1}, {0.25, 0.25, 0.25, 0.25}, {0.0, 0.5, 0.5, 0.0}};
  const Matrix head1 = {{0.7, 0.1, 0.1, 0.1}, {0.1, 0.7, 0.1, 0.1}, {0.1, 0.1, 0.7, 0.1}, {0.6, 0.2, 0.1, 0.1}};
  return attention_from_rows({{uniform, uniform}, {head0, head1}});
}

}  // namespace

TEST_CASE("patch_mean maps are the column means over the patch rows (the mean attention each patch receives)") {
  const Tensor<float> probs = small_attention();
  const auto query = viz::AttentionQuery::patch_mean(0);
  // Column means by hand: head 0 (0.1+0.4+0.25+0)/4 = 0.1875, (0.2+0.3+0.25+0.5)/4 = 0.3125, ...
  const std::vector<double> head0 = {0.1875, 0.3125, 0.3125, 0.1875}, head1 = {0.375, 0.275, 0.25, 0.1};
  const Tensor<float> m0 = viz::attention_map(probs, 0, 1, query), m1 = viz::attention_map(probs, 1, 1, query);
  CHECK(m0.shape() == Shape{2, 2});
  check_map(m0, head0);
  check_map(m1, head1);
  const Tensor<float> both = viz::attention_maps(probs, 1, query);
  CHECK(both.shape() == Shape{2, 2, 2});
  check_map(both, {0.1875, 0.3125, 0.3125, 0.1875, 0.375, 0.275, 0.25, 0.1});
  check_map(viz::mean_attention_map(probs, 1, query), {0.28125, 0.29375, 0.28125, 0.14375});
  check_map(viz::fused_attention_map(probs, viz::HeadFusion::max, 1, query), {0.375, 0.3125, 0.3125, 0.1875});
  check_map(viz::fused_attention_map(probs, viz::HeadFusion::min, 1, query), {0.1875, 0.275, 0.25, 0.1});
  check_map(viz::attention_map(probs, 1, 0, query), {0.25, 0.25, 0.25, 0.25});  // image 0 is uniform
  // Without prefix tokens every map sums to 1: the patches receive all the attention.
  double sum = 0.0;
  for (int64_t k = 0; k < 4; ++k) sum += m1.data()[k];
  CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
  // Per-layer overloads pick the block.
  const std::vector<Tensor<float>> layers = {small_attention(), probs};
  check_map(viz::attention_map(layers, 1, 1, 1, query), head1);
  check_map(viz::mean_attention_map(layers, 0, 1, query), {0.28125, 0.29375, 0.28125, 0.14375});

  // Weighted patch queries (as sequence pooling weights them): 0.1 q0 + 0.2 q1 + 0.3 q2 + 0.4 q3 of head 0.
  const auto weighted = viz::AttentionQuery::patch_mean(0, {0.1, 0.2, 0.3, 0.4});
  check_map(viz::attention_map(probs, 0, 1, weighted), {0.165, 0.355, 0.345, 0.135});
  // B * P weights: image by image (image 1's are the second four).
  const auto per_image = viz::AttentionQuery::patch_mean(0, {1.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4});
  check_map(viz::attention_map(probs, 0, 1, per_image), {0.165, 0.355, 0.345, 0.135});
  check_map(viz::attention_map(probs, 0, 0, per_image), {0.25, 0.25, 0.25, 0.25});
}

TEST_CASE("patch_mean after a class token skips the class token's row and column; class_token reads row 0") {
  const Matrix rows = {{0.5, 0.1, 0.2, 0.1, 0.1},
                       {0.2, 0.2, 0.2, 0.2, 0.2},
                       {0.6, 0.1, 0.1, 0.1, 0.1},
                       {0.0, 0.4, 0.3, 0.2, 0.1},
                       {0.2, 0.0, 0.0, 0.0, 0.8}};
  const Tensor<float> probs = attention_from_rows({{rows}});
  // (0.2+0.1+0.4+0)/4, (0.2+0.1+0.3+0)/4, (0.2+0.1+0.2+0)/4, (0.2+0.1+0.1+0.8)/4; the class token receives the rest.
  check_map(viz::attention_map(probs, 0, 0, viz::AttentionQuery::patch_mean(1)), {0.175, 0.15, 0.125, 0.3});
  check_map(viz::attention_map(probs, 0, 0, viz::AttentionQuery::class_token()), {0.1, 0.2, 0.1, 0.1});
  // The class-token query is the default and what the cls_* functions read, value for value.
  const Tensor<float> fixture_probs = fixture_attention()[1];
  for (int64_t b = 0; b < fixture_probs.size(0); ++b) {
    const Tensor<float> a = viz::attention_maps(fixture_probs, b), c = viz::cls_attention_maps(fixture_probs, b);
    CHECK(std::equal(a.data(), a.data() + a.numel(), c.data()));
    const Tensor<float> fa = viz::mean_attention_map(fixture_probs, b), fc = viz::mean_cls_attention_map(fixture_probs, b);
    CHECK(std::equal(fa.data(), fa.data() + fa.numel(), fc.data()));
  }
}

TEST_CASE("attention_rollout without a class token: the mean of the patch rows of R, by hand for 2 blocks of 4 tokens") {
  // Block 0 attends within the pairs {0, 1} and {2, 3}; block 1 sends everything to token 3. With residual 0.5:
  //   Â0 rows (.75 .25 0 0) (.25 .75 0 0) (0 0 .75 .25) (0 0 .25 .75)
  //   Â1 rows (.5 0 0 .5) (0 .5 0 .5) (0 0 .5 .5) (0 0 0 1)
  //   w = (1/4, 1/4, 1/4, 1/4); wᵀÂ1 = (.125 .125 .125 .625); times Â0 = (.125 .125 .25 .5).
  const Matrix block0 = {{0.5, 0.5, 0.0, 0.0}, {0.5, 0.5, 0.0, 0.0}, {0.0, 0.0, 0.5, 0.5}, {0.0, 0.0, 0.5, 0.5}};
  const Matrix block1(4, std::vector<double>{0.0, 0.0, 0.0, 1.0});
  const std::vector<Tensor<float>> probs = {attention_from_rows({{block0}}), attention_from_rows({{block1}})};
  viz::RolloutOptions options;
  options.query = viz::AttentionQuery::patch_mean(0);
  const Tensor<float> map = viz::attention_rollout(probs, 0, options);
  CHECK(map.shape() == Shape{2, 2});
  check_map(map, {0.125, 0.125, 0.25, 0.5});
  // The same as the mean of the rows of the rollout matrix.
  const Tensor<float> matrix = viz::attention_rollout_matrix(probs, 0, options);
  for (int64_t j = 0; j < 4; ++j) {
    double mean = 0.0;
    for (int64_t i = 0; i < 4; ++i) mean += matrix.at({i, j}) / 4.0;
    CHECK(mean == doctest::Approx(map.data()[j]).epsilon(1e-6));
  }
  // On the fixture (which has a class token): patch_mean after 1 prefix token is the mean of R's patch rows.
  const auto fixture_probs = fixture_attention();
  options.query = viz::AttentionQuery::patch_mean(1);
  const Matrix expected = plain_rollout(fixture_probs, 2, viz::HeadFusion::mean, 0.5);
  const Tensor<float> fixture_map = viz::attention_rollout(fixture_probs, 2, options);
  for (int64_t p = 0; p < 64; ++p) {
    double mean = 0.0;
    for (int64_t q = 1; q < 65; ++q) mean += expected[q][1 + p] / 64.0;
    CHECK(std::abs(double(fixture_map.data()[p]) - mean) <= 1e-6);
  }
}

TEST_CASE("model attention of a ViT with a conv stem, no class token and average pooling reads the patch rows") {
  nn::ViTConfig config;
  config.img_size = 8;
  config.patch_size = 4;
  config.embed_dim = 12;
  config.depth = 2;
  config.num_heads = 2;
  config.num_classes = 3;
  config.class_token = false;
  config.global_pool = "avg";
  config.stem_channels = {4, 8};
  config.stem_strides = {2, 2};
  nn::VisionTransformer<float> model(config, 5);
  const viz::AttentionQuery query = viz::attention_query(config);
  CHECK(query.rows == viz::QueryRows::patch_mean);
  CHECK(query.prefix_tokens == 0);
  CHECK(viz::describe(query).find("mean attention each patch receives") != std::string::npos);

  const data::Image image = random_image(8, 8, 3, 21);
  const data::Compose preprocess{data::ToTensor(), data::Normalize({0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f})};
  const auto probs = viz::record_attention(model, image, preprocess);
  REQUIRE(probs.size() == 2);
  CHECK(probs[0].shape() == Shape{1, 2, 4, 4});
  for (int64_t layer = 0; layer < 2; ++layer)
    for (int64_t head = 0; head < 2; ++head) {
      const Tensor<float> map = viz::attention_map(model, image, preprocess, layer, head);
      REQUIRE(map.shape() == Shape{2, 2});
      double sum = 0.0;
      for (int64_t j = 0; j < 4; ++j) {
        double column_mean = 0.0;
        for (int64_t i = 0; i < 4; ++i) column_mean += prob(probs[layer], 0, head, i, j) / 4.0;
        CHECK(std::abs(double(map.data()[j]) - column_mean) <= 1e-7);
        sum += map.data()[j];
      }
      CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));  // no prefix token: the patches receive all the attention
    }
  const Tensor<float> mean = viz::mean_attention_map(model, image, preprocess, 1);
  const Tensor<float> mean_expected = viz::mean_attention_map(probs, 1, 0, query);
  CHECK(std::equal(mean.data(), mean.data() + 4, mean_expected.data()));
  // The rollout reads the mean of the patch rows of R, which sum to 1 over the patches.
  const Tensor<float> rollout = viz::attention_rollout(model, image, preprocess);
  const Matrix joint = plain_rollout(probs, 0, viz::HeadFusion::mean, 0.5);
  double rollout_sum = 0.0;
  for (int64_t j = 0; j < 4; ++j) {
    const double expected = (joint[0][j] + joint[1][j] + joint[2][j] + joint[3][j]) / 4.0;
    CHECK(std::abs(double(rollout.data()[j]) - expected) <= 1e-6);
    rollout_sum += rollout.data()[j];
  }
  CHECK(rollout_sum == doctest::Approx(1.0).epsilon(1e-6));

  TempDir dir;
  viz::write_attention_heatmap_png(dir.path / "head.png", model, image, preprocess, 1, 0);
  viz::write_head_grid_png(dir.path / "grid.png", model, image, preprocess, 1);
  viz::write_rollout_heatmap_png(dir.path / "rollout.png", model, image, preprocess);
  CHECK(data::decode_image(dir.path / "head.png").pixels ==
        viz::heatmap_image(viz::attention_map(probs, 1, 0, 0, query), image).pixels);
  CHECK(data::decode_image(dir.path / "grid.png").pixels ==
        viz::head_grid_image(viz::attention_maps(probs, 1, 0, query), image).pixels);
  CHECK(data::decode_image(dir.path / "rollout.png").pixels == viz::heatmap_image(rollout, image).pixels);

  // The class-token functions refuse a model without one, naming it, and so do its probabilities.
  check_throws_with([&] { viz::cls_attention_map(model, image, preprocess, 0, 0); },
                    {"cls_attention_map", "no class token", "class_token = false"});
  check_throws_with([&] { viz::mean_cls_attention_map(model, image, preprocess, 0); }, {"mean_cls_attention_map"});
  check_throws_with([&] { viz::cls_attention_map(probs, 0, 0); },
                    {"cls_attention_map", "3 patch tokens do not form a square grid", "1 class token"});
}

TEST_CASE("sequence pooling: the query weighs the patch rows by the pooling weights the head uses") {
  nn::ViTConfig config;
  config.img_size = 8;
  config.patch_size = 2;
  config.embed_dim = 8;
  config.depth = 1;
  config.num_heads = 2;
  config.num_classes = 3;
  config.class_token = false;
  config.global_pool = "seqpool";
  nn::VisionTransformer<float> model(config, 9);
  Tensor<float> input(Shape{2, 3, 8, 8});
  std::mt19937 gen(4);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < input.numel(); ++i) input.data()[i] = normal(gen);
  const viz::AttentionQuery query = viz::attention_query(model, input);
  CHECK(query.rows == viz::QueryRows::patch_mean);
  REQUIRE(query.patch_weights.size() == 2 * 16);
  // The weights are the head's: the pooled features are the weighted sum of the (normalised) patch tokens.
  tessera::NoGradGuard no_grad;
  model.eval();
  const Tensor<float> tokens = model.forward_tokens(input), features = model.forward_features(input);
  for (int64_t b = 0; b < 2; ++b) {
    double weight_sum = 0.0;
    for (int64_t p = 0; p < 16; ++p) weight_sum += query.patch_weights[static_cast<size_t>(b * 16 + p)];
    CHECK(weight_sum == doctest::Approx(1.0).epsilon(1e-6));
    for (int64_t d = 0; d < 8; ++d) {
      double pooled = 0.0;
      for (int64_t p = 0; p < 16; ++p) pooled += query.patch_weights[static_cast<size_t>(b * 16 + p)] * tokens.at({b, p, d});
      CHECK(std::abs(pooled - features.at({b, d})) <= 1e-5);
    }
  }
  // The map of image 1 is Σ_q w_q P[1, h, q, :].
  const auto probs = viz::record_attention(model, input);
  const Tensor<float> map = viz::attention_map(probs, 0, 1, 1, query);
  for (int64_t j = 0; j < 16; ++j) {
    double expected = 0.0;
    for (int64_t q = 0; q < 16; ++q) expected += query.patch_weights[static_cast<size_t>(16 + q)] * prob(probs[0], 1, 1, q, j);
    CHECK(std::abs(double(map.data()[j]) - expected) <= 1e-6);
  }
}

TEST_CASE("attention queries: errors name the op, the query and the shapes") {
  const Tensor<float> probs = small_attention();
  check_throws_with([&] { viz::attention_map(probs, 0, 0); },
                    {"attention_map", "3 patch tokens do not form a square grid", "1 class token"});
  check_throws_with([&] { viz::attention_map(probs, 0, 0, viz::AttentionQuery{0, viz::QueryRows::class_token, {}}); },
                    {"attention_map", "class-token query", "prefix_tokens = 0", "patch_mean"});
  check_throws_with([&] { viz::attention_maps(probs, 0, viz::AttentionQuery::patch_mean(-1)); },
                    {"attention_maps", "prefix tokens must be non-negative", "-1"});
  check_throws_with([&] { viz::attention_maps(probs, 0, viz::AttentionQuery::patch_mean(2)); },
                    {"attention_maps", "2 patch tokens do not form a square grid", "2 prefix tokens"});
  check_throws_with([&] { viz::attention_map(probs, 0, 0, viz::AttentionQuery::patch_mean(4)); },
                    {"no patch tokens", "4 prefix tokens"});
  check_throws_with([&] { viz::mean_attention_map(probs, 0, viz::AttentionQuery::patch_mean(0, {0.5, 0.5})); },
                    {"fused_attention_map", "patch_weights hold 2 values", "(2, 2, 4, 4)", "needs 4", "or 8"});
  check_throws_with([&] { viz::attention_map(probs, 0, 0, viz::AttentionQuery::patch_mean(0, {0.5, 0.5, NAN, 0.0})); },
                    {"patch_weights must be finite"});
  check_throws_with([&] { viz::attention_map(probs, 2, 0, viz::AttentionQuery::patch_mean(0)); },
                    {"attention_map", "head 2", "2 heads"});
  check_throws_with([&] { viz::attention_maps(probs, 2, viz::AttentionQuery::patch_mean(0)); }, {"image 2", "batch of 2"});
  viz::RolloutOptions options;
  options.query = viz::AttentionQuery::patch_mean(1);
  check_throws_with([&] { viz::attention_rollout(std::vector<Tensor<float>>{probs}, 0, options); },
                    {"attention_rollout", "3 patch tokens do not form a square grid"});
  check_throws_with([&] { viz::attention_rollout(std::vector<Tensor<float>>{probs}); },
                    {"attention_rollout", "3 patch tokens"});
}
