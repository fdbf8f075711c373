// Tests of nn/: Module naming, freezing, state dicts and load reports; the layers; the VisionTransformer's names,
// parameter counts, initialisation, train/eval behaviour, shape errors and gradients; ViTConfig and its JSON.
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/nn/nn.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/ops/loss.hpp>

using tessera::Error;
using tessera::Generator;
using tessera::Shape;
using tessera::Tensor;
namespace nn = tessera::nn;
namespace ops = tessera::ops;

namespace {

using test::error_message;

// A small model for the tiny-ViT tests: 4x4 images of 2 channels, 2x2 patches, dim 6, 2 heads, MLP 9 wide.
nn::ViTConfig tiny_config() { return test::tiny_4x4_vit_config(); }

// timm's parameter names for a ViT of `depth` blocks, in timm's order.
std::vector<std::string> timm_names(int depth) {
  std::vector<std::string> names = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"};
  for (int i = 0; i < depth; ++i)
    for (const char* n : {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                          "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                          "mlp.fc2.weight", "mlp.fc2.bias"})
      names.push_back("blocks." + std::to_string(i) + "." + n);
  for (const char* n : {"norm.weight", "norm.bias", "head.weight", "head.bias"}) names.push_back(n);
  return names;
}

template <class T>
std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor<T>>>& named) {
  std::vector<std::string> out;
  for (const auto& [n, t] : named) out.push_back(n);
  return out;
}

template <class T>
bool same_values(const Tensor<T>& a, const Tensor<T>& b) {
  if (!(a.shape() == b.shape())) return false;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (a.data()[i] != b.data()[i]) return false;
  return true;
}

template <class T>
double stddev(const Tensor<T>& t) {
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < t.numel(); ++i) sum += t.data()[i];
  const double mean = sum / static_cast<double>(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) sq += (t.data()[i] - mean) * (t.data()[i] - mean);
  return std::sqrt(sq / static_cast<double>(t.numel()));
}

template <class T>
double max_abs(const Tensor<T>& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(t.data()[i])));
  return m;
}


// A two-level module for the Module tests: own parameter "scale", buffer "count", and two Linears.
struct Toy : nn::Module<double> {
  Toy() : nn::Module<double>("Toy"), first(3, 4), second(4, 2, false) {
    scale = Tensor<double>::ones(Shape{2});
    count = Tensor<double>::zeros(Shape{1});
    register_module("first", first);
    register_parameter("scale", scale);
    register_buffer("count", count);
    register_module("second", second);
  }
  Tensor<double> forward(const Tensor<double>& x) { return ops::mul(second(first(x)), scale); }
  Tensor<double> scale, count;
  nn::Linear<double> first, second;
};

}  // namespace

TEST_CASE("glob_match: whole-name patterns with * and ?") {
  CHECK(nn::glob_match("head.*", "head.weight"));
  CHECK(nn::glob_match("blocks.5.*", "blocks.5.attn.qkv.weight"));
  CHECK_FALSE(nn::glob_match("blocks.5.*", "blocks.50.attn.qkv.weight"));
  CHECK(nn::glob_match("blocks.*.norm1.*", "blocks.11.norm1.bias"));
  CHECK(nn::glob_match("*", "anything.at.all"));
  CHECK(nn::glob_match("pos_embed", "pos_embed"));
  CHECK_FALSE(nn::glob_match("pos_embed", "pos_embed2"));
  CHECK(nn::glob_match("blocks.?.mlp.*", "blocks.3.mlp.fc1.bias"));
  CHECK_FALSE(nn::glob_match("blocks.?.mlp.*", "blocks.10.mlp.fc1.bias"));
  CHECK(nn::glob_match("*bias", "head.bias"));
  CHECK_FALSE(nn::glob_match("*bias", "head.weight"));
}

