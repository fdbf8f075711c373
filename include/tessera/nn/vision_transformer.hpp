// nn::VisionTransformer: the same function as timm's VisionTransformer — patch embedding, class token, position
// embedding, pre-norm transformer blocks (optionally with LayerScale), final LayerNorm, pooling, linear head — with
// timm's parameter names and initialisation. The options beyond timm's defaults (class_token, global_pool, fc_norm,
// init_values, pos_embed, and the convolutional stem: stem_channels, stem_strides, patch_kernel) are fields of
// ViTConfig.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/attention.hpp"
#include "tessera/nn/config.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/layer_norm.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/patch_embedding.hpp"
#include "tessera/nn/pos_embed.hpp"
#include "tessera/nn/transformer_block.hpp"
#include "tessera/ops/activation.hpp"
#include "tessera/ops/elementwise.hpp"
#include "tessera/ops/reduce.hpp"
#include "tessera/ops/reshape.hpp"
#include "tessera/ops/shape_ops.hpp"
#include "tessera/ops/tokens.hpp"

namespace tessera::nn {

template <class T>
class VisionTransformer : public Module<T> {
  ViTConfig config_;            // first, so it is validated before any layer is built
  Generator noise_generator_;   // for dropout and drop-path

 public:
  // Builds the model and initialises it as timm does for config.weight_init, drawing from `init_generator`.
  // Dropout and drop-path draw from the model's own generator, seeded from init_generator (see set_generator).
  VisionTransformer(const ViTConfig& config, Generator& init_generator)
      : Module<T>("VisionTransformer"),
        config_(checked(config)),
        noise_generator_(init_generator.next_u64()),
        patch_embed(config.img_size, config.patch_size, config.in_chans, config.embed_dim, stem_options(config),
                    init_generator),
        pos_drop(config.pos_drop_rate),
        norm(config.embed_dim, config.layer_norm_eps),
        fc_norm(config.embed_dim, config.layer_norm_eps),
        head_drop(config.drop_rate),
        head(config.embed_dim, config.num_classes, true, init_generator) {
    if (config.class_token) {
      cls_token = Tensor<T>::zeros(Shape{1, 1, config.embed_dim});
      this->register_parameter("cls_token", cls_token);
    }
    if (config.pos_embed == "learn") {
      pos_embed = Tensor<T>::zeros(Shape{1, config.num_tokens(), config.embed_dim});
      this->register_parameter("pos_embed", pos_embed);
    } else if (config.pos_embed == "sincos") {
      pos_embed = posemb_sincos_2d<T>(GridSize{config.grid_size(), config.grid_size()}, config.embed_dim,
                                      config.num_prefix_tokens());
      this->register_buffer("pos_embed", pos_embed);
    } else if (config.class_token) {
      no_positions_ = Tensor<T>::zeros(Shape{1, config.num_tokens(), config.embed_dim});
    }
    this->register_module("patch_embed", patch_embed);
    this->register_module("pos_drop", pos_drop);
    for (int64_t i = 0; i < config.depth; ++i) {
      TransformerBlockOptions o;
      o.dim = config.embed_dim;
      o.num_heads = config.num_heads;
      o.mlp_hidden_dim = config.mlp_hidden_dim();
      o.qkv_bias = config.qkv_bias;
      o.attn_drop = config.attn_drop_rate;
      o.proj_drop = config.proj_drop_rate;
      o.drop_path = config.depth > 1 ? config.drop_path_rate * static_cast<double>(i) / static_cast<double>(config.depth - 1)
                                     : 0.0;  // torch.linspace(0, drop_path_rate, depth)
      o.layer_norm_eps = config.layer_norm_eps;
      o.init_values = config.init_values;
      blocks.emplace_back(o, init_generator);
    }
    this->register_module("blocks", blocks);
    if (!config.uses_fc_norm()) this->register_module("norm", norm);
    if (config.global_pool == "seqpool") {
      attention_pool = std::make_unique<Linear<T>>(config.embed_dim, 1, true, init_generator);
      this->register_module("attention_pool", *attention_pool);
    }
    if (config.uses_fc_norm()) this->register_module("fc_norm", fc_norm);
    this->register_module("head_drop", head_drop);
    this->register_module("head", head);
    init_weights(init_generator);
    this->set_generator(noise_generator_);
  }
  explicit VisionTransformer(const ViTConfig& config, uint64_t seed = 0)
      : VisionTransformer(config, seeded(seed)) {}

