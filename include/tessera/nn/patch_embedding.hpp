// nn::PatchEmbedding: cuts (B, C, H, W) images into p×p patches and projects each to embed_dim — timm's PatchEmbed,
// a stride-p convolution, done as ops::patch_embed (the patchify kernel and one GEMM).
#pragma once

#include <cstdint>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/patchify.hpp"

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

  Tensor<T> weight;
  Tensor<T> bias;
};

template <class T>
class PatchEmbedding : public Module<T> {
 public:
  PatchEmbedding(int64_t img_size, int64_t patch_size, int64_t in_chans, int64_t embed_dim,
                 Generator& generator = default_generator())
      : Module<T>("PatchEmbedding"),
        img_size(img_size),
        patch_size(patch_size),
        in_chans(in_chans),
        embed_dim(embed_dim),
        proj(in_chans, embed_dim, patch_size, generator) {
    TESSERA_CHECK(img_size > 0 && patch_size > 0 && in_chans > 0 && embed_dim > 0,
                  "PatchEmbedding: sizes must be positive, got img_size ", img_size, ", patch_size ", patch_size,
                  ", in_chans ", in_chans, ", embed_dim ", embed_dim);
    TESSERA_CHECK(img_size % patch_size == 0, "PatchEmbedding: image size ", img_size,
                  " is not divisible by patch size ", patch_size);
    this->register_module("proj", proj);
  }

  int64_t grid_size() const { return img_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }

  // x is (B, in_chans, img_size, img_size); returns (B, num_patches, embed_dim), patches in row-major grid order.
  // Patch (i, j) flattened as (c, u, v) meets weight[:, c, u, v]: the same sum as the stride-p convolution.
  Tensor<T> forward(const Tensor<T>& x) const {
    TESSERA_CHECK(x.rank() == 4, this->where(), ": expected images (B, ", in_chans, ", ", img_size, ", ", img_size,
                  "), got shape ", x.shape());
    TESSERA_CHECK(x.size(1) == in_chans, this->where(), ": expected ", in_chans, " channels (B, ", in_chans, ", ",
                  img_size, ", ", img_size, "), got shape ", x.shape());
    TESSERA_CHECK(x.size(2) == img_size && x.size(3) == img_size, this->where(), ": expected images of ", img_size,
                  "x", img_size, " (B, ", in_chans, ", ", img_size, ", ", img_size, "), got shape ", x.shape());
    return ops::patch_embed(x, proj.weight, proj.bias);
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  const int64_t img_size;
  const int64_t patch_size;
  const int64_t in_chans;
  const int64_t embed_dim;
  PatchProjection<T> proj;
};

}  // namespace tessera::nn