TEST_CASE("Module: own parameters first, then submodules; buffers in the state dict; paths") {
  Toy toy;
  CHECK(names_of(toy.named_parameters()) ==
        std::vector<std::string>{"scale", "first.weight", "first.bias", "second.weight"});
  CHECK(names_of(toy.named_buffers()) == std::vector<std::string>{"count"});
  CHECK(toy.state_dict().names() ==
        std::vector<std::string>{"scale", "count", "first.weight", "first.bias", "second.weight"});
  CHECK(toy.num_parameters() == 2 + 12 + 4 + 8);
  CHECK(toy.first.path() == "first");
  CHECK(toy.first.where() == "Linear 'first'");
  CHECK(toy.where() == "Toy");
  CHECK(toy.parameter("first.bias").shares_storage_with(toy.first.bias));
  CHECK_THROWS_AS(toy.parameter("nope"), Error);
  for (const auto& p : toy.parameters()) CHECK(p.requires_grad());
  CHECK_FALSE(toy.count.requires_grad());

  struct Twice : nn::Module<double> {
    Twice() : nn::Module<double>("Twice") {
      a = Tensor<double>::zeros(Shape{1});
      register_parameter("a", a);
      register_parameter("a", a);
    }
    Tensor<double> a;
  };
  CHECK_THROWS_AS(Twice(), Error);
}

TEST_CASE("Module: train/eval propagate to every submodule") {
  nn::VisionTransformer<float> model(tiny_config(), 1);
  CHECK(model.is_training());
  model.eval();
  int visited = 0;
  model.visit_modules([&](const std::string&, nn::Module<float>& m) {
    CHECK_FALSE(m.is_training());
    ++visited;
  });
  CHECK(visited > 20);
  model.train();
  CHECK(model.blocks[1].attn.proj_drop.is_training());
}

TEST_CASE("VisionTransformer: timm's names, shapes and parameter count for vit_cifar") {
  nn::VisionTransformer<float> model(nn::ViTConfig::vit_cifar(), 0);
  const auto named = model.named_parameters();
  CHECK(names_of(named) == timm_names(6));
  // 1806538 is what timm 1.0.31 reports for VisionTransformer(img_size=32, patch_size=4, num_classes=10,
  // embed_dim=192, depth=6, num_heads=3, mlp_ratio=2.0, qkv_bias=True): sum(p.numel() for p in m.parameters()).
  CHECK(model.num_parameters() == 1806538);
  CHECK(model.num_trainable_parameters() == 1806538);
  CHECK(model.cls_token.shape() == Shape{1, 1, 192});
  CHECK(model.pos_embed.shape() == Shape{1, 65, 192});
  CHECK(model.patch_embed.proj.weight.shape() == Shape{192, 3, 4, 4});
  CHECK(model.blocks[0].attn.qkv.weight.shape() == Shape{576, 192});
  CHECK(model.blocks[5].mlp.fc1.weight.shape() == Shape{384, 192});
  CHECK(model.head.weight.shape() == Shape{10, 192});
}

TEST_CASE("ViTConfig presets carry timm's values and parameter counts") {
  const auto tiny = nn::ViTConfig::vit_tiny_patch16_224();
  const auto small = nn::ViTConfig::vit_small_patch16_224();
  const auto base = nn::ViTConfig::vit_base_patch16_224();
  for (const auto& c : {tiny, small, base}) {
    CHECK(c.img_size == 224);
    CHECK(c.patch_size == 16);
    CHECK(c.depth == 12);
    CHECK(c.num_classes == 1000);
    CHECK(c.mlp_ratio == 4.0);
    CHECK(c.qkv_bias);
  }
  CHECK((tiny.embed_dim == 192 && tiny.num_heads == 3));
  CHECK((small.embed_dim == 384 && small.num_heads == 6));
  CHECK((base.embed_dim == 768 && base.num_heads == 12));
  // timm 1.0.31: sum(p.numel()) of timm.create_model("vit_tiny_patch16_224") and of "vit_small_patch16_224".
  CHECK(nn::VisionTransformer<float>(tiny, 0).num_parameters() == 5717416);
  CHECK(nn::VisionTransformer<float>(small, 0).num_parameters() == 22050664);
  const auto cifar = nn::ViTConfig::vit_cifar();
  CHECK((cifar.img_size == 32 && cifar.patch_size == 4 && cifar.embed_dim == 192 && cifar.depth == 6 &&
         cifar.num_heads == 3 && cifar.mlp_ratio == 2.0 && cifar.num_classes == 10));
}

