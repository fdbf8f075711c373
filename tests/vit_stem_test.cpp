// The convolutional stem and the overlapping patch embedding of ViTConfig (stem_channels, stem_strides,
// patch_kernel): config validation and JSON, timm's ConvStem parameter names and shapes, the stem's values against
// ops::conv2d / batch_norm / relu composed here and against plain loops, train and eval BatchNorm, gradchecks in
// double, thread-count bit-identity, and a checkpoint round trip with the running statistics.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/io/checkpoint.hpp>
#include <tessera/nn/nn.hpp>
#include <tessera/ops/loss.hpp>
#include <tessera/ops/ops.hpp>
#include <tessera/testing/gradcheck.hpp>

using tessera::Generator;
using tessera::Shape;
using tessera::Tensor;
namespace io = tessera::io;
namespace nn = tessera::nn;
namespace ops = tessera::ops;

namespace {

using test::max_abs_difference;
using test::parameter_names;

// 32x32 images, patch 4 (an 8x8 grid), dim 24, as the CIFAR model but small.
nn::ViTConfig cifar_like() {
  nn::ViTConfig c = nn::ViTConfig::vit_cifar();
  c.embed_dim = 24;
  c.depth = 1;
  c.num_heads = 2;
  return c;
}

template <class T>
std::map<std::string, Shape> state_shapes(const nn::Module<T>& m) {
  std::map<std::string, Shape> out;
  for (const auto& [name, t] : m.state_dict()) out.emplace(name, t.shape());
  return out;
}
// The names of `m`'s state that start with "patch_embed.".
template <class T>
std::map<std::string, Shape> patch_embed_state(const nn::Module<T>& m) {
  std::map<std::string, Shape> out;
  for (const auto& [name, shape] : state_shapes(m))
    if (name.rfind("patch_embed.", 0) == 0) out.emplace(name, shape);
  return out;
}

// Every parameter spread out (BatchNorm weights near one, biases away from zero) so every path matters.
template <class T>
void spread(nn::Module<T>& model, uint64_t seed) {
  Generator gen(seed);
  for (auto& [name, p] : model.named_parameters()) {
    const bool scale = (name.find("norm") != std::string::npos || name.find(".bn.") != std::string::npos) &&
                       name.find("weight") != std::string::npos;
    for (int64_t i = 0; i < p.numel(); ++i)
      p.data()[i] = static_cast<T>(scale ? 1.0 + 0.2 * gen.normal() : 0.3 * gen.normal());
  }
}

// The stem written out of ops, independently of nn::ConvStem: for each stage conv2d (3x3, padding 1, no bias),
// batch_norm (batch statistics in training, the given running ones otherwise) and relu; then the projection and
// (B, D, g, g) -> (B, g·g, D).
struct StemWeights {
  std::vector<Tensor<double>> conv, bn_weight, bn_bias, running_mean, running_var;
  std::vector<int64_t> strides;
  Tensor<double> proj_weight, proj_bias;
  int64_t proj_stride = 1, proj_padding = 0;
};
Tensor<double> composed_stem(const Tensor<double>& x, const StemWeights& w, bool training) {
  Tensor<double> h = x;
  for (size_t i = 0; i < w.conv.size(); ++i) {
    h = ops::conv2d(h, w.conv[i], Tensor<double>(),
                    ops::Conv2dOptions{.stride = {w.strides[i], w.strides[i]}, .padding = {1, 1}});
    // Copies: training updates the running statistics it is given, and the module's must stay as they are.
    Tensor<double> mean = w.running_mean[i].clone(), var = w.running_var[i].clone();
    h = ops::relu(ops::batch_norm(h, w.bn_weight[i], w.bn_bias[i], mean, var,
                                  ops::BatchNormOptions{.training = training, .momentum = 0.1, .eps = 1e-5}));
  }
  h = ops::conv2d(h, w.proj_weight, w.proj_bias,
                  ops::Conv2dOptions{.stride = {w.proj_stride, w.proj_stride},
                                     .padding = {w.proj_padding, w.proj_padding}});
  const int64_t B = h.size(0), D = h.size(1), P = h.size(2) * h.size(3);
  return ops::permute(ops::reshape(h, {B, D, P}), {0, 2, 1});
}
StemWeights stem_weights(const nn::VisionTransformer<double>& model) {
  StemWeights w;
  const auto& stages = model.patch_embed.backbone;
  for (size_t i = 0; i + 1 < stages.size(); ++i) {
    w.conv.push_back(stages[i].conv.weight);
    w.bn_weight.push_back(stages[i].bn->weight);
    w.bn_bias.push_back(stages[i].bn->bias);
    w.running_mean.push_back(stages[i].bn->running_mean);
    w.running_var.push_back(stages[i].bn->running_var);
    w.strides.push_back(model.config().stem_stride(i));
  }
  w.proj_weight = stages[stages.size() - 1].conv.weight;
  w.proj_bias = stages[stages.size() - 1].conv.bias;
  w.proj_stride = model.config().patch_proj_stride();
  w.proj_padding = model.config().patch_proj_padding();
  return w;
}

}  // namespace

