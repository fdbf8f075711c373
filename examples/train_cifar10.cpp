// Trains a Vision Transformer on CIFAR-10 with the reference recipe (docs/training.md): flags, data and model set-up
// here, the loop in tessera::train::Trainer.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <string>

#include <tessera/tessera.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/train/subset.hpp>
#include <tessera/train/trainer.hpp>

#include "training_flags.hpp"

using namespace tessera;

namespace {

int run(int argc, char** argv) {
  CLI::App app{"Train a Vision Transformer on CIFAR-10 (defaults: the reference recipe of docs/training.md)"};
  app.set_help_flag("-h,--help", "Print this help and exit");
  std::filesystem::path data_root = "data";
  std::string model_name = "vit_cifar";
  examples::TrainingFlags flags;
  flags.log_path = "train_cifar10.csv";
  flags.save_path = "checkpoint.safetensors";

  app.add_option("--data", data_root,
                 "CIFAR-10 folder: the binary layout (scripts/download_cifar10.sh) or an image folder with "
                 "train/ and test/")
      ->capture_default_str();
  app.add_option("--model", model_name, "Model preset: " + examples::preset_names())
      ->capture_default_str()
      ->check(CLI::IsMember(examples::model_presets()));
  flags.add_to(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  flags.apply();
  train::TrainerOptions& options = flags.options;
  options.normalize_mean = data::cifar10_mean();
  options.normalize_std = data::cifar10_std();

  nn::ViTConfig config = examples::model_presets().at(model_name)();
  TESSERA_CHECK(config.img_size == 32 && config.num_classes == 10, "train_cifar10: --model ", model_name,
                " is for ", config.img_size, "x", config.img_size, " images and ", config.num_classes,
                " classes; CIFAR-10 needs 32x32 and 10 (examples/finetune adapts other models)");
  std::cout << "train_cifar10: model " << model_name << " " << config.to_json_string() << "\n";
  std::cout << "loading CIFAR-10 from " << data_root.string() << " ..." << std::endl;
  const auto train_set = train::spread_subset(data::open_cifar10(data_root, data::Split::train), flags.train_limit);
  const auto test_set = train::spread_subset(data::open_cifar10(data_root, data::Split::test), flags.test_limit);

  nn::VisionTransformer<float> model(config, options.seed);
  model.set_attention_fn(&ops::attention<float>);
  train::Trainer trainer(model, train_set, data::cifar10_train_transform(), test_set, data::cifar10_eval_transform(),
                         options);
  return examples::run_training(trainer, flags);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "\ntrain_cifar10: error: " << e.what() << std::endl;
    return 1;
  }
}