TEST_CASE("ViTConfig: JSON round trip, timm defaults for absent keys, errors") {
  nn::ViTConfig c = tiny_config();
  c.drop_path_rate = 0.1;
  c.attn_drop_rate = 0.05;
  c.layer_norm_eps = 1e-5;
  c.weight_init = "jax";
  CHECK(nn::ViTConfig::from_json(c.to_json()) == c);
  CHECK(nn::ViTConfig::from_json_string(c.to_json_string()) == c);

  // The fixture's metadata: timm argument names only.
  const auto fixture = nn::ViTConfig::from_json_string(
      R"({"img_size": 32, "patch_size": 4, "in_chans": 3, "num_classes": 10, "embed_dim": 96, "depth": 3,
          "num_heads": 3, "mlp_ratio": 2.0, "qkv_bias": true})");
  CHECK(fixture.embed_dim == 96);
  CHECK(fixture.layer_norm_eps == 1e-6);
  CHECK(fixture.drop_rate == 0.0);
  CHECK(nn::ViTConfig::from_json_string("{}") == nn::ViTConfig{});

  CHECK(error_message([] { nn::ViTConfig::from_json_string(R"({"global_pool": "max"})"); }).find("global_pool") !=
        std::string::npos);
  CHECK(error_message([] { nn::ViTConfig::from_json_string(R"({"pool": "avg"})"); }).find("unknown key") !=
        std::string::npos);
  CHECK_THROWS_AS(nn::ViTConfig::from_json_string(R"({"depth": "six"})"), Error);
  CHECK_THROWS_AS(nn::ViTConfig::from_json_string(R"({"depth": 6.5})"), Error);
  CHECK_THROWS_AS(nn::ViTConfig::from_json_string("{not json"), Error);
  CHECK(error_message([] { nn::ViTConfig::from_json_string(R"({"img_size": 30, "patch_size": 4})"); })
            .find("not divisible by patch_size") != std::string::npos);
  CHECK_THROWS_AS(nn::ViTConfig::from_json_string(R"({"embed_dim": 10, "num_heads": 3})"), Error);
  CHECK_THROWS_AS(nn::ViTConfig::from_json_string(R"({"drop_rate": 1.0})"), Error);
  CHECK_THROWS_AS(nn::ViTConfig::from_json_string(R"({"weight_init": "moco"})"), Error);
}