// ---- config --------------------------------------------------------------------------------------------------

TEST_CASE("ViTConfig stem fields: off by default, derived sizes, JSON round trip, old configs, clear errors") {
  const nn::ViTConfig defaults;
  CHECK(defaults.stem_channels.empty());
  CHECK(defaults.stem_strides.empty());
  CHECK(defaults.patch_kernel == 0);
  CHECK(defaults.plain_patch_embed());
  CHECK(defaults.patch_proj_kernel() == 16);
  CHECK(defaults.patch_proj_stride() == 16);
  CHECK(defaults.patch_proj_padding() == 0);

  nn::ViTConfig c = cifar_like();
  c.stem_channels = {8, 16};
  CHECK(c.stem_stride(0) == 2);  // empty stem_strides: 2 for every stage
  CHECK(c.stem_stride(1) == 2);
  CHECK(c.stem_downsampling() == 4);
  CHECK(c.patch_proj_stride() == 1);
  CHECK(c.patch_proj_kernel() == 1);
  CHECK_FALSE(c.plain_patch_embed());
  CHECK(c.grid_size() == 8);
  c.stem_strides = {1, 2};
  CHECK(c.stem_downsampling() == 2);
  CHECK(c.patch_proj_stride() == 2);
  c.patch_kernel = 4;
  CHECK(c.patch_proj_padding() == 1);
  CHECK(nn::ViTConfig::from_json(c.to_json()) == c);
  CHECK(nn::ViTConfig::from_json_string(c.to_json_string()) == c);
  CHECK(c.to_json().at("stem_channels") == nlohmann::json::array({8, 16}));

  nn::ViTConfig overlap = cifar_like();
  overlap.patch_kernel = 7;  // stride 4: padding ceil(3 / 2) = 2
  CHECK(overlap.patch_proj_padding() == 2);
  CHECK_FALSE(overlap.plain_patch_embed());
  overlap.patch_kernel = 4;  // the plain embedding, named as timm's
  CHECK(overlap.plain_patch_embed());
  CHECK(nn::ViTConfig::from_json(overlap.to_json()) == overlap);

  // A config written before these fields existed loads without a stem; the CLI's short form works.
  const auto old = nn::ViTConfig::from_json_string(R"({"img_size": 32, "patch_size": 4, "embed_dim": 96,
                                                       "num_heads": 3, "global_pool": "avg"})");
  CHECK(old.stem_channels.empty());
  CHECK(old.patch_kernel == 0);
  const auto short_form = nn::ViTConfig::from_json_string(R"({"img_size": 32, "patch_size": 4,
                                                              "stem_channels": [32, 64]})");
  CHECK(short_form.stem_channels == std::vector<int64_t>{32, 64});
  CHECK(short_form.stem_downsampling() == 4);

  const std::string base = R"({"img_size": 32, "patch_size": 4, )";
  auto error = [&](const std::string& fields, const std::vector<std::string>& parts) {
    INFO(fields);
    test::check_error([&] { nn::ViTConfig::from_json_string(base + fields + "}"); }, parts);
  };
  error(R"("stem_channels": [8, 0])", {"stem_channels", "positive", "0", "stage 1"});
  error(R"("stem_channels": 8)", {"stem_channels", "list of integers"});
  error(R"("stem_channels": [8.5])", {"stem_channels", "integer", "8.5"});
  error(R"("stem_strides": [2])", {"stem_strides", "without a stem"});
  error(R"("stem_channels": [8, 16], "stem_strides": [2])", {"stem_strides [2]", "one stride per stage", "[8, 16]"});
  error(R"("stem_channels": [8], "stem_strides": [3])", {"stem_strides", "1 or 2", "3"});
  error(R"("stem_channels": [8, 8, 8])", {"downsamples by 8", "[2, 2, 2]", "patch_size 4"});
  error(R"("patch_kernel": -1)", {"patch_kernel", "-1"});
  error(R"("patch_kernel": 3)", {"patch_kernel 3", "smaller than", "stride 4"});
  error(R"("stem_channels": [8, 8], "patch_kernel": 2)", {"patch_kernel 2", "stride 1", "even"});
  error(R"("stem_channels": [8, 8], "stem_strides": [2, 1], "patch_kernel": 1)", {"patch_kernel 1", "smaller", "2"});
  error(R"("stem_kernel": 3)", {"unknown key 'stem_kernel'", "stem_channels", "patch_kernel"});
}

