// ClassifierInfo: what a program needs besides the weights to use a trained image classifier — the class names and
// the Normalize constants of its input. The Trainer records it in every checkpoint (under the trainer state's
// "classifier" key), so examples/classify and examples/visualize_attention need nothing but the checkpoint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/core/error.hpp"
#include "tessera/data/transforms.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/nn/vision_transformer.hpp"

namespace tessera::train {

struct ClassifierInfo {
  std::vector<std::string> class_names;
  std::vector<float> mean;  // per channel, of images scaled to [0, 1]
  std::vector<float> std;

  nlohmann::json to_json() const { return {{"class_names", class_names}, {"mean", mean}, {"std", std}}; }

  // `where` names the source in error messages (e.g. the checkpoint's path).
  static ClassifierInfo from_json(const nlohmann::json& j, const std::string& where) {
    ClassifierInfo info;
    try {
      info.class_names = j.at("class_names").get<std::vector<std::string>>();
      info.mean = j.at("mean").get<std::vector<float>>();
      info.std = j.at("std").get<std::vector<float>>();
    } catch (const nlohmann::json::exception& e) {
      ::tessera::detail::fail("ClassifierInfo: ", where, " holds classifier information that cannot be read: ",
                              e.what());
    }
    TESSERA_CHECK(!info.class_names.empty(), "ClassifierInfo: ", where, " lists no class names");
    TESSERA_CHECK(!info.mean.empty() && info.mean.size() == info.std.size(), "ClassifierInfo: ", where, " has ",
                  info.mean.size(), " mean and ", info.std.size(), " std values; it needs one of each per channel");
    return info;
  }

  // The evaluation preprocessing for a model of `image_size` input: the shorter side resized to image_size
  // (bilinear), the central image_size square, to [0, 1], Normalize(mean, std) — torchvision's usual test transform.
  data::Compose eval_transform(int64_t image_size) const {
    return data::Compose{data::Resize(image_size), data::CenterCrop(data::Size2(image_size, image_size)),
                         data::ToTensor(), data::Normalize(mean, std)};
  }
};

// The ClassifierInfo a Trainer stored in the checkpoint at `path`; throws naming the file when there is none.
inline ClassifierInfo read_classifier_info(const std::filesystem::path& path) {
  const io::CheckpointState state = io::read_checkpoint_state(path);
  TESSERA_CHECK(state.trainer.contains("classifier"), "read_classifier_info: '", path.string(),
                "' records no class names or normalisation (it was not written by train::Trainer)");
  return ClassifierInfo::from_json(state.trainer.at("classifier"), "'" + path.string() + "'");
}

// A trained classifier read back from a Trainer checkpoint, ready for inference.
struct Classifier {
  nn::ViTConfig config;
  ClassifierInfo info;
  std::unique_ptr<nn::VisionTransformer<float>> model;  // weights loaded strictly, in eval mode
};

// Reads the config, the ClassifierInfo and the weights of the checkpoint at `path`, checking that they agree (one
// class name per output, one Normalize channel per input channel). Throws tessera::Error naming the file.
inline Classifier load_classifier(const std::filesystem::path& path) {
  std::error_code ec;
  TESSERA_CHECK(std::filesystem::is_regular_file(path, ec), "load_classifier: '", path.string(), "' ",
                std::filesystem::exists(path, ec) ? "is not a regular file" : "does not exist");
  Classifier c;
  c.config = io::read_checkpoint_vit_config(path);
  c.info = read_classifier_info(path);
  TESSERA_CHECK(static_cast<int64_t>(c.info.class_names.size()) == c.config.num_classes, "load_classifier: '",
                path.string(), "' names ", c.info.class_names.size(), " classes but its model config has num_classes ",
                c.config.num_classes);
  TESSERA_CHECK(static_cast<int64_t>(c.info.mean.size()) == c.config.in_chans, "load_classifier: '", path.string(),
                "' has ", c.info.mean.size(), " Normalize channels but its model config has in_chans ",
                c.config.in_chans);
  c.model = std::make_unique<nn::VisionTransformer<float>>(c.config);
  io::load_model_weights(path, *c.model);  // strict: every tensor present with its shape, nothing else
  c.model->eval();
  return c;
}

// Where the checkpoint of a run that keeps a weight average (TrainerOptions::ema_decay) stores the trained weights;
// "model." holds their average, which load_classifier reads.
inline constexpr std::string_view kTrainedWeightsPrefix = "trained.";

// Replaces the weights of `model` (read by load_classifier from `path`) by the trained weights the checkpoint keeps
// beside their average: what the run would have scored without the average. Throws naming the file when it has none.
inline void load_trained_weights(const std::filesystem::path& path, nn::VisionTransformer<float>& model) {
  const nn::StateDict<float> trained = io::read_checkpoint_tensors<float>(path, kTrainedWeightsPrefix);
  TESSERA_CHECK(!trained.empty(), "load_trained_weights: '", path.string(), "' holds no \"", kTrainedWeightsPrefix,
                "\" tensors: it was written by a run without a weight average, so its weights are the trained ones");
  model.load_state_dict(trained, true);
}

}  // namespace tessera::train