TEST_CASE("VisionTransformer: timm's initialisation from a seeded generator") {
  nn::VisionTransformer<float> model(nn::ViTConfig::vit_cifar(), 7);
  CHECK(stddev(model.pos_embed) == doctest::Approx(0.02).epsilon(0.05));
  CHECK(max_abs(model.cls_token) < 1e-5);
  CHECK(max_abs(model.cls_token) > 0.0);
  for (auto& block : model.blocks) {
    CHECK(stddev(block->attn.qkv.weight) == doctest::Approx(0.02).epsilon(0.05));
    CHECK(stddev(block->mlp.fc2.weight) == doctest::Approx(0.02).epsilon(0.05));
    CHECK(max_abs(block->attn.qkv.bias) == 0.0);
    CHECK(max_abs(block->mlp.fc1.bias) == 0.0);
    CHECK(max_abs(block->norm1.bias) == 0.0);
    CHECK(block->norm2.weight.data()[0] == 1.0f);
  }
  CHECK(stddev(model.head.weight) == doctest::Approx(0.02).epsilon(0.15));
  // The patch Conv2d keeps torch's default: U(±1/sqrt(fan_in)), fan_in = 3·4·4, for weight and bias.
  const double bound = 1.0 / std::sqrt(48.0);
  CHECK(max_abs(model.patch_embed.proj.weight) <= bound);
  CHECK(stddev(model.patch_embed.proj.weight) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.05));
  CHECK(max_abs(model.patch_embed.proj.bias) <= bound);
  CHECK(max_abs(model.patch_embed.proj.bias) > 0.0);

  // Same seed, same parameters; another seed, others.
  nn::VisionTransformer<float> again(nn::ViTConfig::vit_cifar(), 7), other(nn::ViTConfig::vit_cifar(), 8);
  CHECK(same_values(model.blocks[3].attn.proj.weight, again.blocks[3].attn.proj.weight));
  CHECK(same_values(model.pos_embed, again.pos_embed));
  CHECK_FALSE(same_values(model.pos_embed, other.pos_embed));

  nn::ViTConfig jax = nn::ViTConfig::vit_cifar();
  jax.weight_init = "jax_nlhb";
  nn::VisionTransformer<float> jax_model(jax, 7);
  CHECK(max_abs(jax_model.head.weight) == 0.0);
  CHECK(jax_model.head.bias.data()[0] == doctest::Approx(-std::log(10.0)));
  // xavier_uniform on qkv: U(±sqrt(6/(192+576))).
  CHECK(max_abs(jax_model.blocks[0].attn.qkv.weight) <= std::sqrt(6.0 / 768.0));
  CHECK(stddev(jax_model.blocks[0].attn.qkv.weight) == doctest::Approx(std::sqrt(2.0 / 768.0)).epsilon(0.05));
  CHECK(max_abs(jax_model.blocks[0].mlp.fc1.bias) > 0.0);
  CHECK(max_abs(jax_model.blocks[0].mlp.fc1.bias) < 1e-5);
  CHECK(max_abs(jax_model.blocks[0].attn.proj.bias) == 0.0);
  CHECK(stddev(jax_model.patch_embed.proj.weight) == doctest::Approx(std::sqrt(1.0 / 48.0)).epsilon(0.1));
  CHECK(max_abs(jax_model.patch_embed.proj.bias) == 0.0);
}

TEST_CASE("init: trunc_normal_ keeps values inside absolute bounds") {
  Generator gen(3);
  Tensor<double> t(Shape{4000});
  nn::init::trunc_normal_(t, 1.0, gen, 0.0, -0.5, 0.5);
  CHECK(max_abs(t) <= 0.5);
  CHECK(stddev(t) == doctest::Approx(0.2876).epsilon(0.05));  // sd of N(0,1) truncated to ±0.5
  CHECK_THROWS_AS(nn::init::trunc_normal_(t, 1.0, gen, 0.0, 1.0, -1.0), Error);
  CHECK_THROWS_AS(nn::init::xavier_uniform_(t, gen), Error);  // rank 1 has no fans
}

TEST_CASE("Freezing by glob pattern: counts, gradients and errors") {
  nn::VisionTransformer<float> model(nn::ViTConfig::vit_cifar(), 0);
  CHECK(model.freeze() == 80);
  CHECK(model.num_trainable_parameters() == 0);
  CHECK(model.unfreeze("head.*") == 2);
  CHECK(model.num_trainable_parameters() == 192 * 10 + 10);
  CHECK(model.unfreeze("blocks.5.*") == 12);
  CHECK(model.num_trainable_parameters() == 1930 + (576 * 192 + 576 + 192 * 192 + 192 + 384 * 192 + 384 +
                                                             192 * 384 + 192 + 4 * 192));
  CHECK(error_message([&] { model.freeze("blocks.9.*"); }).find("blocks.9.*") != std::string::npos);

  // Only unfrozen parameters receive gradients.
  nn::VisionTransformer<float> tiny(tiny_config(), 0);
  tiny.freeze();
  tiny.unfreeze("head.*");
  ops::sum(tiny(test::random_images<float>(tiny_config(), 2, 1))).backward();
  CHECK(tiny.head.weight.grad().defined());
  CHECK_FALSE(tiny.blocks[0].attn.qkv.weight.grad().defined());
  CHECK_FALSE(tiny.cls_token.grad().defined());
}

