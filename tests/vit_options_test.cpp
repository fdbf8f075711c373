// The ViT options of ViTConfig beyond timm's defaults: pooling without the class token (global_pool "avg" with
// fc_norm, and sequence pooling "seqpool"), LayerScale (init_values), stochastic depth (drop_path_rate), position
// embeddings "sincos" and "none" — their config fields, parameter names and shapes, values against composed ops,
// gradchecks in double, thread-count bit-identity, pos_embed loading, and parity with timm
// (tests/fixtures/timm_vit_options.safetensors, made by tests/fixtures/make_timm_options_fixture.py).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/io/safetensors.hpp>
#include <tessera/nn/nn.hpp>
#include <tessera/ops/loss.hpp>
#include <tessera/ops/ops.hpp>
#include <tessera/testing/gradcheck.hpp>

using tessera::Error;
using tessera::Generator;
using tessera::Shape;
using tessera::Tensor;
namespace io = tessera::io;
namespace nn = tessera::nn;
namespace ops = tessera::ops;

namespace {

using test::error_message;
using test::max_abs_difference;
using test::parameter_names;

// 4x4 images of 2 channels, 2x2 patches (a 2x2 grid), dim 8 (sincos needs a multiple of 4 from 8), 2 heads.
nn::ViTConfig tiny_config() {
  nn::ViTConfig c = test::tiny_4x4_vit_config();
  c.embed_dim = 8;
  return c;
}

template <class T>
std::vector<std::string> state_names(const nn::Module<T>& m) {
  return m.state_dict().names();
}
bool has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Spreads every parameter out (biases start at zero, LayerNorm weights at one, cls_token near zero) so every path
// matters; LayerNorm weights stay near one and LayerScale gammas near their start.
template <class T>
void spread(nn::Module<T>& model, uint64_t seed) {
  Generator gen(seed);
  for (auto& [name, p] : model.named_parameters())
    for (int64_t i = 0; i < p.numel(); ++i) {
      const bool norm_weight = name.find("norm") != std::string::npos && name.find("weight") != std::string::npos;
      const bool gamma = name.find(".gamma") != std::string::npos;
      p.data()[i] = static_cast<T>(norm_weight ? 1.0 + 0.2 * gen.normal()
                                   : gamma     ? 0.5 + 0.2 * gen.normal()
                                               : 0.3 * gen.normal());
    }
}

// The options under test, each a name and a change to tiny_config().
struct Option {
  const char* name;
  void (*apply)(nn::ViTConfig&);
};
const std::vector<Option>& options() {
  static const std::vector<Option> all = {
      {"avg, no class token (fc_norm)", [](nn::ViTConfig& c) { c.class_token = false; c.global_pool = "avg"; }},
      {"avg with the class token left out, norm before pooling",
       [](nn::ViTConfig& c) { c.global_pool = "avg"; c.fc_norm = false; }},
      {"seqpool, no class token", [](nn::ViTConfig& c) { c.class_token = false; c.global_pool = "seqpool"; }},
      {"seqpool with a class token and fc_norm",
       [](nn::ViTConfig& c) { c.global_pool = "seqpool"; c.fc_norm = true; }},
      {"token with fc_norm", [](nn::ViTConfig& c) { c.fc_norm = true; }},
      {"LayerScale", [](nn::ViTConfig& c) { c.init_values = 0.1; }},
      {"sincos", [](nn::ViTConfig& c) { c.pos_embed = "sincos"; }},
      {"sincos, avg, LayerScale, no class token",
       [](nn::ViTConfig& c) {
         c.pos_embed = "sincos";
         c.global_pool = "avg";
         c.class_token = false;
         c.init_values = 0.1;
       }},
      {"no position embedding", [](nn::ViTConfig& c) { c.pos_embed = "none"; }},
      {"no position embedding, no class token",
       [](nn::ViTConfig& c) { c.pos_embed = "none"; c.class_token = false; c.global_pool = "avg"; }},
  };
  return all;
}

}  // namespace

// ---- config --------------------------------------------------------------------------------------------------