  const ViTConfig& config() const { return config_; }

  // timm's init_weights: a learned pos_embed ~ trunc_normal(std .02), cls_token ~ N(0, 1e-6²), then per module —
  //   "":    Linear weights trunc_normal(std .02) and zero biases; the patch Conv2d (and every convolution of a stem)
  //          keeps torch's default init;
  //   "jax": Linear weights xavier_uniform, zero biases except the MLP's (N(0, 1e-6²)), the head zero (bias 0, or
  //          -log(num_classes) for "jax_nlhb"); the patch Conv2d and the stem's convolutions lecun_normal with a
  //          zero bias.
  // LayerNorms are ones and zeros in both, so are a stem's BatchNorms; LayerScale gammas keep init_values; a sin-cos
  // pos_embed its table.
  // (attention_pool, of global_pool "seqpool", is a Linear like the others.)
  void init_weights(Generator& generator) {
    const bool jax = config_.weight_init.rfind("jax", 0) == 0;
    const double head_bias = config_.weight_init == "jax_nlhb" ? -std::log(static_cast<double>(config_.num_classes)) : 0.0;
    if (config_.pos_embed == "learn") init::trunc_normal_(pos_embed, 0.02, generator);
    if (config_.class_token) init::normal_(cls_token, 0.0, 1e-6, generator);
    this->visit_modules([&](const std::string& name, Module<T>& m) {
      if (auto* linear = dynamic_cast<Linear<T>*>(&m)) {
        if (!jax) {
          init::trunc_normal_(linear->weight, 0.02, generator);
          if (linear->has_bias()) init::zeros_(linear->bias);
        } else if (name.rfind("head", 0) == 0) {
          init::zeros_(linear->weight);
          if (linear->has_bias()) init::constant_(linear->bias, head_bias);
        } else {
          init::xavier_uniform_(linear->weight, generator);
          if (linear->has_bias()) {
            if (name.find("mlp") != std::string::npos)
              init::normal_(linear->bias, 0.0, 1e-6, generator);
            else
              init::zeros_(linear->bias);
          }
        }
      } else if (auto* conv = dynamic_cast<PatchProjection<T>*>(&m)) {
        if (jax && conv->weight.defined()) {
          init::lecun_normal_(conv->weight, generator);
          init::zeros_(conv->bias);
        }
      } else if (auto* stem_conv = dynamic_cast<Conv2d<T>*>(&m)) {
        if (jax) {
          init::lecun_normal_(stem_conv->weight, generator);
          if (stem_conv->has_bias()) init::zeros_(stem_conv->bias);
        }
      } else if (auto* layer_norm = dynamic_cast<LayerNorm<T>*>(&m)) {
        init::ones_(layer_norm->weight);
        init::zeros_(layer_norm->bias);
      }
    });
  }

  // x is (B, in_chans, img_size, img_size); returns every token after the last block, before the final norm,
  // (B, num_tokens, dim): the class token first when there is one, then the patches row by row.
  Tensor<T> forward_blocks(const Tensor<T>& x) {
    const Tensor<T> patches = patch_embed(x);
    Tensor<T> h;
    if (config_.class_token)
      h = ops::class_token_and_position(patches, cls_token, pos_embed.defined() ? pos_embed : no_positions_);
    else
      h = pos_embed.defined() ? ops::add(patches, pos_embed) : patches;
    h = pos_drop(h);
    for (auto& block : blocks) h = (*block)(h);
    return h;
  }

  // timm's forward_features: every token after the final norm `norm` — or before any norm when the model
  // normalises after pooling (fc_norm) — (B, num_tokens, dim).
  Tensor<T> forward_tokens(const Tensor<T>& x) {
    return config_.uses_fc_norm() ? forward_blocks(x) : norm(forward_blocks(x));
  }

  // What the head reads, (B, dim): the tokens pooled as config.global_pool says and normalised (by `norm` on
  // every token before pooling, or by `fc_norm` after it). The norms act on each token alone, so only the tokens
  // that pooling reads are normalised: the class token for "token", the patch tokens for "avg" and "seqpool".
  Tensor<T> forward_features(const Tensor<T>& x) {
    const Tensor<T> h = forward_blocks(x);
    const bool after = config_.uses_fc_norm();
    Tensor<T> pooled;
    if (config_.global_pool == "token") {
      pooled = ops::select(h, 1, 0);
      if (!after) pooled = norm(pooled);
    } else {
      const int64_t prefix = config_.num_prefix_tokens();
      Tensor<T> patches = prefix > 0 ? ops::slice(h, 1, prefix, h.size(1)) : h;
      if (!after) patches = norm(patches);
      pooled = config_.global_pool == "avg" ? ops::mean(patches, {1}) : sequence_pool(patches);
    }
    return after ? fc_norm(pooled) : pooled;
  }