TEST_CASE("state_dict round trip reproduces the model") {
  const auto config = tiny_config();
  nn::VisionTransformer<double> a(config, 1), b(config, 2);
  const Tensor<double> x = test::random_images<double>(config, 3, 5);
  a.eval();
  b.eval();
  const Tensor<double> ya = a(x);
  CHECK_FALSE(same_values(ya, b(x)));
  const auto report = b.load_state_dict(a.state_dict());
  CHECK(report.ok());
  CHECK(report.loaded == timm_names(2));
  CHECK(same_values(ya, b(x)));
  // The state dict shares the module's elements; loading copies them, so b does not alias a.
  CHECK(a.state_dict().at("head.bias").shares_storage_with(a.head.bias));
  CHECK_FALSE(b.head.bias.shares_storage_with(a.head.bias));
}

TEST_CASE("load_state_dict: report of missing, unexpected and mismatched keys; strict throws and copies nothing") {
  const auto config = tiny_config();
  nn::VisionTransformer<float> source(config, 1), target(config, 2);
  nn::StateDict<float> dict;
  for (const auto& [name, t] : source.state_dict()) {
    if (name == "norm.bias") continue;                                            // missing
    if (name == "head.weight") dict.insert(name, Tensor<float>::zeros(Shape{4, 6}));  // wrong shape
    else dict.insert(name, t);
  }
  dict.insert("fc_norm.weight", Tensor<float>::ones(Shape{6}));  // unexpected

  const Tensor<float> before = target.blocks[0].attn.qkv.weight.clone();
  const std::string message = error_message([&] { target.load_state_dict(dict); });
  CHECK(message.find("missing keys (1): norm.bias") != std::string::npos);
  CHECK(message.find("unexpected keys (1): fc_norm.weight") != std::string::npos);
  CHECK(message.find("head.weight expected (3, 6) got (4, 6)") != std::string::npos);
  CHECK(same_values(before, target.blocks[0].attn.qkv.weight));  // strict failure changed nothing

  const auto report = target.load_state_dict(dict, false);
  CHECK_FALSE(report.ok());
  CHECK(report.missing == std::vector<std::string>{"norm.bias"});
  CHECK(report.unexpected == std::vector<std::string>{"fc_norm.weight"});
  REQUIRE(report.mismatched.size() == 1);
  CHECK(report.mismatched[0].name == "head.weight");
  CHECK(report.mismatched[0].expected == Shape{3, 6});
  CHECK(report.mismatched[0].actual == Shape{4, 6});
  CHECK(report.loaded.size() == timm_names(2).size() - 2);
  CHECK(same_values(source.blocks[0].attn.qkv.weight, target.blocks[0].attn.qkv.weight));
  CHECK_FALSE(same_values(source.head.weight, target.head.weight));
}