TEST_CASE("ViTConfig options: defaults are timm's, JSON round trip, old configs load, clear errors") {
  const nn::ViTConfig defaults;
  CHECK(defaults.class_token);
  CHECK(defaults.global_pool == "token");
  CHECK_FALSE(defaults.fc_norm.has_value());
  CHECK_FALSE(defaults.uses_fc_norm());
  CHECK(defaults.init_values == 0.0);
  CHECK(defaults.pos_embed == "learn");
  CHECK(defaults.num_tokens() == defaults.num_patches() + 1);

  nn::ViTConfig c = tiny_config();
  c.class_token = false;
  c.global_pool = "seqpool";
  c.fc_norm = true;
  c.init_values = 1e-5;
  c.pos_embed = "sincos";
  CHECK(c.num_prefix_tokens() == 0);
  CHECK(c.num_tokens() == 4);
  CHECK(nn::ViTConfig::from_json(c.to_json()) == c);
  CHECK(nn::ViTConfig::from_json_string(c.to_json_string()) == c);
  c.fc_norm = false;
  CHECK(nn::ViTConfig::from_json(c.to_json()) == c);
  c.fc_norm.reset();
  CHECK(nn::ViTConfig::from_json(c.to_json()) == c);
  CHECK(c.to_json().at("fc_norm").is_null());

  // timm's default of fc_norm: on exactly for global_pool "avg".
  nn::ViTConfig avg;
  avg.global_pool = "avg";
  CHECK(avg.uses_fc_norm());
  avg.fc_norm = false;
  CHECK_FALSE(avg.uses_fc_norm());
  nn::ViTConfig seq;
  seq.global_pool = "seqpool";
  CHECK_FALSE(seq.uses_fc_norm());

  // A config written before these fields existed (a checkpoint's) loads as the model it was.
  const auto old = nn::ViTConfig::from_json_string(
      R"({"img_size": 32, "patch_size": 4, "in_chans": 3, "num_classes": 10, "embed_dim": 96, "depth": 3,
          "num_heads": 3, "mlp_ratio": 2.0, "qkv_bias": true, "drop_rate": 0.0, "pos_drop_rate": 0.0,
          "attn_drop_rate": 0.0, "proj_drop_rate": 0.0, "drop_path_rate": 0.1, "layer_norm_eps": 1e-6,
          "weight_init": ""})");
  CHECK(old.class_token);
  CHECK(old.global_pool == "token");
  CHECK(old.pos_embed == "learn");
  CHECK(old.init_values == 0.0);
  // timm's None for init_values and fc_norm.
  const auto nulls = nn::ViTConfig::from_json_string(R"({"init_values": null, "fc_norm": null, "pos_embed": ""})");
  CHECK(nulls.init_values == 0.0);
  CHECK_FALSE(nulls.fc_norm.has_value());
  CHECK_FALSE(nulls.has_pos_embed());

  test::check_error([] { nn::ViTConfig::from_json_string(R"({"class_token": false})"); },
                    {"global_pool \"token\"", "class_token"});
  test::check_error([] { nn::ViTConfig::from_json_string(R"({"global_pool": "map"})"); },
                    {"global_pool", "\"map\"", "\"avg\"", "seqpool"});
  test::check_error([] { nn::ViTConfig::from_json_string(R"({"global_pool": ""})"); }, {"global_pool"});
  test::check_error([] { nn::ViTConfig::from_json_string(R"({"init_values": -0.1})"); }, {"init_values", "-0.1"});
  test::check_error([] { nn::ViTConfig::from_json_string(R"({"pos_embed": "rope"})"); }, {"pos_embed", "rope"});
  test::check_error([] { nn::ViTConfig::from_json_string(R"({"pos_embed": "sincos", "embed_dim": 6, "num_heads": 2})"); },
                    {"sincos", "embed_dim 6"});
  test::check_error([] { nn::ViTConfig::from_json_string(R"({"fc_norm": "yes"})"); }, {"fc_norm", "true or false"});
  test::check_error([] { nn::ViTConfig::from_json_string(R"({"class_token": 1})"); }, {"class_token"});
}

// ---- parameter names and shapes ------------------------------------------------------------------------------

