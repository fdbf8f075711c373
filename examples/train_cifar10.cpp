// Trains a Vision Transformer on CIFAR-10 with the reference recipe (docs/training.md): flags, data and model set-up
// here, the loop in tessera::train::Trainer.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <tessera/tessera.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/train/subset.hpp>
#include <tessera/train/trainer.hpp>

using namespace tessera;

namespace {

// A timm preset's width, depth and heads on CIFAR-10's 32x32 images with 4x4 patches and ten classes.
nn::ViTConfig for_cifar(nn::ViTConfig config) {
  config.img_size = 32;
  config.patch_size = 4;
  config.num_classes = 10;
  return config;
}

// --model names: vit_cifar (the reference model), or a timm preset's width and depth at 32x32 input, patch 4.
const std::map<std::string, std::function<nn::ViTConfig()>>& model_presets() {
  static const std::map<std::string, std::function<nn::ViTConfig()>> presets = {
      {"vit_cifar", [] { return nn::ViTConfig::vit_cifar(); }},
      {"vit_tiny_patch4_32", [] { return for_cifar(nn::ViTConfig::vit_tiny_patch16_224()); }},
      {"vit_small_patch4_32", [] { return for_cifar(nn::ViTConfig::vit_small_patch16_224()); }},
  };
  return presets;
}

// A check that the value is a number above `low` (or at least `low`), with a message naming the bad value.
CLI::Validator above(double low, bool or_equal = false) {
  std::ostringstream bound;
  bound << (or_equal ? ">= " : "> ") << low;
  return CLI::Validator(
      [low, or_equal, text = bound.str()](std::string& value) -> std::string {
        double number = 0.0;
        if (!CLI::detail::lexical_cast(value, number)) return "'" + value + "' is not a number";
        if (or_equal ? number >= low : number > low) return "";
        return "must be " + text + ", got " + value;
      },
      bound.str());
}

int run(int argc, char** argv) {
  CLI::App app{"Train a Vision Transformer on CIFAR-10 (defaults: the reference recipe of docs/training.md)"};
  app.set_help_flag("-h,--help", "Print this help and exit");
  std::filesystem::path data_root = "data", log_path = "train_cifar10.csv", save_path = "checkpoint.safetensors",
                        resume_path;
  std::string model_name = "vit_cifar";
  train::TrainerOptions options;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int64_t train_limit = 0, test_limit = 0;
  std::string preset_list;
  for (const auto& [name, make] : model_presets()) preset_list += (preset_list.empty() ? "" : ", ") + name;

  app.add_option("--data", data_root,
                 "CIFAR-10 folder: the binary layout (scripts/download_cifar10.sh) or an image folder with "
                 "train/ and test/")
      ->capture_default_str();
  app.add_option("--model", model_name, "Model preset: " + preset_list)
      ->capture_default_str()
      ->check(CLI::IsMember(model_presets()));
  app.add_option("--epochs", options.epochs, "Epochs")->capture_default_str()->check(above(0));
  app.add_option("--batch", options.batch_size, "Batch size (the last incomplete batch is dropped)")
      ->capture_default_str()
      ->check(above(0));
  app.add_option("--lr", options.lr, "Peak learning rate of AdamW")->capture_default_str()->check(above(0));
  app.add_option("--wd", options.weight_decay, "Weight decay on weights of >= 2 dims except pos_embed, cls_token")
      ->capture_default_str()
      ->check(above(0, true));
  app.add_option("--warmup-epochs", options.warmup_epochs, "Linear warmup, per step, over this many epochs")
      ->capture_default_str()
      ->check(above(0, true));
  app.add_option("--min-lr", options.min_lr, "Learning rate at the end of the cosine")
      ->capture_default_str()
      ->check(above(0, true));
  app.add_option("--label-smoothing", options.label_smoothing, "Label smoothing of the cross-entropy")
      ->capture_default_str()
      ->check(above(0, true));
  app.add_option("--seed", options.seed, "Seed of the model's init, the shuffle and the augmentation")
      ->capture_default_str();
  app.add_option("--threads", threads, "Compute threads (OpenMP)")->capture_default_str()->check(above(0));
  app.add_option("--workers", options.workers, "Data-loading threads per loader (0: load on the training thread)")
      ->capture_default_str()
      ->check(above(0, true));
  app.add_option("--max-steps", options.max_steps, "Stop after this many optimizer steps in total (0: no limit)")
      ->capture_default_str()
      ->check(above(0, true));
  app.add_option("--train-limit", train_limit, "Train on N images spread evenly over the train set (0: all)")
      ->capture_default_str()
      ->check(above(0, true));
  app.add_option("--test-limit", test_limit, "Test on N images spread evenly over the test set (0: all)")
      ->capture_default_str()
      ->check(above(0, true));
  app.add_option("--log", log_path, "CSV file, one row per epoch (empty: none)")->capture_default_str();
  app.add_option("--save", save_path, "Checkpoint written after every epoch (empty: none)")->capture_default_str();
  app.add_option("--resume", resume_path, "Continue from this checkpoint (same flags as the run that wrote it)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  options.validate();
  set_num_threads(threads);
  options.csv = log_path;
  options.checkpoint = save_path;
  options.normalize_mean = data::cifar10_mean();
  options.normalize_std = data::cifar10_std();

  const nn::ViTConfig config = model_presets().at(model_name)();
  std::cout << "train_cifar10: model " << model_name << " " << config.to_json_string() << "\n";
  std::cout << "loading CIFAR-10 from " << data_root.string() << " ..." << std::endl;
  const auto train_set = train::spread_subset(data::open_cifar10(data_root, data::Split::train), train_limit);
  const auto test_set = train::spread_subset(data::open_cifar10(data_root, data::Split::test), test_limit);

  nn::VisionTransformer<float> model(config, options.seed);
  model.set_attention_fn(&ops::attention<float>);
  train::Trainer trainer(model, train_set, data::cifar10_train_transform(), test_set, data::cifar10_eval_transform(),
                         options);
  std::cout << trainer.summary() << std::endl;
  if (!resume_path.empty()) trainer.resume(resume_path);

  const auto rows = trainer.fit();
  if (rows.empty()) {
    std::cout << "nothing to do: the run is already at step " << trainer.global_step() << "\n";
    return 0;
  }
  std::cout << "done: test accuracy " << rows.back().test_accuracy << "% after " << trainer.global_step() << " steps";
  if (!log_path.empty()) std::cout << "; log " << log_path.string();
  if (!save_path.empty()) std::cout << "; checkpoint " << save_path.string();
  std::cout << std::endl;
  return 0;
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
