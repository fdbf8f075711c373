// ViTConfig: every hyper-parameter of a VisionTransformer (timm's argument names and defaults), presets, and
// JSON conversion so a config can travel in a safetensors header.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/core/error.hpp"
#include "tessera/nn/json.hpp"

namespace tessera::nn {

// The largest value a size field of ViTConfig (img_size, embed_dim, depth, ...) and the MLP width may take: far beyond
// any model that fits in memory, and small enough that the products a config derives (num_patches, the stem's
// downsampling) cannot overflow int64.
inline constexpr int64_t kMaxConfigSize = 2147483647;  // 2^31 - 1
// The most stages a convolutional stem may have.
inline constexpr size_t kMaxStemStages = 32;

struct ViTConfig {
  int64_t img_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t num_classes = 1000;
  int64_t embed_dim = 768;
  int64_t depth = 12;
  int64_t num_heads = 12;
  double mlp_ratio = 4.0;  // MLP hidden width = int(embed_dim * mlp_ratio), truncated as in timm
  bool qkv_bias = true;
  double drop_rate = 0.0;       // dropout before the head
  double pos_drop_rate = 0.0;   // dropout after adding the position embedding
  double attn_drop_rate = 0.0;  // dropout on the attention probabilities
  double proj_drop_rate = 0.0;  // dropout after the attention projection and inside the MLP
  double drop_path_rate = 0.0;  // stochastic depth, rising linearly from 0 (first block) to this (last block)
  double layer_norm_eps = 1e-6;
  std::string weight_init = "";  // timm's weight_init: "" (timm default), "jax" or "jax_nlhb"

  // ---- token pooling, LayerScale and position embedding (docs/architecture.md, "Model options") ----------
  bool class_token = true;  // timm's class_token: a learned token `cls_token` put before the patches
  // What the head reads (timm's global_pool): "token" the class token (needs class_token), "avg" the mean of the
  // patch tokens, or "seqpool" — tessera's own, which timm lacks — the sequence pooling of Compact Transformers:
  // softmax over the patch tokens of a Linear(dim, 1) named `attention_pool`, then their weighted sum.
  std::string global_pool = "token";
  // timm's fc_norm: the final LayerNorm after pooling (`fc_norm`) instead of on every token before it (`norm`).
  // Unset means timm's default: on for global_pool "avg", off otherwise.
  std::optional<bool> fc_norm;
  // timm's init_values: LayerScale when > 0 — each block's branch outputs are multiplied by a learned per-channel
  // gamma (`blocks.N.ls1.gamma`, `blocks.N.ls2.gamma`) that starts at this value. 0 (timm's None) is off.
  double init_values = 0.0;
  // timm's pos_embed: "learn" (a learned `pos_embed`), "none" (or "", none at all), or "sincos" — tessera's own,
  // which timm lacks — the fixed 2D sin-cos table of big_vision's posemb_sincos_2d, kept as the buffer `pos_embed`
  // (zero at the class token), so a timm model with pos_embed "learn" loads it and computes the same function.
  std::string pos_embed = "learn";

  // ---- convolutional stem and overlapping patch embedding (docs/architecture.md, "Model options") -------
  // Both tessera's own fields; timm has the layers (ConvStem inside HybridEmbed) but no VisionTransformer argument.
  // stem_channels: the output channels of each stage of a convolutional stem (Xiao et al. 2021, "Early Convolutions
  // Help Transformers See Better") that replaces the patchify convolution: stage i is a 3x3 convolution (padding 1,
  // stride stem_strides[i], no bias), BatchNorm2d and ReLU. Empty (the default) is timm's plain patch embedding.
  std::vector<int64_t> stem_channels;
  // The stride of each stem stage, 1 or 2; empty means 2 for every stage, else one per stage. Their product must
  // divide patch_size: the stages downsample by it and the final projection by the rest, so the token grid stays
  // img_size / patch_size.
  std::vector<int64_t> stem_strides;
  // The kernel of the final projection to embed_dim (a convolution with bias). Its stride is patch_size divided by
  // the stem's downsampling (patch_size without a stem); 0 (the default) makes the kernel equal to that stride (1x1
  // after a stem that did all the downsampling, timm's patchify without one). A larger kernel overlaps neighbouring
  // patches: it is zero-padded by ceil((kernel - stride) / 2) on every side, which keeps the grid; an odd
  // kernel - stride needs a stride of at least 2 and puts the extra pixel of context before the patch (e.g. kernel
  // 7, stride 4, padding 2: the patch, 2 pixels before it and 1 after).
  // Parameter names: without a stem and with the kernel equal to patch_size, timm's `patch_embed.proj.*`; otherwise
  // those of timm's ConvStem inside HybridEmbed(proj=False): stage i is `patch_embed.backbone.<i>.conv.weight` and
  // `patch_embed.backbone.<i>.bn.*` (weight, bias, running_mean, running_var, num_batches_tracked), the final
  // projection `patch_embed.backbone.<n>.conv.weight` and `.bias` (n = number of stages). The same function in timm:
  // VisionTransformer(patch_size=1, embed_layer=partial(HybridEmbed, proj=False, backbone=ConvStem(in_chans,
  // depth=n+1, channels=(*stem_channels, embed_dim), kernel_size=(3, ..., 3, kernel), stride=(*strides, stride),
  // padding=(1, ..., 1, padding)))) with ConvStem's defaults BatchNorm2d and ReLU.
  int64_t patch_kernel = 0;