// ---- parameter names and shapes ------------------------------------------------------------------------------

TEST_CASE("stem: timm's ConvStem names and shapes under patch_embed.backbone, forward shapes") {
  SUBCASE("stem [8, 16], strides (2, 2), patch 4: a 1x1 projection") {
    nn::ViTConfig c = cifar_like();
    c.stem_channels = {8, 16};
    c.stem_strides = {2, 2};
    nn::VisionTransformer<float> model(c, 1);
    const std::map<std::string, Shape> expected = {
        {"patch_embed.backbone.0.conv.weight", Shape{8, 3, 3, 3}},
        {"patch_embed.backbone.0.bn.weight", Shape{8}},
        {"patch_embed.backbone.0.bn.bias", Shape{8}},
        {"patch_embed.backbone.0.bn.running_mean", Shape{8}},
        {"patch_embed.backbone.0.bn.running_var", Shape{8}},
        {"patch_embed.backbone.0.bn.num_batches_tracked", Shape{}},
        {"patch_embed.backbone.1.conv.weight", Shape{16, 8, 3, 3}},
        {"patch_embed.backbone.1.bn.weight", Shape{16}},
        {"patch_embed.backbone.1.bn.bias", Shape{16}},
        {"patch_embed.backbone.1.bn.running_mean", Shape{16}},
        {"patch_embed.backbone.1.bn.running_var", Shape{16}},
        {"patch_embed.backbone.1.bn.num_batches_tracked", Shape{}},
        {"patch_embed.backbone.2.conv.weight", Shape{24, 16, 1, 1}},
        {"patch_embed.backbone.2.conv.bias", Shape{24}},
    };
    CHECK(patch_embed_state(model) == expected);
    // Buffers are state, not parameters: the optimizer never sees them.
    const auto names = parameter_names(model);
    CHECK(std::count(names.begin(), names.end(), "patch_embed.backbone.0.bn.running_mean") == 0);
    CHECK(std::count(names.begin(), names.end(), "patch_embed.backbone.0.bn.weight") == 1);
    CHECK(model.patch_embed.has_backbone());
    CHECK_FALSE(model.patch_embed.proj.weight.defined());
    // The rest of the model is the plain one's.
    const nn::VisionTransformer<float> plain(cifar_like(), 1);
    auto rest = [](const nn::Module<float>& m) {
      std::map<std::string, Shape> out = state_shapes(m);
      std::erase_if(out, [](const auto& e) { return e.first.rfind("patch_embed.", 0) == 0; });
      return out;
    };
    CHECK(rest(model) == rest(plain));

    const Tensor<float> x = test::random_images<float>(c, 3, 2);
    const auto& stages = model.patch_embed.backbone;
    const Tensor<float> h0 = stages[0](x), h1 = stages[1](h0), h2 = stages[2](h1);
    CHECK(h0.shape() == Shape{3, 8, 16, 16});
    CHECK(h1.shape() == Shape{3, 16, 8, 8});
    CHECK(h2.shape() == Shape{3, 24, 8, 8});
    CHECK(model.patch_embed(x).shape() == Shape{3, 64, 24});
    CHECK(model(x).shape() == Shape{3, 10});
    CHECK(model.forward_tokens(x).shape() == Shape{3, 65, 24});
  }
  SUBCASE("stem [8], stride 2, patch 4: a 2x2 stride-2 projection") {
    nn::ViTConfig c = cifar_like();
    c.stem_channels = {8};
    nn::VisionTransformer<float> model(c, 1);
    const auto state = patch_embed_state(model);
    CHECK(state.size() == 8);
    CHECK(state.at("patch_embed.backbone.0.conv.weight") == Shape{8, 3, 3, 3});
    CHECK(state.at("patch_embed.backbone.1.conv.weight") == Shape{24, 8, 2, 2});
    CHECK(state.at("patch_embed.backbone.1.conv.bias") == Shape{24});
    const Tensor<float> x = test::random_images<float>(c, 2, 3);
    CHECK(model.patch_embed.backbone[0](x).shape() == Shape{2, 8, 16, 16});
    CHECK(model.patch_embed(x).shape() == Shape{2, 64, 24});
    CHECK(model(x).shape() == Shape{2, 10});
  }
  SUBCASE("no stem, patch_kernel 7 with stride 4: one overlapping convolution with bias") {
    nn::ViTConfig c = cifar_like();
    c.patch_kernel = 7;
    nn::VisionTransformer<float> model(c, 1);
    const std::map<std::string, Shape> expected = {{"patch_embed.backbone.0.conv.weight", Shape{24, 3, 7, 7}},
                                                   {"patch_embed.backbone.0.conv.bias", Shape{24}}};
    CHECK(patch_embed_state(model) == expected);
    const Tensor<float> x = test::random_images<float>(c, 2, 4);
    CHECK(model.patch_embed(x).shape() == Shape{2, 64, 24});
    CHECK(model(x).shape() == Shape{2, 10});
  }
  SUBCASE("patch_kernel equal to patch_size is timm's plain patch embedding, bit for bit") {
    nn::ViTConfig c = cifar_like();
    c.patch_kernel = 4;
    nn::VisionTransformer<float> model(c, 5);
    nn::VisionTransformer<float> plain(cifar_like(), 5);
    CHECK(patch_embed_state(model) == patch_embed_state(plain));
    CHECK(patch_embed_state(model).count("patch_embed.proj.weight") == 1);
    const Tensor<float> x = test::random_images<float>(c, 2, 6);
    CHECK(max_abs_difference(model(x), plain(x)) == 0.0);
  }
  SUBCASE("average pooling without a class token, sincos positions") {
    nn::ViTConfig c = cifar_like();
    c.stem_channels = {8, 16};
    c.class_token = false;
    c.global_pool = "avg";
    c.pos_embed = "sincos";
    nn::VisionTransformer<float> model(c, 1);
    const Tensor<float> x = test::random_images<float>(c, 2, 7);
    CHECK(model.forward_tokens(x).shape() == Shape{2, 64, 24});
    CHECK(model(x).shape() == Shape{2, 10});
  }
}

