// gradchecks, forward values and error tests of ops/patchify.hpp (patch_embed) and ops/tokens.hpp
// (class_token_and_position), each against the same function composed from reshape/permute/linear or concat/add.
#include <cstring>
#include <tuple>

#include "test_helpers.hpp"

#include <tessera/ops/ops.hpp>

using namespace tessera;
using test::random_input;
using test::TensorD;
using test::TensorF;
using Inputs = std::vector<TensorD>;

namespace {

// The stride-p convolution composed from differentiable ops, as nn::PatchEmbedding once did it.
template <class T>
Tensor<T> composed_patch_embed(const Tensor<T>& images, const Tensor<T>& weight, const Tensor<T>& bias) {
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t E = weight.size(0), p = weight.size(2);
  Tensor<T> patches = ops::reshape(images, {B, C, H / p, p, W / p, p});
  patches = ops::permute(patches, {0, 2, 4, 1, 3, 5});
  patches = ops::reshape(patches, {B, (H / p) * (W / p), C * p * p});
  return ops::linear(patches, ops::reshape(weight, {E, C * p * p}), bias);
}

template <class T>
Tensor<T> composed_tokens(const Tensor<T>& patches, const Tensor<T>& cls_token, const Tensor<T>& pos_embed) {
  const Tensor<T> cls = ops::add(Tensor<T>::zeros(Shape{patches.size(0), 1, patches.size(2)}), cls_token);
  return ops::add(ops::concat({cls, patches}, 1), pos_embed);
}

TensorF to_float(const TensorD& t) {
  return TensorF::from_vector(std::vector<float>(t.data(), t.data() + t.numel()), t.shape());
}

bool same_bits(const TensorF& a, const TensorF& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * size_t(a.numel())) == 0;
}

}  // namespace

TEST_CASE("patch_embed forward values") {
  // One 2x2 image, one channel, patch 1: every pixel is a patch, out = pixel * w + b.
  auto images = TensorD::from_vector({1, 2, 3, 4}, {1, 1, 2, 2});
  auto weight = TensorD::from_vector({2, -1}, {2, 1, 1, 1});
  auto bias = TensorD::from_vector({10, 0});
  CHECK(ops::patch_embed(images, weight, bias).to_vector() == std::vector<double>{12, -1, 14, -2, 16, -3, 18, -4});
  // Patch 2 over the same image: one patch, the weighted sum of all four pixels in (c, u, v) order.
  auto w2 = TensorD::from_vector({1, 10, 100, 1000}, {1, 1, 2, 2});
  CHECK(ops::patch_embed(images, w2).to_vector() == std::vector<double>{4321});
}

TEST_CASE("patch_embed gradcheck and agreement with the composed convolution") {
  struct Case {
    Shape images, weight;
  };
  const std::vector<Case> cases = {{{2, 3, 6, 9}, {5, 3, 3, 3}}, {{1, 1, 7, 7}, {3, 1, 7, 7}}, {{3, 2, 4, 4}, {7, 2, 1, 1}},
                                   {{2, 2, 6, 6}, {4, 2, 2, 2}}};
  uint64_t seed = 500;
  for (const auto& c : cases) {
    CAPTURE(c.images.str());
    CAPTURE(c.weight.str());
    auto images = random_input(c.images, seed++), weight = random_input(c.weight, seed++);
    auto bias = random_input({c.weight[0]}, seed++);
    CHECK_GRADCHECK([](const Inputs& in) { return ops::patch_embed(in[0], in[1], in[2]); }, {images, weight, bias});
    CHECK_GRADCHECK([](const Inputs& in) { return ops::patch_embed(in[0], in[1]); }, {images, weight});

    // Double: the same sums as the composed ops (the reference GEMM adds in the same order).
    const TensorD fused = ops::patch_embed(images, weight, bias);
    const TensorD composed = composed_patch_embed(images, weight, bias);
    REQUIRE(fused.shape() == composed.shape());
    for (int64_t i = 0; i < fused.numel(); ++i)
      CHECK(fused.data()[i] == doctest::Approx(composed.data()[i]).epsilon(1e-12));

    // Float on the fast kernels against double.
    TensorF fi = to_float(images).set_requires_grad(), fw = to_float(weight).set_requires_grad(),
            fb = to_float(bias).set_requires_grad();
    const TensorF ff = ops::patch_embed(fi, fw, fb);
    for (int64_t i = 0; i < ff.numel(); ++i) CHECK(ff.data()[i] == doctest::Approx(fused.data()[i]).epsilon(1e-5));
    const TensorD upstream = random_input(fused.shape(), seed++).detach();
    for (const TensorD& t : {images, weight, bias}) t.set_grad(TensorD());  // drop what the gradchecks left
    fused.backward(upstream);
    ff.backward(to_float(upstream));
    for (const auto& [gd, gf] : {std::pair{images.grad(), fi.grad()}, {weight.grad(), fw.grad()}, {bias.grad(), fb.grad()}})
      for (int64_t i = 0; i < gd.numel(); ++i) CHECK(gf.data()[i] == doctest::Approx(gd.data()[i]).epsilon(1e-4));
  }
}