TEST_CASE("Dropout and drop-path act in training only; eval is deterministic") {
  nn::ViTConfig config = tiny_config();
  config.drop_rate = 0.3;
  config.pos_drop_rate = 0.2;
  config.attn_drop_rate = 0.2;
  config.proj_drop_rate = 0.2;
  config.drop_path_rate = 0.3;
  nn::VisionTransformer<float> model(config, 1);
  nn::ViTConfig plain = config;
  plain.drop_rate = plain.pos_drop_rate = plain.attn_drop_rate = plain.proj_drop_rate = plain.drop_path_rate = 0.0;
  nn::VisionTransformer<float> reference(plain, 1);
  reference.load_state_dict(model.state_dict());
  CHECK(model.blocks[0].drop_path1.p == 0.0);  // linspace(0, 0.3, 2)
  CHECK(model.blocks[1].drop_path1.p == doctest::Approx(0.3));

  const Tensor<float> x = test::random_images<float>(config, 4, 2);
  model.eval();
  const Tensor<float> e1 = model(x), e2 = model(x);
  CHECK(same_values(e1, e2));
  CHECK(same_values(e1, reference(x)));
  model.train();
  const Tensor<float> t1 = model(x), t2 = model(x);
  CHECK_FALSE(same_values(t1, t2));
  CHECK_FALSE(same_values(t1, e1));

  // A re-seeded generator repeats the training-mode forward exactly.
  Generator noise(42);
  model.set_generator(noise);
  const Tensor<float> r1 = model(x);
  noise.manual_seed(42);
  CHECK(same_values(r1, model(x)));

  nn::Dropout<double> dropout(0.5);
  Tensor<double> ones = Tensor<double>::ones(Shape{1000});
  const Tensor<double> dropped = dropout(ones);
  int zeros = 0;
  for (int64_t i = 0; i < dropped.numel(); ++i) {
    CHECK((dropped.data()[i] == 0.0 || dropped.data()[i] == 2.0));
    zeros += dropped.data()[i] == 0.0;
  }
  CHECK(zeros > 400);
  CHECK(zeros < 600);
  dropout.eval();
  CHECK(same_values(dropout(ones), ones));

  nn::DropPath<double> drop_path(0.5);
  const Tensor<double> paths = drop_path(Tensor<double>::ones(Shape{64, 3, 2}));
  for (int64_t b = 0; b < 64; ++b) {
    const double first = paths.data()[b * 6];
    CHECK((first == 0.0 || first == 2.0));
    for (int64_t i = 1; i < 6; ++i) CHECK(paths.data()[b * 6 + i] == first);  // whole samples
  }
}

TEST_CASE("Shape errors name the module and the shapes") {
  nn::VisionTransformer<float> model(nn::ViTConfig::vit_cifar(), 0);
  std::string m = error_message([&] { model(Tensor<float>::zeros(Shape{2, 3, 28, 28})); });
  CHECK(m.find("PatchEmbedding 'patch_embed'") != std::string::npos);
  CHECK(m.find("(2, 3, 28, 28)") != std::string::npos);
  CHECK(m.find("32") != std::string::npos);
  m = error_message([&] { model(Tensor<float>::zeros(Shape{2, 1, 32, 32})); });
  CHECK(m.find("PatchEmbedding 'patch_embed'") != std::string::npos);
  CHECK(m.find("3 channels") != std::string::npos);
  CHECK(m.find("(2, 1, 32, 32)") != std::string::npos);
  m = error_message([&] { model(Tensor<float>::zeros(Shape{3, 32, 32})); });
  CHECK(m.find("(3, 32, 32)") != std::string::npos);
  m = error_message([&] { model.blocks[2].attn(Tensor<float>::zeros(Shape{1, 5, 100})); });
  CHECK(m.find("Attention 'blocks.2.attn'") != std::string::npos);
  CHECK(m.find("(1, 5, 100)") != std::string::npos);
  m = error_message([&] { model.blocks[0].mlp.fc1(Tensor<float>::zeros(Shape{7})); });
  CHECK(m.find("Linear 'blocks.0.mlp.fc1'") != std::string::npos);
  m = error_message([&] { model.norm(Tensor<float>::zeros(Shape{2, 5})); });
  CHECK(m.find("LayerNorm 'norm'") != std::string::npos);

  CHECK(error_message([] { nn::PatchEmbedding<float>(30, 4, 3, 8); }).find("not divisible by patch size") !=
        std::string::npos);
  CHECK_THROWS_AS(nn::MultiHeadAttention<float>(10, 3), Error);
}

