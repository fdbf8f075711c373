// Trains a Vision Transformer on CIFAR-10 with a named recipe — "fast" (docs/fast_training.md, the default) or
// "reference" (docs/training.md) — whose every setting a flag can override: flags, data and model set-up here, the
// recipes in tessera::train::cifar10_recipe, the loop in tessera::train::Trainer.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include <tessera/tessera.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/train/cifar10_recipes.hpp>
#include <tessera/train/subset.hpp>
#include <tessera/train/trainer.hpp>

#include "training_flags.hpp"

using namespace tessera;

namespace {

// The value of --recipe NAME (or --recipe=NAME) in argv, read before the other flags so that their defaults (and
// --help) are the recipe's; "fast" when absent. CLI11 parses and checks --recipe again with the rest.
std::string recipe_in(int argc, char** argv) {
  std::string name = "fast";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--recipe") == 0 && i + 1 < argc) name = argv[i + 1];
    if (std::strncmp(argv[i], "--recipe=", 9) == 0) name = argv[i] + 9;
  }
  return name;
}

int run(int argc, char** argv, std::chrono::steady_clock::time_point start) {
  std::string recipe_name = recipe_in(argc, argv);
  const auto names = train::cifar10_recipe_names();
  if (std::find(names.begin(), names.end(), recipe_name) == names.end()) recipe_name = "fast";  // CLI11 reports it
  train::Cifar10Recipe recipe = train::cifar10_recipe(recipe_name);

  CLI::App app{"Train a Vision Transformer on CIFAR-10 (defaults: the recipe named by --recipe; docs/training.md and "
               "docs/fast_training.md)"};
  app.set_help_flag("-h,--help", "Print this help and exit");
  std::filesystem::path data_root = "data";
  std::string model_name;
  std::string config_patch;
  examples::TrainingFlags flags;
  flags.options = recipe.options;
  flags.log_path = "train_cifar10.csv";
  flags.save_path = "checkpoint.safetensors";
  app.add_option("--recipe", recipe_name,
                 "fast: the best ViT for a time budget (60 minutes unless --time-budget says otherwise); reference: "
                 "timm's tutorial recipe, 10 epochs. Sets the defaults of the flags below")
      ->capture_default_str()
      ->check(CLI::IsMember(names));

  app.add_option("--data", data_root,
                 "CIFAR-10 folder: the binary layout (scripts/download_cifar10.sh) or an image folder with "
                 "train/ and test/")
      ->capture_default_str();
  app.add_option("--model", model_name, "Model preset replacing the recipe's model: " + examples::preset_names())
      ->check(CLI::IsMember(examples::model_presets()));
  app.add_option("--model-config", config_patch,
                 "A JSON object of ViTConfig fields applied over the model, e.g. '{\"depth\": 8}'");
  app.add_option("--trivial-augment", recipe.augmentation.trivial_augment,
                 "Fast recipe's augmentation: TrivialAugmentWide on (1) or off (0)")
      ->capture_default_str();
  app.add_option("--cutout", recipe.augmentation.cutout_size, "Fast recipe's augmentation: Cutout square size (0: off)")
      ->capture_default_str()
      ->check(examples::above(0, true));
  flags.fast_augmentation = !recipe.reference_augmentation;
  app.add_flag("--fast-augmentation,!--reference-augmentation", flags.fast_augmentation,
               std::string("Use the fast recipe's configurable augmentation instead of the reference crop + flip "
                           "(default: ") + (flags.fast_augmentation ? "fast" : "reference") + ")");
  flags.add_to(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return examples::usage_exit(app, e);
  }

  flags.apply();
  train::TrainerOptions& options = flags.options;
  options.normalize_mean = data::cifar10_mean();
  options.normalize_std = data::cifar10_std();
  options.budget_start = start;
  recipe.reference_augmentation = !flags.fast_augmentation;

  nn::ViTConfig config = model_name.empty() ? recipe.model : examples::model_presets().at(model_name)();
  if (!config_patch.empty()) config = examples::patched(config, config_patch);
  TESSERA_CHECK(config.img_size == 32 && config.num_classes == 10, "train_cifar10: --model ", model_name,
                " is for ", config.img_size, "x", config.img_size, " images and ", config.num_classes,
                " classes; CIFAR-10 needs 32x32 and 10 (examples/finetune adapts other models)");
  std::cout << "train_cifar10: recipe " << recipe_name << ", model " << (model_name.empty() ? "" : model_name + " ")
            << config.to_json_string() << "\n";
  std::cout << "augmentation: " << recipe.train_transform().describe() << "\n";
  std::cout << "loading CIFAR-10 from " << data_root.string() << " ..." << std::endl;
  auto [train_all, evaluation_all] = examples::train_and_evaluation_sets(
      data::open_cifar10(data_root, data::Split::train), data::open_cifar10(data_root, data::Split::test), flags);
  const auto train_set = train::spread_subset(train_all, flags.train_limit);
  const auto test_set = train::spread_subset(evaluation_all, flags.test_limit);

  nn::VisionTransformer<float> model(config, options.seed);
  model.set_attention_fn(&ops::attention<float>);
  train::Trainer trainer(model, train_set, recipe.train_transform(), test_set, data::cifar10_eval_transform(), options);
  return examples::run_training(trainer, flags);
}

}  // namespace

int main(int argc, char** argv) {
  const auto start = std::chrono::steady_clock::now();  // a time budget counts from here
  try {
    return run(argc, argv, start);
  } catch (const std::exception& e) {
    std::cerr << "\ntrain_cifar10: error: " << e.what() << std::endl;
    return 1;
  }
}
