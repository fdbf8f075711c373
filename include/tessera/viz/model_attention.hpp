// Attention pictures straight from a VisionTransformer: run the model on an input (a batch tensor, or one image
// through its preprocessing) keeping every block's attention, then the maps, rollout and PNGs of the other viz headers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "tessera/autograd/grad_mode.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/data/image.hpp"
#include "tessera/data/transforms.hpp"
#include "tessera/nn/vision_transformer.hpp"
#include "tessera/viz/attention_maps.hpp"
#include "tessera/viz/heatmap.hpp"
#include "tessera/viz/rollout.hpp"

namespace tessera::viz {

// Runs `model` on `input` (B, in_chans, img_size, img_size) in eval mode without recording gradients and returns
// each block's attention probabilities, (B, num_heads, N, N) per block in order — the forward's own values. The
// model's training mode and each block's keep-attention setting are restored afterwards (a block that was keeping
// attention holds this run's probabilities).
template <class T>
std::vector<Tensor<T>> record_attention(nn::VisionTransformer<T>& model, const Tensor<T>& input) {
  const nn::ViTConfig& c = model.config();
  TESSERA_CHECK(input.defined() && input.rank() == 4 && input.size(0) > 0 && input.size(1) == c.in_chans &&
                    input.size(2) == c.img_size && input.size(3) == c.img_size,
                "record_attention: the input must be (batch, ", c.in_chans, ", ", c.img_size, ", ", c.img_size,
                ") for this model, got shape ", input.defined() ? input.shape().str() : std::string("undefined"));
  struct Restore {
    nn::VisionTransformer<T>& model;
    bool training;
    std::vector<bool> keeping;
    ~Restore() {
      model.train(training);
      size_t i = 0;
      for (auto& block : model.blocks) block->attn.set_keep_attention(keeping[i++]);
    }
  } restore{model, model.is_training(), {}};
  for (const auto& block : model.blocks) restore.keeping.push_back(block->attn.keeps_attention());
  model.eval();
  model.set_keep_attention(true);
  std::vector<Tensor<T>> probs;
  {
    NoGradGuard no_grad;
    model.forward(input);
    probs = model.attention_probs();
  }
  return probs;
}

// The same for one image: `preprocess` (e.g. Compose{ToTensor(), Normalize(mean, std)}, as at evaluation) turns it
// into the model's input. `preprocess` should not crop, so that the pictures drawn over `image` line up with it.
template <class T>
std::vector<Tensor<T>> record_attention(nn::VisionTransformer<T>& model, const data::Image& image,
                                        const data::Compose& preprocess) {
  Generator generator(0);  // for random steps, which an evaluation pipeline should not have
  const data::FloatImage x = preprocess(image, generator);
  Tensor<T> input(Shape{1, x.channels, x.height, x.width});
  for (int64_t i = 0; i < x.numel(); ++i) input.data()[i] = static_cast<T>(x.values[static_cast<size_t>(i)]);
  return record_attention(model, input);
}

namespace detail {

template <class T>
void check_layer_head(const nn::VisionTransformer<T>& model, int64_t layer, int64_t head, const char* op) {
  TESSERA_CHECK(layer >= 0 && layer < model.config().depth, op, ": layer ", layer, " is out of range for a model of ",
                model.config().depth, " blocks");
  TESSERA_CHECK(head >= 0 && head < model.config().num_heads, op, ": head ", head, " is out of range for ",
                model.config().num_heads, " heads");
}

}  // namespace detail

// Head `head` of block `layer`: the class token's attention over the patches of `image`, (grid, grid).
template <class T>
Tensor<T> cls_attention_map(nn::VisionTransformer<T>& model, const data::Image& image, const data::Compose& preprocess,
                            int64_t layer, int64_t head) {
  detail::check_layer_head(model, layer, head, "cls_attention_map");
  return cls_attention_map(record_attention(model, image, preprocess), layer, head);
}

// The mean over the heads of block `layer`, (grid, grid).
template <class T>
Tensor<T> mean_cls_attention_map(nn::VisionTransformer<T>& model, const data::Image& image,
                                 const data::Compose& preprocess, int64_t layer) {
  detail::check_layer_head(model, layer, 0, "mean_cls_attention_map");
  return mean_cls_attention_map(record_attention(model, image, preprocess), layer);
}

// The attention rollout over all blocks, (grid, grid).
template <class T>
Tensor<T> attention_rollout(nn::VisionTransformer<T>& model, const data::Image& image, const data::Compose& preprocess,
                            const RolloutOptions& options = {}) {
  return attention_rollout(record_attention(model, image, preprocess), 0, options);
}

// PNG of the heatmap of head `head` of block `layer` over `image`.
template <class T>
void write_attention_heatmap_png(const std::filesystem::path& path, nn::VisionTransformer<T>& model,
                                 const data::Image& image, const data::Compose& preprocess, int64_t layer,
                                 int64_t head, const HeatmapOptions& options = {}) {
  write_heatmap_png(path, cls_attention_map(model, image, preprocess, layer, head), image, options);
}

// PNG of the rollout heatmap over `image`.
template <class T>
void write_rollout_heatmap_png(const std::filesystem::path& path, nn::VisionTransformer<T>& model,
                               const data::Image& image, const data::Compose& preprocess,
                               const RolloutOptions& rollout = {}, const HeatmapOptions& options = {}) {
  write_heatmap_png(path, attention_rollout(model, image, preprocess, rollout), image, options);
}

// PNG of one heatmap panel per head of block `layer` over `image`.
template <class T>
void write_head_grid_png(const std::filesystem::path& path, nn::VisionTransformer<T>& model, const data::Image& image,
                         const data::Compose& preprocess, int64_t layer, const HeadGridOptions& options = {}) {
  detail::check_layer_head(model, layer, 0, "write_head_grid_png");
  write_head_grid_png(path, cls_attention_maps(record_attention(model, image, preprocess), layer), image, options);
}

}  // namespace tessera::viz