TEST_CASE("ViT options: timm's parameter names and shapes") {
  const Tensor<float> x = test::random_images<float>(tiny_config(), 3, 1);

  SUBCASE("class_token=false, global_pool='avg': no cls_token, pos_embed over the patches, fc_norm not norm") {
    nn::ViTConfig c = tiny_config();
    c.class_token = false;
    c.global_pool = "avg";
    nn::VisionTransformer<float> model(c, 0);
    const auto names = parameter_names(model);
    CHECK_FALSE(has(names, "cls_token"));
    CHECK(has(names, "pos_embed"));
    CHECK(model.pos_embed.shape() == Shape{1, 4, 8});
    CHECK_FALSE(model.cls_token.defined());
    CHECK(has(names, "fc_norm.weight"));
    CHECK(has(names, "fc_norm.bias"));
    CHECK_FALSE(has(names, "norm.weight"));
    CHECK(names.back() == "head.bias");
    CHECK(names[names.size() - 4] == "fc_norm.weight");  // timm's order: ..., fc_norm, head
    CHECK(model.forward_blocks(x).shape() == Shape{3, 4, 8});
    CHECK(model.forward_tokens(x).shape() == Shape{3, 4, 8});
    CHECK(model.forward_features(x).shape() == Shape{3, 8});
    CHECK(model(x).shape() == Shape{3, 3});
  }
  SUBCASE("global_pool='seqpool': attention_pool (1, dim) and (1), after norm") {
    nn::ViTConfig c = tiny_config();
    c.class_token = false;
    c.global_pool = "seqpool";
    nn::VisionTransformer<float> model(c, 0);
    const auto names = parameter_names(model);
    REQUIRE(model.attention_pool != nullptr);
    CHECK(model.attention_pool->weight.shape() == Shape{1, 8});
    CHECK(model.attention_pool->bias.shape() == Shape{1});
    const auto at = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
    CHECK(at("norm.weight") < at("attention_pool.weight"));
    CHECK(at("attention_pool.bias") < at("head.weight"));
    CHECK_FALSE(has(names, "fc_norm.weight"));
    CHECK(model(x).shape() == Shape{3, 3});
    const Tensor<float> w = model.sequence_pool_weights(model.forward_tokens(x));
    REQUIRE(w.shape() == Shape{3, 4});
    for (int64_t b = 0; b < 3; ++b) {
      double total = 0.0;
      for (int64_t p = 0; p < 4; ++p) total += w.data()[b * 4 + p];
      CHECK(total == doctest::Approx(1.0));
    }
    nn::VisionTransformer<float> token_model(tiny_config(), 0);
    CHECK(token_model.attention_pool == nullptr);
    CHECK(error_message([&] { token_model.sequence_pool_weights(token_model.forward_tokens(x)); })
              .find("seqpool") != std::string::npos);
  }
  SUBCASE("init_values > 0: blocks.N.ls1.gamma and ls2.gamma (dim) at init_values, in timm's order") {
    nn::ViTConfig c = tiny_config();
    c.init_values = 0.25;
    nn::VisionTransformer<float> model(c, 0);
    const auto names = parameter_names(model);
    for (int i = 0; i < 2; ++i) {
      const std::string b = "blocks." + std::to_string(i) + ".";
      const auto at = [&](const std::string& n) { return std::find(names.begin(), names.end(), b + n) - names.begin(); };
      REQUIRE(has(names, b + "ls1.gamma"));
      REQUIRE(has(names, b + "ls2.gamma"));
      CHECK(at("attn.proj.bias") + 1 == at("ls1.gamma"));
      CHECK(at("ls1.gamma") + 1 == at("norm2.weight"));
      CHECK(at("mlp.fc2.bias") + 1 == at("ls2.gamma"));
      const Tensor<float> gamma = model.parameter(b + "ls1.gamma");
      CHECK(gamma.shape() == Shape{8});
      for (int64_t k = 0; k < 8; ++k) CHECK(gamma.data()[k] == 0.25f);
    }
    CHECK(model.blocks[0].has_layer_scale());
    nn::VisionTransformer<float> plain(tiny_config(), 0);
    CHECK_FALSE(plain.blocks[0].has_layer_scale());
    CHECK_FALSE(has(parameter_names(plain), "blocks.0.ls1.gamma"));
  }
  SUBCASE("pos_embed='sincos': a buffer named pos_embed (state dict, not a parameter)") {
    nn::ViTConfig c = tiny_config();
    c.pos_embed = "sincos";
    nn::VisionTransformer<float> model(c, 0);
    CHECK_FALSE(has(parameter_names(model), "pos_embed"));
    CHECK(has(state_names(model), "pos_embed"));
    CHECK(model.named_buffers().size() == 1);
    CHECK(model.pos_embed.shape() == Shape{1, 5, 8});
    CHECK_FALSE(model.pos_embed.requires_grad());
    for (int64_t k = 0; k < 8; ++k) CHECK(model.pos_embed.data()[k] == 0.0f);  // the class token's row
    const Tensor<float> loss = ops::cross_entropy(model(x), {0, 1, 2}, 0.0);
    loss.backward();
    CHECK_FALSE(model.pos_embed.grad().defined());
    CHECK(model.num_parameters() == nn::VisionTransformer<float>(tiny_config(), 0).num_parameters() - 5 * 8);
  }
  SUBCASE("pos_embed='none': no pos_embed at all, with or without a class token") {
    nn::ViTConfig c = tiny_config();
    c.pos_embed = "none";
    nn::VisionTransformer<float> with_cls(c, 0);
    CHECK_FALSE(has(state_names(with_cls), "pos_embed"));
    CHECK_FALSE(with_cls.pos_embed.defined());
    CHECK(with_cls.forward_blocks(x).shape() == Shape{3, 5, 8});
    c.class_token = false;
    c.global_pool = "avg";
    nn::VisionTransformer<float> bare(c, 0);
    CHECK_FALSE(has(state_names(bare), "pos_embed"));
    CHECK_FALSE(has(state_names(bare), "cls_token"));
    CHECK(bare.forward_blocks(x).shape() == Shape{3, 4, 8});
  }
}