TEST_CASE("stem: initialisation as torch.nn.Conv2d (timm keeps it), BatchNorm ones and zeros; jax: lecun_normal") {
  nn::ViTConfig c = cifar_like();
  c.stem_channels = {32, 64};
  nn::VisionTransformer<double> model(c, 3);
  const auto& stages = model.patch_embed.backbone;
  auto max_abs = [](const Tensor<double>& t) {
    double m = 0.0;
    for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.data()[i]));
    return m;
  };
  // U(±1/sqrt(fan_in)): fan_in 27 for the first conv, 288 for the second, 64 for the 1x1 projection.
  CHECK(max_abs(stages[0].conv.weight) <= 1.0 / std::sqrt(27.0));
  CHECK(max_abs(stages[0].conv.weight) > 0.9 / std::sqrt(27.0));
  CHECK(max_abs(stages[1].conv.weight) <= 1.0 / std::sqrt(288.0));
  CHECK(max_abs(stages[2].conv.weight) <= 1.0 / std::sqrt(64.0));
  CHECK(max_abs(stages[2].conv.bias) <= 1.0 / std::sqrt(64.0));
  CHECK(max_abs(stages[2].conv.bias) > 0.0);
  for (size_t i = 0; i < 2; ++i) {
    CHECK_FALSE(stages[i].conv.has_bias());
    for (int64_t k = 0; k < stages[i].bn->num_features; ++k) {
      CHECK(stages[i].bn->weight.data()[k] == 1.0);
      CHECK(stages[i].bn->bias.data()[k] == 0.0);
      CHECK(stages[i].bn->running_mean.data()[k] == 0.0);
      CHECK(stages[i].bn->running_var.data()[k] == 1.0);
    }
  }
  c.weight_init = "jax";
  nn::VisionTransformer<double> jax(c, 3);
  const auto& jax_stages = jax.patch_embed.backbone;
  CHECK(max_abs(jax_stages[2].conv.bias) == 0.0);
  auto stddev = [](const Tensor<double>& t) {
    double s = 0.0;
    for (int64_t i = 0; i < t.numel(); ++i) s += t.data()[i] * t.data()[i];
    return std::sqrt(s / static_cast<double>(t.numel()));
  };
  // lecun_normal: truncated normal with std sqrt(1 / fan_in).
  CHECK(stddev(jax_stages[1].conv.weight) == doctest::Approx(std::sqrt(1.0 / 288.0)).epsilon(0.1));
  CHECK(stddev(jax_stages[2].conv.weight) == doctest::Approx(std::sqrt(1.0 / 64.0)).epsilon(0.1));
}