  int64_t grid_size() const { return img_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }
  int64_t num_prefix_tokens() const { return class_token ? 1 : 0; }         // timm's num_prefix_tokens
  int64_t num_tokens() const { return num_prefix_tokens() + num_patches(); }  // the class token (if any) and patches
  bool uses_fc_norm() const { return fc_norm.value_or(global_pool == "avg"); }
  bool has_pos_embed() const { return pos_embed == "learn" || pos_embed == "sincos"; }
  int64_t head_dim() const { return embed_dim / num_heads; }
  int64_t mlp_hidden_dim() const { return static_cast<int64_t>(static_cast<double>(embed_dim) * mlp_ratio); }
  // The stem and the final projection of the patch embedding (see stem_channels, stem_strides, patch_kernel).
  int64_t stem_stride(size_t stage) const { return stem_strides.empty() ? 2 : stem_strides.at(stage); }
  int64_t stem_downsampling() const {  // the product of the stem's strides, 1 without a stem
    int64_t product = 1;
    for (size_t i = 0; i < stem_channels.size(); ++i) product *= stem_stride(i);
    return product;
  }
  int64_t patch_proj_stride() const { return patch_size / stem_downsampling(); }
  int64_t patch_proj_kernel() const { return patch_kernel > 0 ? patch_kernel : patch_proj_stride(); }
  int64_t patch_proj_padding() const { return (patch_proj_kernel() - patch_proj_stride() + 1) / 2; }
  // True for timm's plain patch embedding (a stride-p convolution with kernel p, `patch_embed.proj`).
  bool plain_patch_embed() const { return stem_channels.empty() && patch_proj_kernel() == patch_size; }