TEST_CASE("patch_embed in float at the CIFAR shape matches the composed path") {
  Generator gen(520);
  TensorF images = TensorF::uniform({5, 3, 32, 32}, -1.0f, 1.0f, gen).set_requires_grad();
  TensorF weight = TensorF::uniform({97, 3, 4, 4}, -0.2f, 0.2f, gen).set_requires_grad();
  TensorF bias = TensorF::uniform({97}, -0.2f, 0.2f, gen).set_requires_grad();
  TensorF images2 = images.detach().clone().set_requires_grad(), weight2 = weight.detach().clone().set_requires_grad(),
          bias2 = bias.detach().clone().set_requires_grad();
  const TensorF fused = ops::patch_embed(images, weight, bias);
  const TensorF composed = composed_patch_embed(images2, weight2, bias2);
  // The same patch matrix goes into the same GEMM: identical bits.
  CHECK(same_bits(fused, composed));
  const TensorF g = TensorF::uniform(fused.shape(), -1.0f, 1.0f, gen);
  fused.backward(g);
  composed.backward(g);
  CHECK(same_bits(images.grad(), images2.grad()));
  CHECK(same_bits(weight.grad(), weight2.grad()));
  CHECK(same_bits(bias.grad(), bias2.grad()));
}

TEST_CASE("class_token_and_position: values, gradcheck, and the composed concat + add bit for bit") {
  auto patches = TensorD::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  auto cls = TensorD::from_vector({10, 20}, {1, 1, 2});
  auto pos = TensorD::from_vector({100, 200, 300, 400, 500, 600}, {1, 3, 2});
  CHECK(ops::class_token_and_position(patches, cls, pos).to_vector() ==
        std::vector<double>{110, 220, 301, 402, 503, 604, 110, 220, 305, 406, 507, 608});

  for (const auto& sizes : {std::tuple{int64_t{3}, int64_t{4}, int64_t{5}}, {1, 1, 1}, {2, 7, 65}}) {
    const int64_t B = std::get<0>(sizes), P = std::get<1>(sizes), E = std::get<2>(sizes);  // named for CAPTURE
    CAPTURE(B);
    CAPTURE(P);
    CAPTURE(E);
    auto x = random_input({B, P, E}, 530), c = random_input({1, 1, E}, 531), p = random_input({1, P + 1, E}, 532);
    CHECK_GRADCHECK([](const Inputs& in) { return ops::class_token_and_position(in[0], in[1], in[2]); }, {x, c, p});
  }

  // Float, large enough for the threaded loops: the same additions in the same order as the composed ops.
  Generator gen(540);
  auto make = [&](const Shape& s) { return TensorF::uniform(s, -1.0f, 1.0f, gen).set_requires_grad(); };
  TensorF x = make({37, 64, 193}), c = make({1, 1, 193}), p = make({1, 65, 193});
  TensorF x2 = x.detach().clone().set_requires_grad(), c2 = c.detach().clone().set_requires_grad(),
          p2 = p.detach().clone().set_requires_grad();
  const TensorF fused = ops::class_token_and_position(x, c, p);
  const TensorF composed = composed_tokens(x2, c2, p2);
  CHECK(same_bits(fused, composed));
  const TensorF g = TensorF::uniform(fused.shape(), -1.0f, 1.0f, gen);
  fused.backward(g);
  composed.backward(g);
  CHECK(same_bits(x.grad(), x2.grad()));
  CHECK(same_bits(c.grad(), c2.grad()));
  CHECK(same_bits(p.grad(), p2.grad()));
}

TEST_CASE("patch_embed and class_token_and_position errors name the op and the shapes") {
  auto images = TensorD::zeros({2, 3, 8, 8});
  CHECK_THROWS_WITH_AS(ops::patch_embed(images, TensorD::zeros({4, 3, 4})),
                       doctest::Contains("patch_embed: weight must be (embed_dim, channels, p, p), got shape (4, 3, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::patch_embed(images, TensorD::zeros({4, 2, 4, 4})),
                       doctest::Contains("patch_embed: images must be (B, 2, H, W)"), Error);
  CHECK_THROWS_WITH_AS(ops::patch_embed(images, TensorD::zeros({4, 3, 3, 3})),
                       doctest::Contains("not divisible by the patch size 3"), Error);
  CHECK_THROWS_WITH_AS(ops::patch_embed(images, TensorD::zeros({4, 3, 4, 4}), TensorD::zeros({5})),
                       doctest::Contains("patch_embed: bias of shape (5)"), Error);
  auto patches = TensorD::zeros({2, 4, 6});
  CHECK_THROWS_WITH_AS(ops::class_token_and_position(patches, TensorD::zeros({1, 6}), TensorD::zeros({1, 5, 6})),
                       doctest::Contains("cls_token must be (1, 1, 6)"), Error);
  CHECK_THROWS_WITH_AS(ops::class_token_and_position(patches, TensorD::zeros({1, 1, 6}), TensorD::zeros({1, 4, 6})),
                       doctest::Contains("pos_embed must be (1, 5, 6)"), Error);
  CHECK_THROWS_WITH_AS(ops::class_token_and_position(TensorD::zeros({4, 6}), TensorD::zeros({1, 1, 6}),
                                                     TensorD::zeros({1, 5, 6})),
                       doctest::Contains("patches must be (B, P, E), got shape (4, 6)"), Error);
}