TEST_CASE("Attention probabilities are kept on request, detached, rows summing to 1") {
  const auto config = tiny_config();
  nn::VisionTransformer<double> model(config, 3);
  const Tensor<double> x = test::random_images<double>(config, 2, 4);
  model(x);
  CHECK_FALSE(model.attention_probs()[0].defined());
  model.set_keep_attention(true);
  const Tensor<double> logits = model(x);
  const auto probs = model.attention_probs();
  REQUIRE(probs.size() == 2);
  for (const auto& p : probs) {
    REQUIRE(p.shape() == Shape{2, 2, 5, 5});
    CHECK_FALSE(p.requires_grad());
    for (int64_t row = 0; row < 2 * 2 * 5; ++row) {
      double sum = 0;
      for (int64_t j = 0; j < 5; ++j) sum += p.data()[row * 5 + j];
      CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
    }
  }
  // Keeping them changes nothing in the result.
  model.set_keep_attention(false);
  CHECK(same_values(logits, model(x)));
  CHECK_FALSE(model.attention_probs()[1].defined());
}

TEST_CASE("composed_attention and the fused ops::attention agree, forward and backward") {
  const int64_t B = 2, N = 5, H = 3, d = 4;
  const Tensor<double> qkv = test::random_input(Shape{B, N, 3 * H * d}, 11);
  Tensor<double> probs_composed, probs_fused;
  const Tensor<double> composed = nn::composed_attention(qkv, 3, 0.0, false, nullptr, &probs_composed);
  const Tensor<double> g = test::random_input(composed.shape(), 12);
  composed.backward(g);
  const Tensor<double> grad_composed = qkv.grad().clone();
  qkv.set_grad(Tensor<double>());
  const Tensor<double> fused = ops::attention(qkv, 3, 0.0, false, nullptr, &probs_fused);
  fused.backward(g);
  for (int64_t i = 0; i < composed.numel(); ++i) CHECK(composed.data()[i] == doctest::Approx(fused.data()[i]).epsilon(1e-12));
  for (int64_t i = 0; i < probs_fused.numel(); ++i)
    CHECK(probs_composed.data()[i] == doctest::Approx(probs_fused.data()[i]).epsilon(1e-12));
  for (int64_t i = 0; i < qkv.numel(); ++i)
    CHECK(grad_composed.data()[i] == doctest::Approx(qkv.grad().data()[i]).epsilon(1e-10).scale(1.0));
}

TEST_CASE("gradcheck: a tiny ViT in double, logits and loss, with respect to parameters and the image") {
  const auto config = tiny_config();
  nn::VisionTransformer<double> model(config, 5);
  // Spread the parameters out (the init is tiny for cls_token and zero for biases) so every path matters.
  Generator gen(9);
  for (auto& [name, p] : model.named_parameters())
    for (int64_t i = 0; i < p.numel(); ++i)
      p.data()[i] = name.find("norm") != std::string::npos && name.find("weight") != std::string::npos
                        ? 1.0 + 0.2 * gen.normal()
                        : 0.3 * gen.normal();
  const Tensor<double> x = test::random_images<double>(config, 2, 6).set_requires_grad();
  const std::vector<Tensor<double>> inputs = {x,
                                              model.cls_token,
                                              model.pos_embed,
                                              model.patch_embed.proj.weight,
                                              model.patch_embed.proj.bias,
                                              model.blocks[0].norm1.weight,
                                              model.blocks[0].attn.qkv.weight,
                                              model.blocks[1].attn.proj.bias,
                                              model.blocks[1].mlp.fc1.weight,
                                              model.blocks[1].norm2.bias,
                                              model.norm.weight,
                                              model.head.weight};
  CHECK_GRADCHECK([&](const std::vector<Tensor<double>>& in) { return model(in[0]); }, inputs);

  const std::vector<int64_t> labels = {2, 0};
  CHECK_GRADCHECK([&](const std::vector<Tensor<double>>& in) { return ops::cross_entropy(model(in[0]), labels, 0.1); },
                  inputs);
}