  // Throws tessera::Error naming the first inconsistent field.
  void validate() const {
    auto positive = [](int64_t v, const char* name) {
      TESSERA_CHECK(v > 0, "ViTConfig: ", name, " must be positive, got ", v);
      TESSERA_CHECK(v <= kMaxConfigSize, "ViTConfig: ", name, " is ", v, ", more than the limit ", kMaxConfigSize);
    };
    positive(img_size, "img_size");
    positive(patch_size, "patch_size");
    positive(in_chans, "in_chans");
    positive(num_classes, "num_classes");
    positive(embed_dim, "embed_dim");
    positive(depth, "depth");
    positive(num_heads, "num_heads");
    TESSERA_CHECK(img_size % patch_size == 0, "ViTConfig: img_size ", img_size, " is not divisible by patch_size ",
                  patch_size);
    TESSERA_CHECK(embed_dim % num_heads == 0, "ViTConfig: embed_dim ", embed_dim, " is not divisible by num_heads ",
                  num_heads);
    // Checked as a double before mlp_hidden_dim() converts the product to an integer.
    TESSERA_CHECK(std::isfinite(mlp_ratio) && mlp_ratio > 0.0 &&
                      static_cast<double>(embed_dim) * mlp_ratio < static_cast<double>(kMaxConfigSize) + 1.0,
                  "ViTConfig: mlp_ratio ", mlp_ratio, " must be positive and make an MLP of at most ", kMaxConfigSize,
                  " units for embed_dim ", embed_dim);
    TESSERA_CHECK(mlp_hidden_dim() > 0, "ViTConfig: mlp_ratio ", mlp_ratio, " gives an empty MLP for embed_dim ",
                  embed_dim);
    auto rate = [](double p, const char* name) {
      TESSERA_CHECK(p >= 0.0 && p < 1.0, "ViTConfig: ", name, " must be in [0, 1), got ", p);
    };
    rate(drop_rate, "drop_rate");
    rate(pos_drop_rate, "pos_drop_rate");
    rate(attn_drop_rate, "attn_drop_rate");
    rate(proj_drop_rate, "proj_drop_rate");
    rate(drop_path_rate, "drop_path_rate");
    TESSERA_CHECK(layer_norm_eps > 0.0, "ViTConfig: layer_norm_eps must be positive, got ", layer_norm_eps);
    TESSERA_CHECK(weight_init.empty() || weight_init == "jax" || weight_init == "jax_nlhb",
                  "ViTConfig: weight_init must be \"\", \"jax\" or \"jax_nlhb\", got \"", clip(weight_init), "\"");
    TESSERA_CHECK(global_pool == "token" || global_pool == "avg" || global_pool == "seqpool",
                  "ViTConfig: global_pool must be \"token\", \"avg\" or \"seqpool\", got \"", clip(global_pool),
                  "\" (tessera supports these three of timm's pooling modes)");
    TESSERA_CHECK(class_token || global_pool != "token",
                  "ViTConfig: global_pool \"token\" reads the class token, so it needs class_token = true (use "
                  "global_pool \"avg\" or \"seqpool\" without one)");
    TESSERA_CHECK(std::isfinite(init_values) && init_values >= 0.0,
                  "ViTConfig: init_values (LayerScale) must be 0 (off) or positive, got ", init_values);
    TESSERA_CHECK(pos_embed == "learn" || pos_embed == "sincos" || pos_embed == "none" || pos_embed.empty(),
                  "ViTConfig: pos_embed must be \"learn\", \"sincos\", \"none\" or \"\", got \"", clip(pos_embed), "\"");
    TESSERA_CHECK(pos_embed != "sincos" || (embed_dim % 4 == 0 && embed_dim >= 8),
                  "ViTConfig: pos_embed \"sincos\" splits embed_dim into four parts of at least 2 (sin and cos of "
                  "x and y), so it needs a multiple of 4 from 8 up, got embed_dim ", embed_dim);
    validate_patch_embedding();
  }

  // ---- presets -------------------------------------------------------------------------------------------
  // The CIFAR-10 model of the reference recipe (GUIDE.md).
  static ViTConfig vit_cifar() {
    ViTConfig c;
    c.img_size = 32;
    c.patch_size = 4;
    c.num_classes = 10;
    c.embed_dim = 192;
    c.depth = 6;
    c.num_heads = 3;
    c.mlp_ratio = 2.0;
    return c;
  }
  // timm's vit_tiny_patch16_224, vit_small_patch16_224 and vit_base_patch16_224 (ImageNet-1k heads).
  static ViTConfig vit_tiny_patch16_224() { return imagenet(192, 3); }
  static ViTConfig vit_small_patch16_224() { return imagenet(384, 6); }
  static ViTConfig vit_base_patch16_224() { return imagenet(768, 12); }

  // ---- JSON ----------------------------------------------------------------------------------------------
  nlohmann::json to_json() const {
    return {{"img_size", img_size},
            {"patch_size", patch_size},
            {"in_chans", in_chans},
            {"num_classes", num_classes},
            {"embed_dim", embed_dim},
            {"depth", depth},
            {"num_heads", num_heads},
            {"mlp_ratio", mlp_ratio},
            {"qkv_bias", qkv_bias},
            {"drop_rate", drop_rate},
            {"pos_drop_rate", pos_drop_rate},
            {"attn_drop_rate", attn_drop_rate},
            {"proj_drop_rate", proj_drop_rate},
            {"drop_path_rate", drop_path_rate},
            {"layer_norm_eps", layer_norm_eps},
            {"weight_init", weight_init},
            {"class_token", class_token},
            {"global_pool", global_pool},
            {"fc_norm", fc_norm ? nlohmann::json(*fc_norm) : nlohmann::json(nullptr)},
            {"init_values", init_values},
            {"pos_embed", pos_embed},
            {"stem_channels", stem_channels},
            {"stem_strides", stem_strides},
            {"patch_kernel", patch_kernel}};
  }
  std::string to_json_string() const { return to_json().dump(); }

