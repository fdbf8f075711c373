// viz: class-token attention maps and attention rollout against plain re-computations from the timm fixture's
// attention probabilities (../shared/fixtures/timm_vit_p4_d96.safetensors, attn.<block>), the same from a
// VisionTransformer, colour maps, bilinear upsampling, heatmap and head-grid pictures, PNG files read back with
// stb_image, and the errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
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
  check_throws_with([&] { viz::attention_rollout(probs, 0, viz::RolloutOptions{viz::HeadFusion::mean, 1.5}); },
                    {"residual must be in [0, 1]"});
  check_throws_with([&] { viz::attention_rollout(probs, 5); }, {"image 5"});
  check_throws_with(
      [&] { viz::attention_rollout_matrix(std::vector<Tensor<float>>{probs[0], Tensor<float>::zeros(Shape{4, 3, 17, 17})}); },
      {"attention_rollout_matrix", "layer 1", "(4, 3, 17, 17)"});
  check_throws_with([&] { viz::attention_rollout(std::vector<Tensor<float>>{Tensor<float>::zeros(Shape{1, 2, 5, 5})}, 0,
                                                 viz::RolloutOptions{viz::HeadFusion::mean, 0.0}); },
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

TEST_CASE("heatmap_image: enlarged image, hot region coloured, cold region the cold colour blended") {
  data::Image grey(32, 32, 3, 100);
  Tensor<float> map = Tensor<float>::zeros(Shape{8, 8});
  map.at({2, 5}) = 1.0f;
  const data::Image picture = viz::heatmap_image(map, grey);  // inferno, alpha 0.5, at least 224 px
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
  viz::HeatmapOptions options;
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
  CHECK(ranged.at(y * 32 / 224 * 7, x * 32 / 224 * 7, 1) < 231);
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