// ---- values against composed ops ----------------------------------------------------------------------------

TEST_CASE("ViT options: pooling, norms and the token sequence compute timm's function") {
  const Tensor<double> x = test::random_images<double>(tiny_config(), 3, 2);
  for (const auto& option : options()) {
    INFO(option.name);
    nn::ViTConfig c = tiny_config();
    option.apply(c);
    nn::VisionTransformer<double> model(c, 3);
    spread(model, 4);
    model.eval();
    const int64_t B = 3, P = 4, D = 8, prefix = c.num_prefix_tokens();

    // The token sequence: [cls_token] + patches, plus pos_embed (when any), from the patch embedding alone.
    const Tensor<double> patches = model.patch_embed(x);
    Tensor<double> tokens = Tensor<double>::zeros(Shape{B, prefix + P, D});
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < prefix + P; ++t)
        for (int64_t e = 0; e < D; ++e) {
          double v = t < prefix ? model.cls_token.data()[e] : patches.data()[(b * P + t - prefix) * D + e];
          if (c.has_pos_embed()) v += model.pos_embed.data()[t * D + e];
          tokens.data()[(b * (prefix + P) + t) * D + e] = v;
        }
    Tensor<double> h = tokens;
    for (auto& block : model.blocks) h = (*block)(h);
    CHECK(max_abs_difference(model.forward_blocks(x), h) < 1e-12);

    // Pooling as timm (and Compact Transformers for seqpool), written out element by element.
    const Tensor<double> normed = c.uses_fc_norm() ? h : model.norm(h);
    Tensor<double> pooled = Tensor<double>::zeros(Shape{B, D});
    for (int64_t b = 0; b < B; ++b) {
      const double* row = normed.data() + b * (prefix + P) * D;
      if (c.global_pool == "token") {
        for (int64_t e = 0; e < D; ++e) pooled.data()[b * D + e] = row[e];
      } else if (c.global_pool == "avg") {
        for (int64_t t = prefix; t < prefix + P; ++t)
          for (int64_t e = 0; e < D; ++e) pooled.data()[b * D + e] += row[t * D + e] / static_cast<double>(P);
      } else {
        std::vector<double> score(static_cast<size_t>(P));
        double top = -INFINITY, total = 0.0;
        for (int64_t p = 0; p < P; ++p) {
          double s = model.attention_pool->bias.data()[0];
          for (int64_t e = 0; e < D; ++e) s += model.attention_pool->weight.data()[e] * row[(prefix + p) * D + e];
          score[static_cast<size_t>(p)] = s;
          top = std::max(top, s);
        }
        for (auto& s : score) total += (s = std::exp(s - top));
        for (int64_t p = 0; p < P; ++p)
          for (int64_t e = 0; e < D; ++e)
            pooled.data()[b * D + e] += score[static_cast<size_t>(p)] / total * row[(prefix + p) * D + e];
      }
    }
    if (c.uses_fc_norm()) pooled = model.fc_norm(pooled);
    CHECK(max_abs_difference(model.forward_features(x), pooled) < 1e-12);
    CHECK(max_abs_difference(model(x), model.head(pooled)) < 1e-12);
    CHECK(max_abs_difference(model.forward_tokens(x), normed) < 1e-12);
  }
}

