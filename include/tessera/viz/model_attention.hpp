// Attention pictures straight from a VisionTransformer: run the model on an input (a batch tensor, or one image
// through its preprocessing) keeping every block's attention, then the maps, rollout and PNGs of the other viz headers,
// read with the query of what the model's head reads (attention_query): the class token's row for global_pool
// "token", the mean of the patch rows — the attention each patch receives — for "avg" and "seqpool".
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "tessera/autograd/grad_mode.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/data/image.hpp"
#include "tessera/data/transforms.hpp"
#include "tessera/nn/vision_transformer.hpp"
#include "tessera/ops/shape_ops.hpp"
#include "tessera/viz/attention_maps.hpp"
#include "tessera/viz/heatmap.hpp"
#include "tessera/viz/rollout.hpp"

namespace tessera::viz {

namespace detail {

// The input a model runs on: (batch >= 1, in_chans, img_size, img_size).
template <class T>
void check_model_input(const nn::ViTConfig& c, const Tensor<T>& input, const char* op) {
  TESSERA_CHECK(input.defined() && input.rank() == 4 && input.size(0) > 0 && input.size(1) == c.in_chans &&
                    input.size(2) == c.img_size && input.size(3) == c.img_size,
                op, ": the input must be (batch, ", c.in_chans, ", ", c.img_size, ", ", c.img_size,
                ") for this model, got shape ", input.defined() ? input.shape().str() : std::string("undefined"));
}

template <class T>
void check_layer_head(const nn::VisionTransformer<T>& model, int64_t layer, int64_t head, const char* op) {
  TESSERA_CHECK(layer >= 0 && layer < model.config().depth, op, ": layer ", layer, " is out of range for a model of ",
                model.config().depth, " blocks");
  TESSERA_CHECK(head >= 0 && head < model.config().num_heads, op, ": head ", head, " is out of range for ",
                model.config().num_heads, " heads");
}

inline void check_class_token(const nn::ViTConfig& config, const char* op) {
  TESSERA_CHECK(config.class_token, op, ": the model has no class token (class_token = false, global_pool \"",
                config.global_pool, "\"); attention_map, mean_attention_map and attention_rollout read what its head "
                "reads (attention_query)");
}

template <class T>
Tensor<T> image_input(const data::Image& image, const data::Compose& preprocess) {
  Generator generator(0);  // for random steps, which an evaluation pipeline should not have
  const data::FloatImage x = preprocess(image, generator);
  Tensor<T> input(Shape{1, x.channels, x.height, x.width});
  for (int64_t i = 0; i < x.numel(); ++i) input.data()[i] = static_cast<T>(x.values[static_cast<size_t>(i)]);
  return input;
}

}  // namespace detail

// Runs `model` on `input` (B, in_chans, img_size, img_size) in eval mode without recording gradients and returns
// each block's attention probabilities, (B, num_heads, N, N) per block in order — the forward's own values. The
// model's training mode and each block's keep-attention setting are restored afterwards (a block that was keeping
// attention holds this run's probabilities).
template <class T>
std::vector<Tensor<T>> record_attention(nn::VisionTransformer<T>& model, const Tensor<T>& input) {
  const nn::ViTConfig& c = model.config();
  detail::check_model_input(c, input, "record_attention");
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
  return record_attention(model, detail::image_input<T>(image, preprocess));
}

// The query of what the head of a model with `config` reads: the class token's row for global_pool "token"; the
// plain mean of the patch rows after config.num_prefix_tokens() prefix tokens for "avg" (the mean attention each
// patch receives) and for "seqpool" (whose pooling weights depend on the input: attention_query(model, input) adds
// them).
inline AttentionQuery attention_query(const nn::ViTConfig& config) {
  if (config.global_pool == "token") return AttentionQuery::class_token();
  return AttentionQuery::patch_mean(config.num_prefix_tokens());
}

// The same for `model` run on `input` (B, in_chans, img_size, img_size): for global_pool "seqpool", the mean of the
// patch rows weighted by the sequence-pooling weights of each image (B * P values, as the head weights the patch
// tokens; one more forward, in eval mode without gradients, the model's training mode restored); otherwise
// attention_query(model.config()).
template <class T>
AttentionQuery attention_query(nn::VisionTransformer<T>& model, const Tensor<T>& input) {
  const nn::ViTConfig& c = model.config();
  if (c.global_pool != "seqpool") return attention_query(c);
  detail::check_model_input(c, input, "attention_query");
  struct Restore {
    nn::VisionTransformer<T>& model;
    bool training;
    ~Restore() { model.train(training); }
  } restore{model, model.is_training()};
  model.eval();
  NoGradGuard no_grad;
  const Tensor<T> h = model.forward_blocks(input);
  const int64_t prefix = c.num_prefix_tokens();
  Tensor<T> patches = prefix > 0 ? ops::slice(h, 1, prefix, h.size(1)) : h;
  if (!c.uses_fc_norm()) patches = model.norm(patches);
  const Tensor<T> weights = model.sequence_pool_weights(patches);  // (B, P)
  std::vector<double> w(static_cast<size_t>(weights.numel()));
  for (int64_t i = 0; i < weights.numel(); ++i) w[static_cast<size_t>(i)] = static_cast<double>(weights.data()[i]);
  return AttentionQuery::patch_mean(prefix, std::move(w));
}

// The same for one image through `preprocess`.
template <class T>
AttentionQuery attention_query(nn::VisionTransformer<T>& model, const data::Image& image,
                               const data::Compose& preprocess) {
  if (model.config().global_pool != "seqpool") return attention_query(model.config());
  return attention_query(model, detail::image_input<T>(image, preprocess));
}

// Head `head` of block `layer`: the map of what the head reads (attention_query) over the patches of `image`,
// (grid, grid) — the class token's attention, or the mean attention each patch receives.
template <class T>
Tensor<T> attention_map(nn::VisionTransformer<T>& model, const data::Image& image, const data::Compose& preprocess,
                        int64_t layer, int64_t head) {
  detail::check_layer_head(model, layer, head, "attention_map");
  const AttentionQuery query = attention_query(model, image, preprocess);
  return attention_map(record_attention(model, image, preprocess), layer, head, 0, query);
}

// The mean over the heads of block `layer` of those maps, (grid, grid).
template <class T>
Tensor<T> mean_attention_map(nn::VisionTransformer<T>& model, const data::Image& image,
                             const data::Compose& preprocess, int64_t layer) {
  detail::check_layer_head(model, layer, 0, "mean_attention_map");
  const AttentionQuery query = attention_query(model, image, preprocess);
  return mean_attention_map(record_attention(model, image, preprocess), layer, 0, query);
}

// Head `head` of block `layer`: the class token's attention over the patches of `image`, (grid, grid). Only for
// models with a class token; attention_map is the same for those whose head reads it.
template <class T>
Tensor<T> cls_attention_map(nn::VisionTransformer<T>& model, const data::Image& image, const data::Compose& preprocess,
                            int64_t layer, int64_t head) {
  detail::check_layer_head(model, layer, head, "cls_attention_map");
  detail::check_class_token(model.config(), "cls_attention_map");
  return cls_attention_map(record_attention(model, image, preprocess), layer, head);
}

// The mean over the heads of block `layer` of the class-token maps, (grid, grid). Only for models with a class token.
template <class T>
Tensor<T> mean_cls_attention_map(nn::VisionTransformer<T>& model, const data::Image& image,
                                 const data::Compose& preprocess, int64_t layer) {
  detail::check_layer_head(model, layer, 0, "mean_cls_attention_map");
  detail::check_class_token(model.config(), "mean_cls_attention_map");
  return mean_cls_attention_map(record_attention(model, image, preprocess), layer);
}

// The attention rollout over all blocks, (grid, grid): the row of what the head reads (options.query when set).
template <class T>
Tensor<T> attention_rollout(nn::VisionTransformer<T>& model, const data::Image& image, const data::Compose& preprocess,
                            RolloutOptions options = {}) {
  if (!options.query) options.query = attention_query(model, image, preprocess);
  return attention_rollout(record_attention(model, image, preprocess), 0, options);
}

// PNG of the heatmap of head `head` of block `layer` over `image` (attention_map).
template <class T>
void write_attention_heatmap_png(const std::filesystem::path& path, nn::VisionTransformer<T>& model,
                                 const data::Image& image, const data::Compose& preprocess, int64_t layer,
                                 int64_t head, const HeatmapOptions& options = {}) {
  write_heatmap_png(path, attention_map(model, image, preprocess, layer, head), image, options);
}

// PNG of the rollout heatmap over `image`.
template <class T>
void write_rollout_heatmap_png(const std::filesystem::path& path, nn::VisionTransformer<T>& model,
                               const data::Image& image, const data::Compose& preprocess,
                               const RolloutOptions& rollout = {}, const HeatmapOptions& options = {}) {
  write_heatmap_png(path, attention_rollout(model, image, preprocess, rollout), image, options);
}

// PNG of one heatmap panel per head of block `layer` over `image` (attention_maps with attention_query).
template <class T>
void write_head_grid_png(const std::filesystem::path& path, nn::VisionTransformer<T>& model, const data::Image& image,
                         const data::Compose& preprocess, int64_t layer, const HeadGridOptions& options = {}) {
  detail::check_layer_head(model, layer, 0, "write_head_grid_png");
  const AttentionQuery query = attention_query(model, image, preprocess);
  write_head_grid_png(path, attention_maps(record_attention(model, image, preprocess), layer, 0, query), image,
                      options);
}

}  // namespace tessera::viz
