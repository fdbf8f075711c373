// nn::PatchEmbedding: cuts (B, C, H, W) images into p×p patches and projects each to embed_dim — timm's PatchEmbed,
// a stride-p convolution, done as ops::patch_embed (the patchify kernel and one GEMM) — or, with a convolutional
// stem or an overlapping projection, timm's ConvStem inside HybridEmbed(proj=False).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/conv_stem.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/patchify.hpp"
#include "tessera/ops/reshape.hpp"
#include "tessera/ops/shape_ops.hpp"

namespace tessera::nn {

// The convolution's parameters under timm's names: weight (embed_dim, in_chans, p, p) and bias (embed_dim).
template <class T>
class PatchProjection : public Module<T> {
 public:
  PatchProjection(int64_t in_chans, int64_t embed_dim, int64_t patch_size, Generator& generator)
      : Module<T>("Conv2d") {
    weight = Tensor<T>::zeros(Shape{embed_dim, in_chans, patch_size, patch_size});
    bias = Tensor<T>::zeros(Shape{embed_dim});
    this->register_parameter("weight", weight);
    this->register_parameter("bias", bias);
    init::torch_default_(weight, &bias, generator);  // torch.nn.Conv2d's own initialisation
  }
  // No parameters: the projection of a PatchEmbedding that has a stem instead (weight and bias stay undefined).
  PatchProjection() : Module<T>("Conv2d") {}

  Tensor<T> weight;
  Tensor<T> bias;
};

// The convolutional stem and the final projection of a PatchEmbedding (ViTConfig's stem_channels, stem_strides and
// patch_kernel, resolved): stage i is a 3x3 convolution (padding 1, stride stem_strides[i]) with BatchNorm2d and
// ReLU; the projection to embed_dim has kernel proj_kernel (0: its stride) and stride patch_size / Π stem_strides.
struct PatchStemOptions {
  std::vector<int64_t> stem_channels;
  std::vector<int64_t> stem_strides;  // one per stage
  int64_t proj_kernel = 0;
};

template <class T>
class PatchEmbedding : public Module<T> {
 public:
  PatchEmbedding(int64_t img_size, int64_t patch_size, int64_t in_chans, int64_t embed_dim,
                 Generator& generator = default_generator())
      : PatchEmbedding(img_size, patch_size, in_chans, embed_dim, PatchStemOptions{}, generator) {}

  // With a stem or a projection kernel other than patch_size, the layers are `backbone` (timm's ConvStem: the
  // stages, then the projection as its last stage, a convolution with bias) and `proj` holds nothing.
  PatchEmbedding(int64_t img_size, int64_t patch_size, int64_t in_chans, int64_t embed_dim,
                 const PatchStemOptions& stem, Generator& generator = default_generator())
      : Module<T>("PatchEmbedding"),
        img_size(img_size),
        patch_size(patch_size),
        in_chans(in_chans),
        embed_dim(embed_dim),
        proj(make_projection(img_size, patch_size, in_chans, embed_dim, stem, generator)),
        backbone(stem_stages(patch_size, in_chans, embed_dim, stem), generator) {
    if (backbone.size() == 0)
      this->register_module("proj", proj);
    else
      this->register_module("backbone", backbone);
  }

  // True when the patches go through `backbone` (a stem or an overlapping projection), false for timm's `proj`.
  bool has_backbone() const { return backbone.size() > 0; }

  int64_t grid_size() const { return img_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }

  // x is (B, in_chans, img_size, img_size); returns (B, num_patches, embed_dim), patches in row-major grid order.
  // Plain: patch (i, j) flattened as (c, u, v) meets weight[:, c, u, v], the same sum as the stride-p convolution.
  // With a backbone: its (B, embed_dim, grid, grid) output, flattened and transposed as timm's HybridEmbed does
  // (a projection whose kernel equals its stride runs as ops::patch_embed on the stem's features, the same sum).
  Tensor<T> forward(const Tensor<T>& x) const {
    TESSERA_CHECK(x.rank() == 4, this->where(), ": expected images (B, ", in_chans, ", ", img_size, ", ", img_size,
                  "), got shape ", x.shape());
    TESSERA_CHECK(x.size(1) == in_chans, this->where(), ": expected ", in_chans, " channels (B, ", in_chans, ", ",
                  img_size, ", ", img_size, "), got shape ", x.shape());
    TESSERA_CHECK(x.size(2) == img_size && x.size(3) == img_size, this->where(), ": expected images of ", img_size,
                  "x", img_size, " (B, ", in_chans, ", ", img_size, ", ", img_size, "), got shape ", x.shape());
    if (!has_backbone()) return ops::patch_embed(x, proj.weight, proj.bias);
    Tensor<T> h = x;
    for (size_t i = 0; i + 1 < backbone.size(); ++i) h = backbone[i](h);
    const Conv2d<T>& projection = backbone[backbone.size() - 1].conv;
    // A projection without overlap is a patchify on the stem's features: ops::patch_embed writes (B, P, D) at once.
    if (projection.kernel_size[0] == projection.options.stride[0] && projection.options.padding[0] == 0)
      return ops::patch_embed(h, projection.weight, projection.bias);
    const Tensor<T> features = projection(h);
    TESSERA_CHECK(features.size(2) == grid_size() && features.size(3) == grid_size(), this->where(),
                  ": the stem gives features of shape ", features.shape(), ", expected (B, ", embed_dim, ", ",
                  grid_size(), ", ", grid_size(), ")");
    return ops::transpose(ops::reshape(features, {features.size(0), embed_dim, num_patches()}), 1, 2);
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  const int64_t img_size;
  const int64_t patch_size;
  const int64_t in_chans;
  const int64_t embed_dim;
  PatchProjection<T> proj;  // timm's PatchEmbed.proj; empty (and unregistered) when the backbone is used
  ConvStem<T> backbone;     // timm's ConvStem: the stem's stages and the projection; empty for the plain embedding

 private:
  static void check_sizes(int64_t img_size, int64_t patch_size, int64_t in_chans, int64_t embed_dim,
                          const PatchStemOptions& stem) {
    TESSERA_CHECK(img_size > 0 && patch_size > 0 && in_chans > 0 && embed_dim > 0,
                  "PatchEmbedding: sizes must be positive, got img_size ", img_size, ", patch_size ", patch_size,
                  ", in_chans ", in_chans, ", embed_dim ", embed_dim);
    TESSERA_CHECK(img_size % patch_size == 0, "PatchEmbedding: image size ", img_size,
                  " is not divisible by patch size ", patch_size);
    TESSERA_CHECK(stem.stem_strides.size() == stem.stem_channels.size(), "PatchEmbedding: ",
                  stem.stem_strides.size(), " stem strides for ", stem.stem_channels.size(), " stem stages");
    int64_t downsampling = 1;
    for (size_t i = 0; i < stem.stem_channels.size(); ++i) {
      TESSERA_CHECK(stem.stem_channels[i] > 0 && stem.stem_strides[i] >= 1, "PatchEmbedding: stem stage ", i,
                    " needs positive channels and stride, got ", stem.stem_channels[i], " and ", stem.stem_strides[i]);
      downsampling *= stem.stem_strides[i];
    }
    TESSERA_CHECK(patch_size % downsampling == 0, "PatchEmbedding: the stem downsamples by ", downsampling,
                  ", which does not divide patch size ", patch_size);
    const int64_t stride = patch_size / downsampling, kernel = stem.proj_kernel > 0 ? stem.proj_kernel : stride;
    TESSERA_CHECK(kernel >= stride && ((kernel - stride) % 2 == 0 || stride >= 2), "PatchEmbedding: projection kernel ",
                  kernel, " with stride ", stride, " would change the grid (the kernel must be at least the stride, "
                  "and exceed it by an even number when the stride is 1)");
  }
  static bool plain(int64_t patch_size, const PatchStemOptions& stem) {
    return stem.stem_channels.empty() && (stem.proj_kernel == 0 || stem.proj_kernel == patch_size);
  }
  static PatchProjection<T> make_projection(int64_t img_size, int64_t patch_size, int64_t in_chans, int64_t embed_dim,
                                            const PatchStemOptions& stem, Generator& generator) {
    check_sizes(img_size, patch_size, in_chans, embed_dim, stem);
    if (plain(patch_size, stem)) return PatchProjection<T>(in_chans, embed_dim, patch_size, generator);
    return PatchProjection<T>();
  }
  static std::vector<typename ConvNormAct<T>::Options> stem_stages(int64_t patch_size, int64_t in_chans,
                                                                   int64_t embed_dim, const PatchStemOptions& stem) {
    std::vector<typename ConvNormAct<T>::Options> stages;
    if (plain(patch_size, stem)) return stages;
    int64_t channels = in_chans, downsampling = 1;
    for (size_t i = 0; i < stem.stem_channels.size(); ++i) {
      stages.push_back({.in_channels = channels, .out_channels = stem.stem_channels[i], .kernel_size = 3,
                        .stride = stem.stem_strides[i], .padding = 1, .norm_act = true});
      channels = stem.stem_channels[i];
      downsampling *= stem.stem_strides[i];
    }
    const int64_t stride = patch_size / downsampling, kernel = stem.proj_kernel > 0 ? stem.proj_kernel : stride;
    stages.push_back({.in_channels = channels, .out_channels = embed_dim, .kernel_size = kernel, .stride = stride,
                      .padding = (kernel - stride + 1) / 2, .norm_act = false});
    return stages;
  }
};

}  // namespace tessera::nn