TEST_CASE("LayerScale: each branch output times gamma, on the fused path and on the drop-path one") {
  nn::TransformerBlockOptions o;
  o.dim = 12;
  o.num_heads = 3;
  o.mlp_hidden_dim = 20;
  o.init_values = 0.3;
  nn::TransformerBlock<float> block(o);
  spread(block, 5);
  Generator gen(6);
  const Tensor<float> x = Tensor<float>::normal(Shape{2, 5, 12}, 0.0f, 1.0f, gen);
  // timm's Block written with unfused ops.
  auto& b = block;
  const Tensor<float> h = ops::add(x, ops::mul(b.attn(b.norm1(x)), b.ls1->gamma));
  const Tensor<float> expected = ops::add(h, ops::mul(b.mlp(b.norm2(h)), b.ls2->gamma));
  block.eval();
  CHECK(max_abs_difference(block(x), expected) < 1e-5);
  block.train();  // rates 0: still the fused path
  CHECK(max_abs_difference(block(x), expected) < 1e-5);
  // A drop-path so small that every sample is kept with scale 1/(1 - 1e-9), which is 1.0f: the unfused path.
  o.drop_path = 1e-9;
  nn::TransformerBlock<float> dropping(o);
  dropping.load_state_dict(block.state_dict());
  CHECK_FALSE(dropping.drop_path1.is_identity());
  CHECK(max_abs_difference(dropping(x), expected) < 1e-5);

  // fold_into: linear(x, weight * gamma[:, None], bias * gamma) = gamma * linear(x, weight, bias).
  const auto [weight, bias] = b.ls1->fold_into(b.attn.proj.weight, b.attn.proj.bias);
  const Tensor<float> y = Tensor<float>::normal(Shape{4, 12}, 0.0f, 1.0f, gen);
  CHECK(max_abs_difference(ops::linear(y, weight, bias), b.ls1->forward(b.attn.proj(y))) < 1e-5);
  test::check_error([&] { b.ls1->forward(Tensor<float>::zeros(Shape{2, 5})); }, {"LayerScale", "'ls1'", "(2, 5)"});
}

// ---- gradchecks ----------------------------------------------------------------------------------------------

TEST_CASE("gradcheck: weighted_token_sum at odd sizes") {
  using Inputs = std::vector<Tensor<double>>;
  for (const auto& size : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {3, 7, 5}, {2, 65, 3}}) {
    const int64_t B = size[0], N = size[1], E = size[2];
    INFO(B << "x" << N << "x" << E);
    const Tensor<double> tokens = test::random_input(Shape{B, N, E}, 1);
    const Tensor<double> weights = test::random_input(Shape{B, N}, 2);
    CHECK_GRADCHECK([](const Inputs& in) { return ops::weighted_token_sum(in[0], in[1]); }, {tokens, weights});
    // Value: out[b, e] = Σ_n w[b, n] x[b, n, e].
    const Tensor<double> out = ops::weighted_token_sum(tokens, weights);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t e = 0; e < E; ++e) {
        double s = 0.0;
        for (int64_t n = 0; n < N; ++n) s += weights.data()[b * N + n] * tokens.data()[(b * N + n) * E + e];
        CHECK(out.data()[b * E + e] == doctest::Approx(s).epsilon(1e-14));
      }
  }
  // Only one input needing a gradient.
  const Tensor<double> tokens = test::random_input(Shape{2, 3, 4}, 3);
  const Tensor<double> fixed = Tensor<double>::uniform(Shape{2, 3}, 0.0, 1.0);
  CHECK_GRADCHECK([&](const Inputs& in) { return ops::weighted_token_sum(in[0], fixed); }, {tokens});
  test::check_error([] { ops::weighted_token_sum(Tensor<double>::zeros(Shape{2, 3, 4}), Tensor<double>::zeros(Shape{2, 4})); },
                    {"weighted_token_sum", "(2, 3)", "(2, 4)", "(2, 3, 4)"});
  test::check_error([] { ops::weighted_token_sum(Tensor<double>::zeros(Shape{3, 4}), Tensor<double>::zeros(Shape{3})); },
                    {"weighted_token_sum", "(B, N, E)"});
}