  // Reads a JSON object of timm VisionTransformer arguments; absent fields keep timm's defaults (so configs written
  // before a field existed still load). An unknown key or a value of the wrong type is an error (it would silently
  // build a different model).
  static ViTConfig from_json(const nlohmann::json& j) {
    TESSERA_CHECK(j.is_object(), "ViTConfig::from_json: expected a JSON object, got ", j.type_name());
    ViTConfig c;
    for (const auto& [key, value] : j.items()) {
      if (key == "img_size") c.img_size = integer(key, value);
      else if (key == "patch_size") c.patch_size = integer(key, value);
      else if (key == "in_chans") c.in_chans = integer(key, value);
      else if (key == "num_classes") c.num_classes = integer(key, value);
      else if (key == "embed_dim") c.embed_dim = integer(key, value);
      else if (key == "depth") c.depth = integer(key, value);
      else if (key == "num_heads") c.num_heads = integer(key, value);
      else if (key == "mlp_ratio") c.mlp_ratio = number(key, value);
      else if (key == "qkv_bias") c.qkv_bias = boolean(key, value);
      else if (key == "drop_rate") c.drop_rate = number(key, value);
      else if (key == "pos_drop_rate") c.pos_drop_rate = number(key, value);
      else if (key == "attn_drop_rate") c.attn_drop_rate = number(key, value);
      else if (key == "proj_drop_rate") c.proj_drop_rate = number(key, value);
      else if (key == "drop_path_rate") c.drop_path_rate = number(key, value);
      else if (key == "layer_norm_eps") c.layer_norm_eps = number(key, value);
      else if (key == "weight_init") c.weight_init = text(key, value);
      else if (key == "class_token") c.class_token = boolean(key, value);
      else if (key == "global_pool") c.global_pool = text(key, value);
      else if (key == "fc_norm") c.fc_norm = value.is_null() ? std::nullopt : std::optional<bool>(boolean(key, value));
      else if (key == "init_values") c.init_values = value.is_null() ? 0.0 : number(key, value);  // timm's None
      else if (key == "pos_embed") c.pos_embed = text(key, value);
      else if (key == "stem_channels") c.stem_channels = integers(key, value);
      else if (key == "stem_strides") c.stem_strides = integers(key, value);
      else if (key == "patch_kernel") c.patch_kernel = integer(key, value);
      else fail_unknown_key(key);
    }
    c.validate();
    return c;
  }
  // Parses `text` (at most kMaxJsonDepth levels of nesting) and reads it with from_json.
  static ViTConfig from_json_string(const std::string& text) {
    return from_json(tessera::detail::parse_json(text, "ViTConfig::from_json_string: the text"));
  }

  friend bool operator==(const ViTConfig&, const ViTConfig&) = default;