// ---- values ---------------------------------------------------------------------------------------------------

TEST_CASE("stem: the patch tokens equal conv2d, batch_norm and relu composed from ops, in train and eval mode") {
  struct Case {
    const char* name;
    std::vector<int64_t> stem, strides;
    int64_t patch_kernel;
  };
  for (const Case& stem_case : std::vector<Case>{{"[5, 7] strides (2, 2)", {5, 7}, {2, 2}, 0},
                                                 {"[5, 6] strides (1, 2), overlapping kernel 4 stride 2", {5, 6}, {1, 2}, 4},
                                                 {"[6] stride 2, kernel 5 stride 2", {6}, {2}, 5}}) {
    INFO(stem_case.name);
    const std::vector<int64_t>& strides = stem_case.strides;
    nn::ViTConfig c = cifar_like();
    c.img_size = 16;
    c.stem_channels = stem_case.stem;
    c.stem_strides = stem_case.strides;
    c.patch_kernel = stem_case.patch_kernel;
    nn::VisionTransformer<double> model(c, 11);
    spread(model, 12);
    const Tensor<double> x = test::random_images<double>(c, 3, 13);
    const StemWeights weights = stem_weights(model);
    const std::vector<Tensor<double>> running_before = {weights.running_mean[0].clone(),
                                                        weights.running_var[0].clone()};
    // Training: batch statistics.
    model.train();
    const Tensor<double> expected_train = composed_stem(x, weights, true);
    const Tensor<double> tokens_train = model.patch_embed(x);
    CHECK(tokens_train.shape() == Shape{3, 16, 24});
    CHECK(max_abs_difference(tokens_train, expected_train) < 1e-12);
    // The running statistics moved by momentum 0.1 towards the first conv's batch mean and unbiased variance,
    // computed here by plain loops.
    const Tensor<double> first = ops::conv2d(x, weights.conv[0], Tensor<double>(),
                                             ops::Conv2dOptions{.stride = {strides[0], strides[0]}, .padding = {1, 1}});
    const int64_t B = first.size(0), C = first.size(1), HW = first.size(2) * first.size(3), n = B * HW;
    for (int64_t ch = 0; ch < C; ++ch) {
      double sum = 0.0, squares = 0.0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t p = 0; p < HW; ++p) sum += first.data()[(b * C + ch) * HW + p];
      const double mean = sum / static_cast<double>(n);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t p = 0; p < HW; ++p) {
          const double d = first.data()[(b * C + ch) * HW + p] - mean;
          squares += d * d;
        }
      const double unbiased = squares / static_cast<double>(n - 1);
      CHECK(weights.running_mean[0].data()[ch] ==
            doctest::Approx(0.9 * running_before[0].data()[ch] + 0.1 * mean).epsilon(1e-12));
      CHECK(weights.running_var[0].data()[ch] ==
            doctest::Approx(0.9 * running_before[1].data()[ch] + 0.1 * unbiased).epsilon(1e-12));
    }
    CHECK(model.patch_embed.backbone[0].bn->num_batches_tracked.item() == 1.0);
    // Evaluation: the running statistics, which the ViT's eval() reaches; nothing is updated.
    model.eval();
    CHECK_FALSE(model.patch_embed.backbone[0].bn->is_training());
    const Tensor<double> mean_after = weights.running_mean[0].clone();
    const Tensor<double> tokens_eval = model.patch_embed(x);
    CHECK(max_abs_difference(tokens_eval, composed_stem(x, weights, false)) < 1e-12);
    CHECK(max_abs_difference(tokens_eval, tokens_train) > 1e-3);
    CHECK(max_abs_difference(weights.running_mean[0], mean_after) == 0.0);
    CHECK(model.patch_embed.backbone[0].bn->num_batches_tracked.item() == 1.0);
  }
}