TEST_CASE("gradcheck: a tiny ViT in double with each option, logits and loss, every parameter and the image") {
  for (const auto& option : options()) {
    INFO(option.name);
    nn::ViTConfig c = tiny_config();
    option.apply(c);
    nn::VisionTransformer<double> model(c, 7);
    spread(model, 8);
    std::vector<Tensor<double>> inputs = {test::random_images<double>(c, 2, 9).set_requires_grad()};
    for (const auto& [name, p] : model.named_parameters()) inputs.push_back(p);
    CHECK_GRADCHECK([&](const std::vector<Tensor<double>>& in) { return model(in[0]); }, inputs);
    const std::vector<int64_t> labels = {2, 0};
    CHECK_GRADCHECK(
        [&](const std::vector<Tensor<double>>& in) { return ops::cross_entropy(model(in[0]), labels, 0.1); }, inputs);
  }
}

TEST_CASE("gradcheck: stochastic depth in training mode (the unfused residual path), with and without LayerScale") {
  for (double init_values : {0.0, 0.2}) {
    INFO("init_values " << init_values);
    nn::ViTConfig c = tiny_config();
    c.drop_path_rate = 0.5;
    c.init_values = init_values;
    c.global_pool = "avg";
    nn::VisionTransformer<double> model(c, 10);
    spread(model, 11);
    model.train();
    Generator noise(12);
    model.set_generator(noise);
    std::vector<Tensor<double>> inputs = {test::random_images<double>(c, 4, 13).set_requires_grad()};
    for (const auto& [name, p] : model.named_parameters()) inputs.push_back(p);
    // The same drop-path masks at every evaluation: the generator is re-seeded before each forward.
    const auto f = [&](const std::vector<Tensor<double>>& in) {
      noise.manual_seed(12);
      return model(in[0]);
    };
    CHECK_GRADCHECK(f, inputs);
    // The masks drop some samples of the last block and keep others (else this would test no drop-path at all).
    noise.manual_seed(12);
    model.eval();
    const Tensor<double> kept = model(inputs[0]);
    model.train();
    CHECK(max_abs_difference(f(inputs), kept) > 1e-3);
  }
}

// ---- fixed 2D sin-cos position embedding ----------------------------------------------------------------------