  // The weights of sequence pooling (global_pool "seqpool") for patch tokens (B, P, dim) as the pooling reads them
  // (normalised unless fc_norm): softmax over the tokens of attention_pool(tokens), (B, P).
  Tensor<T> sequence_pool_weights(const Tensor<T>& tokens) {
    TESSERA_CHECK(attention_pool != nullptr, "VisionTransformer::sequence_pool_weights: the model pools with \"",
                  config_.global_pool, "\", not \"seqpool\"");
    TESSERA_CHECK(tokens.rank() == 3 && tokens.size(2) == config_.embed_dim,
                  "VisionTransformer::sequence_pool_weights: tokens must be (B, P, ", config_.embed_dim, "), got shape ",
                  tokens.shape());
    return ops::softmax(ops::reshape((*attention_pool)(tokens), {tokens.size(0), tokens.size(1)}));
  }
  // Sequence pooling of tokens (B, P, dim): Σ_p weights[b, p] tokens[b, p], (B, dim).
  Tensor<T> sequence_pool(const Tensor<T>& tokens) {
    return ops::weighted_token_sum(tokens, sequence_pool_weights(tokens));
  }

  // features (B, dim) -> logits (B, num_classes).
  Tensor<T> forward_head(const Tensor<T>& features) { return head(head_drop(features)); }

  // Logits (B, num_classes).
  Tensor<T> forward(const Tensor<T>& x) { return forward_head(forward_features(x)); }
  Tensor<T> operator()(const Tensor<T>& x) { return forward(x); }

  // Keep (or stop keeping) each block's attention probabilities at every forward.
  void set_keep_attention(bool keep) {
    for (auto& block : blocks) block->attn.set_keep_attention(keep);
  }
  // The kept probabilities, one (B, num_heads, N, N) tensor per block.
  std::vector<Tensor<T>> attention_probs() const {
    std::vector<Tensor<T>> out;
    for (const auto& block : blocks) out.push_back(block->attn.attention_probs());
    return out;
  }
  // Uses `fn` for the attention math of every block (e.g. ops::attention<T>, the fused kernel).
  void set_attention_fn(const AttentionFn<T>& fn) {
    for (auto& block : blocks) block->attn.set_attention_fn(fn);
  }

  // The generator owned by the model, which dropout and drop-path use unless set_generator chose another.
  Generator& noise_generator() { return noise_generator_; }

  Tensor<T> cls_token;  // (1, 1, dim); undefined without class_token
  Tensor<T> pos_embed;  // (1, num_tokens, dim): a parameter ("learn"), a buffer ("sincos"), or undefined ("none")
  PatchEmbedding<T> patch_embed;
  Dropout<T> pos_drop;
  ModuleList<T, TransformerBlock<T>> blocks;
  // The final norm: `norm` on every token before pooling, or `fc_norm` after it (config.uses_fc_norm()). Only the
  // one in use is registered (timm has an Identity for the other); the other must not be used.
  LayerNorm<T> norm;
  std::unique_ptr<Linear<T>> attention_pool;  // Linear(dim, 1) of global_pool "seqpool"; null otherwise
  LayerNorm<T> fc_norm;
  Dropout<T> head_drop;
  Linear<T> head;

 private:
  Tensor<T> no_positions_;  // zeros (1, num_tokens, dim) for a class token without a position embedding

  static const ViTConfig& checked(const ViTConfig& config) {
    config.validate();
    return config;
  }
  static PatchStemOptions stem_options(const ViTConfig& config) {
    PatchStemOptions o;
    o.stem_channels = config.stem_channels;
    for (size_t i = 0; i < config.stem_channels.size(); ++i) o.stem_strides.push_back(config.stem_stride(i));
    o.proj_kernel = config.patch_kernel;
    return o;
  }
  static Generator& seeded(uint64_t seed) {
    thread_local Generator generator;
    generator.manual_seed(seed);
    return generator;
  }

};

}  // namespace tessera::nn
