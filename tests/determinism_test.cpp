// Thread-count independence of a whole float training step: a small ViT on the fused paths (patch embedding,
// class token and position, fused attention, linear+GELU, layer norms, cross-entropy, AdamW) gives the same bits
// for the logits, the loss, the image gradient, every parameter gradient and the updated parameters with 1, 2 and
// 3 OpenMP threads.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <map>
#include <string>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/nn/nn.hpp>
#include <tessera/ops/loss.hpp>
#include <tessera/optim/optim.hpp>

using tessera::Generator;
using tessera::Shape;
using tessera::Tensor;
namespace nn = tessera::nn;
namespace ops = tessera::ops;
namespace optim = tessera::optim;

namespace {

// Everything one step produces, by name.
using Outputs = std::map<std::string, Tensor<float>>;

Outputs train_step(const nn::ViTConfig& config, int64_t batch, int threads, bool training) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  nn::VisionTransformer<float> model(config, 7);
  model.train(training);
  Generator data(11);
  Tensor<float> images =
      Tensor<float>::normal(Shape{batch, config.in_chans, config.img_size, config.img_size}, 0.0f, 1.0f, data);
  images.set_requires_grad();
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (auto& label : labels) label = static_cast<int64_t>(data.below(static_cast<uint64_t>(config.num_classes)));

  Outputs out;
  const Tensor<float> logits = model(images);
  const Tensor<float> loss = ops::cross_entropy(logits, labels, 0.1);
  loss.backward();
  out["logits"] = logits.detach();
  out["loss"] = loss.detach();
  out["grad.image"] = images.grad();
  for (const auto& [name, p] : model.named_parameters()) out["grad." + name] = p.grad();
  optim::AdamW<float> adamw(optim::param_groups_weight_decay(model.named_parameters(), 0.05),
                            optim::AdamWOptions{.lr = 1e-3, .weight_decay = 0.05});
  adamw.step();
  for (const auto& [name, p] : model.named_parameters()) out["adamw." + name] = p.clone();
  omp_set_num_threads(previous);
  return out;
}

// CHECKs that both runs hold the same tensors with the same bits; names the first tensor and element that differ.
void check_identical(const Outputs& expected, const Outputs& actual, int threads) {
  REQUIRE(expected.size() == actual.size());
  for (const auto& [key, value] : expected) {
    const auto& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
    const Tensor<float>& e = value;
    INFO(name << " with " << threads << " threads");
    REQUIRE(actual.count(name) == 1);
    const Tensor<float>& a = actual.at(name);
    REQUIRE(e.defined());
    REQUIRE(a.defined());
    REQUIRE(a.shape() == e.shape());
    int64_t first_difference = -1;
    for (int64_t i = 0; i < e.numel() && first_difference < 0; ++i)
      if (std::memcmp(&e.data()[i], &a.data()[i], sizeof(float)) != 0) first_difference = i;
    CHECK_MESSAGE(first_difference < 0, "element " << first_difference << ": " << std::setprecision(9)
                                                   << (first_difference >= 0 ? e.data()[first_difference] : 0.0f)
                                                   << " vs "
                                                   << (first_difference >= 0 ? a.data()[first_difference] : 0.0f));
  }
}

void check_thread_counts(const nn::ViTConfig& config, int64_t batch, bool training) {
  const Outputs one = train_step(config, batch, 1, training);
  // The step really ran: finite loss and a nonzero gradient everywhere it should reach.
  CHECK(std::isfinite(one.at("loss").item()));
  CHECK(one.at("grad.patch_embed.proj.weight").defined());
  for (int threads : {2, 3}) check_identical(one, train_step(config, batch, threads, training), threads);
}

// Large enough that every kernel takes its threaded path (GEMMs over 2^19 flops, row kernels over 2^15 elements).
nn::ViTConfig cifar_like() {
  nn::ViTConfig c = nn::ViTConfig::vit_cifar();
  c.embed_dim = 96;
  c.depth = 2;
  return c;
}

// Odd sizes everywhere: 16 patches of 6x6 over 2 channels, dim 60, head width 15, MLP 150, 7 classes.
nn::ViTConfig odd_sizes() {
  nn::ViTConfig c;
  c.img_size = 24;
  c.patch_size = 6;
  c.in_chans = 2;
  c.num_classes = 7;
  c.embed_dim = 60;
  c.depth = 2;
  c.num_heads = 4;
  c.mlp_ratio = 2.5;
  return c;
}

}  // namespace

TEST_CASE("determinism: a vit_cifar-shaped ViT step is bit-identical on 1, 2 and 3 threads") {
  SUBCASE("eval mode") { check_thread_counts(cifar_like(), 24, false); }
  SUBCASE("training mode with dropout, attention dropout and drop-path") {
    nn::ViTConfig c = cifar_like();
    c.drop_rate = 0.1;
    c.pos_drop_rate = 0.1;
    c.attn_drop_rate = 0.1;
    c.proj_drop_rate = 0.1;
    c.drop_path_rate = 0.2;
    check_thread_counts(c, 24, true);
  }
}

TEST_CASE("determinism: odd sizes are bit-identical on 1, 2 and 3 threads") {
  check_thread_counts(odd_sizes(), 37, true);
}