TEST_CASE("posemb_sincos_2d: big_vision's table, computed here another way") {
  // dim 8: omega = (1, 1/10000); the patch at column x = 1, row y = 2 of a 3x4 grid is token 2 * 4 + 1 = 9.
  const Tensor<double> small = nn::posemb_sincos_2d<double>(nn::GridSize{3, 4}, 8);
  REQUIRE(small.shape() == Shape{1, 12, 8});
  const double* t9 = small.data() + 9 * 8;
  const double expected[8] = {std::sin(1.0), std::sin(1e-4), std::cos(1.0), std::cos(1e-4),
                              std::sin(2.0), std::sin(2e-4), std::cos(2.0), std::cos(2e-4)};
  for (int k = 0; k < 8; ++k) CHECK(t9[k] == doctest::Approx(expected[k]).epsilon(1e-15));
  for (int k = 0; k < 8; ++k) CHECK(small.data()[k] == (k % 4 < 2 ? 0.0 : 1.0));  // (0, 0): sin 0 and cos 0

  // Any size: omega_k = exp(-ln(T) k / (Q - 1)) instead of T^(-k / (Q - 1)); 2 prefix rows of zeros.
  const int64_t H = 5, W = 7, D = 24, Q = D / 4;
  const Tensor<float> table = nn::posemb_sincos_2d<float>(nn::GridSize{H, W}, D, 2, 100.0);
  REQUIRE(table.shape() == Shape{1, 2 + H * W, D});
  for (int64_t i = 0; i < 2 * D; ++i) CHECK(table.data()[i] == 0.0f);
  double worst = 0.0;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t k = 0; k < D; ++k) {
        const int64_t part = k / Q, j = k % Q;
        const double omega = std::exp(-std::log(100.0) * static_cast<double>(j) / static_cast<double>(Q - 1));
        const double angle = static_cast<double>(part < 2 ? x : y) * omega;
        const double e = part % 2 == 0 ? std::sin(angle) : std::cos(angle);
        worst = std::max(worst, std::abs(e - table.data()[(2 + y * W + x) * D + k]));
      }
  CHECK(worst < 1e-6);

  test::check_error([] { nn::posemb_sincos_2d<float>(nn::GridSize{2, 2}, 4); }, {"posemb_sincos_2d", "dim", "4"});
  test::check_error([] { nn::posemb_sincos_2d<float>(nn::GridSize{2, 2}, 18); }, {"posemb_sincos_2d", "18"});
  test::check_error([] { nn::posemb_sincos_2d<float>(nn::GridSize{0, 2}, 8); }, {"posemb_sincos_2d", "grid"});
}

TEST_CASE("pos_embed in a state dict: resampled without a class token, recomputed for sincos, absent for none") {
  nn::ViTConfig small = tiny_config();  // 2x2 grid
  small.img_size = 8;                   // 4x4 grid
  small.class_token = false;
  small.global_pool = "avg";
  nn::VisionTransformer<float> source(small, 1);
  nn::ViTConfig big = small;
  big.img_size = 12;  // 6x6 grid
  nn::VisionTransformer<float> target(big, 2);

  nn::StateDict<float> dict = source.state_dict();
  CHECK(nn::resample_pos_embed_in_state_dict(dict, big));
  const Tensor<float> expected = nn::resample_abs_pos_embed(source.pos_embed, nn::GridSize{6, 6}, nn::GridSize{4, 4}, 0);
  CHECK(max_abs_difference(dict.at("pos_embed"), expected) == 0.0);
  CHECK(target.load_state_dict(dict).ok());

  small.pos_embed = big.pos_embed = "sincos";
  small.class_token = big.class_token = true;
  nn::VisionTransformer<float> sincos_source(small, 1), sincos_target(big, 2);
  dict = sincos_source.state_dict();
  CHECK(nn::resample_pos_embed_in_state_dict(dict, big));
  CHECK(max_abs_difference(dict.at("pos_embed"), sincos_target.pos_embed) == 0.0);  // the 6x6 table, not resampled
  CHECK(dict.at("pos_embed").shape() == Shape{1, 37, 8});

  small.pos_embed = big.pos_embed = "none";
  nn::VisionTransformer<float> bare_source(small, 1), bare_target(big, 2);
  dict = bare_source.state_dict();
  CHECK_FALSE(nn::resample_pos_embed_in_state_dict(dict, big));
  CHECK(bare_target.load_state_dict(dict).ok());
}

// ---- thread-count bit-identity --------------------------------------------------------------------------------

TEST_CASE("determinism: the ViT options give the same bits on 1, 2 and 3 threads") {
  // vit_cifar's widths over fewer blocks, large enough for the threaded kernel paths, with drop-path on.
  nn::ViTConfig base = nn::ViTConfig::vit_cifar();
  base.embed_dim = 96;
  base.depth = 2;
  base.drop_path_rate = 0.2;
  std::vector<std::pair<std::string, nn::ViTConfig>> configs;
  nn::ViTConfig avg = base;
  avg.class_token = false;
  avg.global_pool = "avg";
  avg.init_values = 0.1;
  avg.pos_embed = "sincos";
  configs.emplace_back("avg, LayerScale, sincos, no class token", avg);
  nn::ViTConfig seq = base;
  seq.global_pool = "seqpool";
  seq.init_values = 1e-4;
  configs.emplace_back("seqpool, LayerScale, class token", seq);
  test::check_same_bits_on_1_2_3_threads(
      configs, [](const nn::ViTConfig& config, int threads) { return test::vit_forward_backward(config, threads); });
}