TEST_CASE("overlapping patch embedding: kernel 7, stride 4, padding 2 against a plain loop, edges included") {
  nn::ViTConfig c = cifar_like();
  c.img_size = 12;
  c.in_chans = 2;
  c.patch_kernel = 7;
  nn::VisionTransformer<double> model(c, 21);
  spread(model, 22);
  const Tensor<double> x = test::random_images<double>(c, 2, 23);
  const Tensor<double> tokens = model.patch_embed(x);  // (2, 9, 24): a 3x3 grid
  REQUIRE(tokens.shape() == Shape{2, 9, 24});
  const auto& conv = model.patch_embed.backbone[0].conv;
  const int64_t H = 12, g = 3, D = 24, C = 2, k = 7, s = 4, pad = 2;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < g; ++i)
      for (int64_t j = 0; j < g; ++j)
        for (int64_t d = 0; d < D; ++d) {
          double sum = conv.bias.data()[d];
          for (int64_t ch = 0; ch < C; ++ch)
            for (int64_t u = 0; u < k; ++u)
              for (int64_t v = 0; v < k; ++v) {
                const int64_t y = i * s - pad + u, xx = j * s - pad + v;
                if (y < 0 || y >= H || xx < 0 || xx >= H) continue;
                sum += conv.weight.data()[((d * C + ch) * k + u) * k + v] * x.data()[((b * C + ch) * H + y) * H + xx];
              }
          CHECK(tokens.data()[(b * g * g + i * g + j) * D + d] == doctest::Approx(sum).epsilon(1e-12));
        }
}

// ---- gradchecks ----------------------------------------------------------------------------------------------

TEST_CASE("gradcheck: a tiny ViT in double with a stem, BatchNorm in train and eval mode, every parameter") {
  struct Case {
    const char* name;
    int64_t img_size, patch_size;
    std::vector<int64_t> stem, strides;
    int64_t patch_kernel;
  };
  for (const Case& stem_case :
       std::vector<Case>{{"stem [3, 5], strides (2, 1), 2x2 projection", 8, 4, {3, 5}, {2, 1}, 0},
                         {"stem [3], stride 2, overlapping 5x5 projection (padding 2)", 8, 4, {3}, {2}, 5},
                         {"no stem, overlapping 3x3 patch kernel with stride 2 (padding 1)", 6, 2, {}, {}, 3}}) {
    INFO(stem_case.name);
    nn::ViTConfig c;
    c.img_size = stem_case.img_size;
    c.patch_size = stem_case.patch_size;
    c.in_chans = 2;
    c.num_classes = 3;
    c.embed_dim = 8;
    c.depth = 1;
    c.num_heads = 2;
    c.mlp_ratio = 1.0;
    c.stem_channels = stem_case.stem;
    c.stem_strides = stem_case.strides;
    c.patch_kernel = stem_case.patch_kernel;
    nn::VisionTransformer<double> model(c, 31);
    spread(model, 32);
    std::vector<Tensor<double>> inputs = {test::random_images<double>(c, 3, 33).set_requires_grad()};
    for (const auto& [name, p] : model.named_parameters()) inputs.push_back(p);
    const std::vector<int64_t> labels = {2, 0, 1};
    const auto loss = [&](const std::vector<Tensor<double>>& in) { return ops::cross_entropy(model(in[0]), labels); };
    model.train();  // batch statistics: the gradient flows through the batch mean and variance
    CHECK_GRADCHECK([&](const std::vector<Tensor<double>>& in) { return model(in[0]); }, inputs);
    CHECK_GRADCHECK(loss, inputs);
    model.eval();  // running statistics, moved away from 0 and 1 by the training forwards above
    if (!stem_case.stem.empty()) CHECK(model.patch_embed.backbone[0].bn->running_mean.data()[0] != 0.0);
    CHECK_GRADCHECK([&](const std::vector<Tensor<double>>& in) { return model(in[0]); }, inputs);
    CHECK_GRADCHECK(loss, inputs);
  }
}

