// Fine-tunes a pretrained Vision Transformer (a tessera checkpoint, or timm / Hugging Face safetensors weights) on an
// image folder with any number of classes: a new head for its classes, pos_embed resampled when the input size
// changes, parameters frozen by name pattern. The loop is tessera::train::Trainer, as in train_cifar10.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <tessera/tessera.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/train/classifier_info.hpp>
#include <tessera/train/subset.hpp>
#include <tessera/train/trainer.hpp>

#include "training_flags.hpp"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

// <root>/<split>/<class>/<images> of any size; with `lazy`, images are decoded by the loader's workers per batch
// instead of all up front.
std::shared_ptr<const data::Dataset> open_split(const fs::path& root, const char* split, bool lazy) {
  data::ImageFolderOptions options;
  options.same_size = false;  // the transforms resize
  options.eager = !lazy;
  return std::make_shared<data::ImageFolder>(root / split, options);
}

// The model before fine-tuning: the preset when one is named, else the config stored in the checkpoint.
nn::ViTConfig base_config(const fs::path& pretrained, const std::string& model_name) {
  if (!model_name.empty()) return examples::model_presets().at(model_name)();
  TESSERA_CHECK(!pretrained.empty(), "finetune: give --pretrained, or --model to train from scratch");
  try {
    return io::read_checkpoint_vit_config(pretrained);
  } catch (const Error& e) {
    ::tessera::detail::fail("finetune: ", e.what(), "\n(for timm or Hugging Face weights, which carry no config, name ",
                            "the architecture with --model: ", examples::preset_names(), ")");
  }
}

int run(int argc, char** argv) {
  CLI::App app{"Fine-tune a pretrained Vision Transformer on an image folder (<data>/train/<class>/*, "
               "<data>/test/<class>/*)"};
  app.set_help_flag("-h,--help", "Print this help and exit");
  fs::path pretrained, data_root;
  std::string model_name;
  int64_t img_size = 0;
  std::vector<std::string> freeze, unfreeze;
  bool keep_head = false, lazy_decode = false;
  std::vector<float> mean, stddev;
  examples::TrainingFlags flags;
  flags.log_path = "finetune.csv";
  flags.save_path = "finetune.safetensors";

  app.add_option("--pretrained", pretrained,
                 "Weights to start from: a tessera checkpoint, or a timm / Hugging Face .safetensors (then give "
                 "--model); without it the --model preset trains from scratch (a baseline)");
  app.add_option("--data", data_root, "Image folder with train/ and test/, one sub-folder per class")->required();
  app.add_option("--model", model_name,
                 "Architecture of the pretrained weights: " + examples::preset_names() +
                     " (default: the config stored in a tessera checkpoint)")
      ->check(CLI::IsMember(examples::model_presets()));
  app.add_option("--img-size", img_size, "Model input size; images are resized to it and pos_embed resampled "
                                         "(default: the pretrained model's)")
      ->check(examples::above(0));
  app.add_option("--freeze", freeze, "Freeze parameters whose names match this glob (repeatable; e.g. '*')");
  app.add_option("--unfreeze", unfreeze,
                 "Then unfreeze parameters matching this glob (repeatable; e.g. 'head.*' or 'blocks.5.*')");
  app.add_flag("--keep-head", keep_head, "Load the pretrained head too when its shape fits (default: a new head)");
  app.add_option("--mean", mean, "Normalize mean per channel (default: the checkpoint's, else 0.5 0.5 0.5 as timm's "
                                 "ViTs)")
      ->expected(3);
  app.add_option("--std", stddev, "Normalize std per channel (default: the checkpoint's, else 0.5 0.5 0.5)")
      ->expected(3);
  app.add_flag("--lazy-decode", lazy_decode,
               "Decode images in the loader's workers per batch instead of all up front (large images)");
  flags.add_to(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return examples::usage_exit(app, e);
  }
  flags.apply();
  train::TrainerOptions& options = flags.options;

  std::cout << "loading " << data_root.string() << " ..." << std::endl;
  const auto train_all = open_split(data_root, "train", lazy_decode);
  const auto test_all = open_split(data_root, "test", lazy_decode);
  TESSERA_CHECK(train_all->class_names() == test_all->class_names(), "finetune: ", train_all->description(), " and ",
                test_all->description(), " have different class folders, so their labels would not agree");
  const auto train_set = train::spread_subset(train_all, flags.train_limit);
  const auto test_set = train::spread_subset(test_all, flags.test_limit);

  nn::ViTConfig config = base_config(pretrained, model_name);
  config.num_classes = train_all->num_classes();
  if (img_size > 0) config.img_size = img_size;
  std::cout << "finetune: model " << config.to_json_string() << "\n";
  nn::VisionTransformer<float> model(config, options.seed);

  if (pretrained.empty()) {
    std::cout << "no --pretrained: training from scratch\n";
  } else {
    const std::vector<std::string> skip = keep_head ? std::vector<std::string>{} : std::vector<std::string>{"head.*"};
    const nn::LoadReport report = io::load_model_weights(pretrained, model, false, skip);
    std::cout << "pretrained weights from " << pretrained.string() << ": " << report.summary();
    TESSERA_CHECK(!report.loaded.empty(), "finetune: no tensor of '", pretrained.string(),
                  "' fits the model; is --model the architecture the weights were trained with?");
  }
  for (const auto& pattern : freeze) model.freeze(pattern);
  for (const auto& pattern : unfreeze) model.unfreeze(pattern);

  if (mean.empty() || stddev.empty()) {
    std::optional<train::ClassifierInfo> stored;
    try {
      if (!pretrained.empty()) stored = train::read_classifier_info(pretrained);
    } catch (const Error&) {  // plain weights carry no normalisation: timm's ViT default
    }
    if (mean.empty()) mean = stored ? stored->mean : std::vector<float>{0.5f, 0.5f, 0.5f};
    if (stddev.empty()) stddev = stored ? stored->std : std::vector<float>{0.5f, 0.5f, 0.5f};
  }
  options.normalize_mean = mean;
  options.normalize_std = stddev;
  const train::ClassifierInfo info{train_all->class_names(), mean, stddev};
  const int64_t side = config.img_size;
  // Training: shorter side to the input size, a random square crop from the image zero-padded by 1/8 of the side
  // (CIFAR's 4 pixels at 32), a horizontal flip; testing: info.eval_transform (resize, center crop).
  data::Compose train_transform{data::Resize(side), data::RandomCrop(side, side / 8), data::RandomHorizontalFlip(0.5),
                                data::ToTensor(), data::Normalize(mean, stddev)};

  train::Trainer trainer(model, train_set, std::move(train_transform), test_set, info.eval_transform(side), options);
  return examples::run_training(trainer, flags);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "\nfinetune: error: " << e.what() << std::endl;
    return 1;
  }
}