 private:
  void validate_patch_embedding() const {
    TESSERA_CHECK(stem_channels.size() <= kMaxStemStages, "ViTConfig: stem_channels has ", stem_channels.size(),
                  " stages, more than the limit ", kMaxStemStages);
    for (size_t i = 0; i < stem_channels.size(); ++i)
      TESSERA_CHECK(stem_channels[i] > 0 && stem_channels[i] <= kMaxConfigSize,
                    "ViTConfig: stem_channels must be positive and at most ", kMaxConfigSize, ", got ",
                    stem_channels[i], " for stage ", i, " of ", list(stem_channels));
    TESSERA_CHECK(!stem_channels.empty() || stem_strides.empty(), "ViTConfig: stem_strides ", list(stem_strides),
                  " given without a stem (stem_channels is empty)");
    TESSERA_CHECK(stem_strides.empty() || stem_strides.size() == stem_channels.size(), "ViTConfig: stem_strides ",
                  list(stem_strides), " must have one stride per stage of stem_channels ", list(stem_channels),
                  " (or be empty for stride 2 everywhere)");
    for (size_t i = 0; i < stem_strides.size(); ++i)
      TESSERA_CHECK(stem_strides[i] == 1 || stem_strides[i] == 2, "ViTConfig: stem_strides must be 1 or 2, got ",
                    stem_strides[i], " for stage ", i, " of ", list(stem_strides));
    const int64_t downsampling = stem_downsampling();
    TESSERA_CHECK(patch_size % downsampling == 0, "ViTConfig: the stem downsamples by ", downsampling,
                  " (the product of its strides ", list(all_stem_strides()),
                  "), which does not divide patch_size ", patch_size);
    const int64_t stride = patch_proj_stride();
    TESSERA_CHECK(patch_kernel >= 0 && patch_kernel <= kMaxConfigSize,
                  "ViTConfig: patch_kernel must be 0 (the projection's stride) or positive and at most ",
                  kMaxConfigSize, ", got ", patch_kernel);
    TESSERA_CHECK(patch_kernel == 0 || patch_kernel >= stride, "ViTConfig: patch_kernel ", patch_kernel,
                  " is smaller than the final projection's stride ", stride, " (patch_size ", patch_size,
                  " / stem downsampling ", downsampling, "): patches would be skipped");
    TESSERA_CHECK((patch_proj_kernel() - stride) % 2 == 0 || stride >= 2, "ViTConfig: patch_kernel ", patch_kernel,
                  " with the final projection's stride 1 must exceed it by an even number (the padding goes evenly "
                  "on both sides to keep the grid)");
  }
  std::vector<int64_t> all_stem_strides() const {
    std::vector<int64_t> out;
    for (size_t i = 0; i < stem_channels.size(); ++i) out.push_back(stem_stride(i));
    return out;
  }
  static std::string list(const std::vector<int64_t>& values) {
    std::string out = "[";
    for (size_t i = 0; i < values.size(); ++i) {
      if (i == 8) return out + ", ... (" + std::to_string(values.size()) + " values)]";
      out += (i ? ", " : "") + std::to_string(values[i]);
    }
    return out + "]";
  }
  static ViTConfig imagenet(int64_t embed_dim, int64_t num_heads) {
    ViTConfig c;
    c.embed_dim = embed_dim;
    c.num_heads = num_heads;
    return c;
  }
  // An integer field: a JSON integer that fits int64, or a float with an integral value (32.0, not 32.5) inside
  // int64's range — checked before the conversion, which would be undefined beyond it (1e50).
  static int64_t integer(const std::string& key, const nlohmann::json& v) {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      TESSERA_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "ViTConfig::from_json: '", key,
                    "' is ", u, ", out of the range of a 64-bit integer");
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      const double d = v.get<double>();
      TESSERA_CHECK(std::isfinite(d) && std::floor(d) == d, "ViTConfig::from_json: '", key,
                    "' must be an integer, got ", excerpt(v));
      constexpr double two_to_63 = 9223372036854775808.0;
      TESSERA_CHECK(d >= -two_to_63 && d < two_to_63, "ViTConfig::from_json: '", key, "' is ", excerpt(v),
                    ", out of the range of a 64-bit integer");
      return static_cast<int64_t>(d);
    }
    tessera::detail::fail("ViTConfig::from_json: '", key, "' must be an integer, got ", excerpt(v));
  }
  static std::string excerpt(const nlohmann::json& v) { return tessera::detail::json_excerpt(v); }
  // A string value or key for a message, cut after 80 characters.
  static std::string clip(const std::string& text) { return text.size() <= 80 ? text : text.substr(0, 80) + "..."; }
  static std::vector<int64_t> integers(const std::string& key, const nlohmann::json& v) {
    TESSERA_CHECK(v.is_array(), "ViTConfig::from_json: '", key, "' must be a list of integers, got ", excerpt(v));
    std::vector<int64_t> out;
    for (const auto& item : v) out.push_back(integer(key, item));
    return out;
  }
  static double number(const std::string& key, const nlohmann::json& v) {
    TESSERA_CHECK(v.is_number(), "ViTConfig::from_json: '", key, "' must be a number, got ", excerpt(v));
    return v.get<double>();
  }
  static bool boolean(const std::string& key, const nlohmann::json& v) {
    TESSERA_CHECK(v.is_boolean(), "ViTConfig::from_json: '", key, "' must be true or false, got ", excerpt(v));
    return v.get<bool>();
  }
  static std::string text(const std::string& key, const nlohmann::json& v) {
    TESSERA_CHECK(v.is_string(), "ViTConfig::from_json: '", key, "' must be a string, got ", excerpt(v));
    return v.get<std::string>();
  }
  [[noreturn]] static void fail_unknown_key(const std::string& key) {
    tessera::detail::fail("ViTConfig::from_json: unknown key '", clip(key),
                          "' (known: img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, "
                          "mlp_ratio, qkv_bias, drop_rate, pos_drop_rate, attn_drop_rate, proj_drop_rate, "
                          "drop_path_rate, layer_norm_eps, weight_init, class_token, global_pool, fc_norm, "
                          "init_values, pos_embed, stem_channels, stem_strides, patch_kernel)");
  }
};

}  // namespace tessera::nn