// ---- thread-count bit-identity -------------------------------------------------------------------------------

TEST_CASE("determinism: a ViT with a stem gives the same bits on 1, 2 and 3 threads (train, running stats, eval)") {
  nn::ViTConfig base = nn::ViTConfig::vit_cifar();
  base.embed_dim = 96;
  base.depth = 1;
  std::vector<std::pair<std::string, nn::ViTConfig>> configs;
  nn::ViTConfig stem = base;
  stem.stem_channels = {16, 32};
  configs.emplace_back("stem [16, 32]", stem);
  nn::ViTConfig overlap = base;
  overlap.stem_channels = {16};
  overlap.patch_kernel = 4;
  overlap.class_token = false;
  overlap.global_pool = "avg";
  configs.emplace_back("stem [16], overlapping 4x4 stride-2 projection, avg", overlap);
  nn::ViTConfig kernel7 = base;
  kernel7.patch_kernel = 7;
  configs.emplace_back("no stem, patch_kernel 7", kernel7);
  // Beyond the training step: the BatchNorm running statistics it moved, and the logits in eval mode.
  const auto run = [](const nn::ViTConfig& config, int threads) {
    return test::vit_forward_backward(config, threads, [](nn::VisionTransformer<float>& model, const Tensor<float>& x,
                                                          test::NamedTensors& out) {
      for (const auto& [name, b] : model.named_buffers()) out["buffer." + name] = b.clone();
      model.eval();
      out["eval_logits"] = model(x).detach();
    });
  };
  test::check_same_bits_on_1_2_3_threads(configs, run);
}

// ---- checkpoints -----------------------------------------------------------------------------------------------

TEST_CASE("checkpoint: a model with a stem saves and loads its weights and running statistics") {
  nn::ViTConfig c = cifar_like();
  c.stem_channels = {8, 16};
  c.stem_strides = {2, 1};
  c.patch_kernel = 4;
  nn::VisionTransformer<float> model(c, 41);
  model.train();
  // moves the running statistics
  for (uint64_t step = 0; step < 3; ++step) model(test::random_images<float>(c, 4, 42 + step));
  const auto& bn = *model.patch_embed.backbone[1].bn;
  CHECK(bn.num_batches_tracked.item() == 3.0f);
  CHECK(bn.running_mean.data()[0] != 0.0f);
  CHECK(bn.running_var.data()[0] != 1.0f);

  const std::filesystem::path path = std::filesystem::temp_directory_path() / "tessera_vit_stem_test.safetensors";
  io::save_checkpoint(path, model, nullptr, io::CheckpointState{});
  const nn::ViTConfig stored = io::read_checkpoint_vit_config(path);
  CHECK(stored == c);
  nn::VisionTransformer<float> loaded(stored, 99);
  io::load_checkpoint(path, loaded, nullptr);
  std::filesystem::remove(path);
  const auto expected = model.state_dict(), actual = loaded.state_dict();
  REQUIRE(expected.size() == actual.size());
  for (const auto& entry : expected) {
    INFO(entry.first);
    REQUIRE(actual.contains(entry.first));
    CHECK(max_abs_difference(actual.at(entry.first), entry.second) == 0.0);
  }
  model.eval();
  loaded.eval();
  const Tensor<float> x = test::random_images<float>(c, 2, 50);
  CHECK(max_abs_difference(loaded(x), model(x)) == 0.0);
}