// ---- parity with timm -----------------------------------------------------------------------------------------

namespace {

// Each element within kTolerance·max(1, |timm's|).
constexpr double kTolerance = 1e-5;

double worst_relative_error(const Tensor<float>& actual, const Tensor<float>& expected) {
  REQUIRE(actual.defined());
  REQUIRE(actual.shape() == expected.shape());
  double worst = 0.0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    const double e = expected.data()[i], a = actual.data()[i];
    const double error = std::abs(a - e) / std::max(1.0, std::abs(e));
    worst = std::isnan(error) ? INFINITY : std::max(worst, error);
  }
  return worst;
}

void check_timm_case(const io::SafetensorsFile& file, const std::string& name, bool sincos) {
  const std::string prefix = name + ".";
  REQUIRE(file.metadata().count(prefix + "config") == 1);
  const nn::ViTConfig config = nn::ViTConfig::from_json_string(file.metadata().at(prefix + "config"));
  nn::VisionTransformer<float> model(config, 0);

  // Load every "param.<timm name>" by name, strictly: the names and shapes are timm's.
  nn::StateDict<float> params;
  for (const auto& key : file.names())
    if (key.rfind(prefix + "param.", 0) == 0) params.insert(key.substr(prefix.size() + 6), file.tensor<float>(key));
  if (sincos) {
    // timm's file holds the table (computed in Python) as a learned pos_embed; tessera's own table is the same.
    CHECK(max_abs_difference(model.pos_embed, params.at("pos_embed")) <= 1e-7);
  }
  const nn::LoadReport report = model.load_state_dict(params, true);
  CHECK(report.ok());
  CHECK(report.loaded.size() == params.size());

  const Tensor<float> x = file.tensor<float>(prefix + "input");
  const std::vector<int64_t> labels = file.int64s(prefix + "labels");
  const Tensor<float> logits = model(x);
  const Tensor<float> loss = ops::cross_entropy(logits, labels, 0.0);
  double worst = worst_relative_error(logits, file.tensor<float>(prefix + "logits"));
  worst = std::max(worst, worst_relative_error(loss.view(Shape{1}), file.tensor<float>(prefix + "loss")));
  MESSAGE(name << ": logits and loss, worst relative error " << worst);
  CHECK(worst <= kTolerance);

  loss.backward();
  double worst_grad = 0.0;
  std::string worst_name;
  size_t compared = 0;
  for (const auto& [n, p] : model.named_parameters()) {
    const std::string key = prefix + "grad." + n;
    REQUIRE(file.contains(key));
    const double e = worst_relative_error(p.grad(), file.tensor<float>(key));
    if (e >= worst_grad) worst_grad = e, worst_name = n;
    ++compared;
  }
  MESSAGE(name << ": " << compared << " gradients, worst relative error " << worst_grad << " (" << worst_name << ")");
  CHECK(compared == model.named_parameters().size());
  CHECK(compared == params.size() - (sincos ? 1 : 0));  // every timm parameter but the fixed table
  CHECK(worst_grad <= kTolerance);
}

}  // namespace

TEST_CASE("timm parity: class_token=False, global_pool='avg' (fc_norm), LayerScale; class token + avg + sincos; "
          "pos_embed='none' + LayerScale") {
  const io::SafetensorsFile file =
      io::SafetensorsFile::read(std::string(TESSERA_FIXTURES_DIR) + "/timm_vit_options.safetensors");
  SUBCASE("avg_ls") { check_timm_case(file, "avg_ls", false); }
  SUBCASE("sincos_avg") { check_timm_case(file, "sincos_avg", true); }
  SUBCASE("nopos_ls") { check_timm_case(file, "nopos_ls", false); }
}