TEST_CASE("The float fast paths compute the same function as the composed ops") {
  nn::ViTConfig config = tiny_config();
  config.img_size = 8;
  config.embed_dim = 12;
  config.num_heads = 3;
  nn::VisionTransformer<float> model(config, 21);
  // Spread the parameters (biases start at zero) so every term matters.
  Generator gen(22);
  for (auto& [name, p] : model.named_parameters())
    for (int64_t i = 0; i < p.numel(); ++i) p.data()[i] = static_cast<float>(0.3 * gen.normal());
  const Tensor<float> x = test::random_images<float>(config, 3, 23);

  // The layers one by one, as timm writes them, with every op unfused.
  auto composed = [&](const Tensor<float>& images) {
    const auto& pe = model.patch_embed;
    const int64_t B = images.size(0), G = pe.grid_size(), p = pe.patch_size, C = pe.in_chans, D = config.embed_dim;
    Tensor<float> patches = ops::permute(ops::reshape(images, {B, C, G, p, G, p}), {0, 2, 4, 1, 3, 5});
    patches = ops::linear(ops::reshape(patches, {B, G * G, C * p * p}), ops::reshape(pe.proj.weight, {D, C * p * p}),
                          pe.proj.bias);
    const Tensor<float> cls = ops::add(Tensor<float>::zeros(Shape{B, 1, D}), model.cls_token);
    Tensor<float> h = ops::add(ops::concat({cls, patches}, 1), model.pos_embed);
    for (auto& block : model.blocks) {
      auto& b = *block;
      const Tensor<float> mixed = nn::composed_attention(b.attn.qkv(b.norm1(h)), 3);
      h = ops::add(h, b.attn.proj(mixed));
      h = ops::add(h, b.mlp.fc2(ops::gelu(b.mlp.fc1(b.norm2(h)))));
    }
    return model.head(ops::select(model.norm(h), 1, 0));
  };
  const Tensor<float> expected = composed(x);
  const Tensor<float> logits = model(x);
  REQUIRE(logits.shape() == expected.shape());
  for (int64_t i = 0; i < logits.numel(); ++i)
    CHECK(logits.data()[i] == doctest::Approx(expected.data()[i]).epsilon(1e-5).scale(1.0));

  // forward_features normalises the class token alone: the same bits as the norm of every token, then select.
  const Tensor<float> features = model.forward_features(x);
  CHECK(same_values(features, ops::select(model.forward_tokens(x), 1, 0)));

  // Training mode with every rate 0 takes the fused residual path too; with drop-path the unfused one, which in
  // eval mode gives the fused path's result again.
  model.train();
  CHECK(same_values(model(x), logits));
  nn::ViTConfig dropping = config;
  dropping.drop_path_rate = 0.5;
  nn::VisionTransformer<float> dropped(dropping, 21);
  dropped.load_state_dict(model.state_dict());
  dropped.eval();
  CHECK(same_values(dropped(x), logits));
  dropped.train();
  CHECK_FALSE(same_values(dropped(x), logits));
}

TEST_CASE("Attention defaults: the fused kernel for float, composed ops for double; either can be chosen") {
  nn::MultiHeadAttention<float> attn(12, 3);
  const Tensor<float> x = Tensor<float>::uniform(Shape{2, 5, 12}, -1.0f, 1.0f);
  const Tensor<float> qkv = attn.qkv(x);
  CHECK(same_values(attn(x), attn.proj(ops::attention(qkv, 3))));
  attn.set_attention_fn(&nn::composed_attention<float>);
  CHECK(same_values(attn(x), attn.proj(nn::composed_attention(qkv, 3))));
  nn::MultiHeadAttention<double> attn_double(12, 3);
  const Tensor<double> xd = Tensor<double>::uniform(Shape{2, 5, 12}, -1.0, 1.0);
  CHECK(same_values(attn_double(xd), attn_double.proj(nn::composed_attention(attn_double.qkv(xd), 3))));
}
