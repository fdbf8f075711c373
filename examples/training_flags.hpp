// The command-line flags train_cifar10 and finetune share (the recipe, threads, subsets, log, checkpoints), parsed
// with CLI11 into a train::TrainerOptions, and the model presets they accept.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include <tessera/core/threads.hpp>
#include <tessera/nn/config.hpp>
#include <tessera/train/stop_signals.hpp>
#include <tessera/train/subset.hpp>
#include <tessera/train/trainer.hpp>

#include "cli_checks.hpp"

namespace examples {

// A timm preset's width, depth and heads on 32x32 images with 4x4 patches and ten classes.
inline tessera::nn::ViTConfig at_32_patch_4(tessera::nn::ViTConfig config) {
  config.img_size = 32;
  config.patch_size = 4;
  config.num_classes = 10;
  return config;
}

// --model names: the reference CIFAR model, timm presets at 32x32 with patch 4, and timm's 224/16 presets (for
// their pretrained weights).
inline const std::map<std::string, std::function<tessera::nn::ViTConfig()>>& model_presets() {
  using tessera::nn::ViTConfig;
  static const std::map<std::string, std::function<ViTConfig()>> presets = {
      {"vit_cifar", [] { return ViTConfig::vit_cifar(); }},
      {"vit_tiny_patch4_32", [] { return at_32_patch_4(ViTConfig::vit_tiny_patch16_224()); }},
      {"vit_small_patch4_32", [] { return at_32_patch_4(ViTConfig::vit_small_patch16_224()); }},
      {"vit_tiny_patch16_224", [] { return ViTConfig::vit_tiny_patch16_224(); }},
      {"vit_small_patch16_224", [] { return ViTConfig::vit_small_patch16_224(); }},
      {"vit_base_patch16_224", [] { return ViTConfig::vit_base_patch16_224(); }},
  };
  return presets;
}

inline std::string preset_names() {
  std::string names;
  for (const auto& [name, make] : model_presets()) names += (names.empty() ? "" : ", ") + name;
  return names;
}

// Everything the shared flags set.
struct TrainingFlags {
  tessera::train::TrainerOptions options;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int64_t train_limit = 0, test_limit = 0;
  int64_t val_split = 0;  // hold out this many training images and evaluate on them instead of the test set
  bool fast_augmentation = false;  // train_cifar10: the fast recipe's augmentation instead of the reference one
  std::string decay;               // --decay, turned into options.decay by apply()
  std::filesystem::path log_path, save_path, resume_path;

  // The defaults shown by --help are the values the fields hold when this is called.
  void add_to(CLI::App& app) {
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
    app.add_option("--min-lr", options.min_lr, "Learning rate at the end of the decay")
        ->capture_default_str()
        ->check(above(0, true));
    decay = options.decay == tessera::optim::Decay::cosine ? "cosine" : "linear";
    app.add_option("--decay", decay, "How the learning rate falls after warmup")
        ->capture_default_str()
        ->check(CLI::IsMember({"cosine", "linear"}));
    app.add_option("--time-budget", options.time_budget_minutes,
                   "Minutes for the whole run, start to exit: it measures its speed, then sizes the number of steps "
                   "(and the schedule) to fit; --epochs is then ignored (0: train --epochs)")
        ->capture_default_str()
        ->check(above(0, true));
    app.add_option("--ema", options.ema_decay,
                   "Decay of the weight average that is evaluated and saved as the model (0: none)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 0.999999));
    app.add_option("--mixup", options.mix.mixup_alpha, "MixUp's Beta(alpha, alpha) (0: off)")
        ->capture_default_str()
        ->check(above(0, true));
    app.add_option("--cutmix", options.mix.cutmix_alpha, "CutMix's Beta(alpha, alpha) (0: off)")
        ->capture_default_str()
        ->check(above(0, true));
    app.add_option("--label-smoothing", options.label_smoothing, "Label smoothing of the cross-entropy")
        ->capture_default_str()
        ->check(above(0, true));
    app.add_option("--seed", options.seed, "Seed of the model's init, the shuffle and the augmentation")
        ->capture_default_str()
        ->transform(unsigned_integer());
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
    app.add_option("--val-split", val_split,
                   "Hold out N training images (the last of each class) and evaluate on them instead of the test "
                   "set, for tuning (0: train on all, evaluate on the test set)")
        ->capture_default_str()
        ->check(above(0, true));
    app.add_option("--eval-every", options.eval_every, "Evaluate every N epochs (0: only at the end of the run)")
        ->capture_default_str()
        ->check(above(0, true));
    app.add_flag("--eval-flip,!--no-eval-flip", options.eval_flip,
                 std::string("Evaluate each image and its mirror image, summing the logits (default: ") +
                     (options.eval_flip ? "on" : "off") + ")");
    app.add_option("--log", log_path, "CSV file, one row per epoch (empty: none)")->capture_default_str();
    app.add_option("--save", save_path, "Checkpoint written after every epoch (empty: none)")->capture_default_str();
    app.add_option("--resume", resume_path, "Continue from this checkpoint (same flags as the run that wrote it)");
  }

  // The flag that sets each TrainerOptions field (and the dataset sizes that resume compares), so that the trainer's
  // errors name what the user typed.
  static std::map<std::string, std::string, std::less<>> flag_names() {
    return {{"epochs", "--epochs"},
            {"batch_size", "--batch"},
            {"lr", "--lr"},
            {"min_lr", "--min-lr"},
            {"warmup_epochs", "--warmup-epochs"},
            {"decay", "--decay"},
            {"weight_decay", "--wd"},
            {"label_smoothing", "--label-smoothing"},
            {"time_budget_minutes", "--time-budget"},
            {"ema_decay", "--ema"},
            {"mix", "--mixup/--cutmix"},
            {"seed", "--seed"},
            {"workers", "--workers"},
            {"max_steps", "--max-steps"},
            {"eval_every", "--eval-every"},
            {"train_samples", "--train-limit/--val-split (training images)"},
            {"test_samples", "--test-limit/--val-split (evaluation images)"}};
  }

  // After parsing: checks the recipe, sets the thread count and the trainer's output paths.
  void apply() {
    options.field_names = flag_names();
    if (!decay.empty())
      options.decay = decay == "linear" ? tessera::optim::Decay::linear : tessera::optim::Decay::cosine;
    options.validate();
    tessera::set_num_threads(threads);
    tessera::keep_freed_memory_for_reuse();  // fewer page faults per step; see core/memory_reuse.hpp
    options.csv = log_path;
    options.checkpoint = save_path;
  }
};

// The sets to train and evaluate on: (train, test), or with --val-split N (train less N held-out images, those N).
inline std::pair<std::shared_ptr<const tessera::data::Dataset>, std::shared_ptr<const tessera::data::Dataset>>
train_and_evaluation_sets(std::shared_ptr<const tessera::data::Dataset> train,
                          std::shared_ptr<const tessera::data::Dataset> test, const TrainingFlags& flags) {
  if (flags.val_split == 0) return {std::move(train), std::move(test)};
  tessera::train::ValidationSplit split = tessera::train::split_validation(std::move(train), flags.val_split);
  std::cout << "validation split: " << split.validation->size() << " training images held out and evaluated instead "
            << "of the test set" << std::endl;
  return {std::move(split.train), std::move(split.validation)};
}

// `config` with the fields of the JSON object `patch` replaced (--model-config), checked as a whole.
inline tessera::nn::ViTConfig patched(const tessera::nn::ViTConfig& config, const std::string& patch) {
  nlohmann::json changes;
  try {
    changes = nlohmann::json::parse(patch);
  } catch (const nlohmann::json::parse_error& e) {
    tessera::detail::fail("--model-config: not valid JSON (", e.what(), ")");
  }
  TESSERA_CHECK(changes.is_object(), "--model-config: expected a JSON object of ViTConfig fields, got ", patch);
  nlohmann::json merged = config.to_json();
  for (const auto& [key, value] : changes.items()) {
    TESSERA_CHECK(merged.contains(key), "--model-config: '", key, "' is not a ViTConfig field");
    merged[key] = value;
  }
  tessera::nn::ViTConfig out = tessera::nn::ViTConfig::from_json(merged);
  out.validate();
  return out;
}

// The exit status of a run that Ctrl-C (SIGINT) or SIGTERM stopped after saving: 128 + the signal's number, what
// a shell reports for a program the signal killed (130 for SIGINT, 143 for SIGTERM).
inline int interrupted_exit_status(int signal_number) { return 128 + signal_number; }

// Prints the trainer's summary, resumes when --resume was given, trains, and prints where the results went. The
// first Ctrl-C or SIGTERM ends the run after the step under way with a checkpoint of where it stands (exit status
// interrupted_exit_status); a second one quits at once.
template <class Trainer>
int run_training(Trainer& trainer, const TrainingFlags& flags) {
  std::cout << trainer.summary() << std::endl;
  if (!flags.resume_path.empty()) trainer.resume(flags.resume_path);
  tessera::train::StopOnSignals stop_on_signals;
  const auto rows = trainer.fit();
  if (const int signal_number = trainer.interrupted(); signal_number != 0) {
    if (!flags.save_path.empty())
      std::cout << "to continue, run the same command with --resume " << flags.save_path.string() << "\n";
    std::cout << "exit status " << interrupted_exit_status(signal_number) << " (stopped by "
              << tessera::train::signal_name(signal_number) << ")" << std::endl;
    return interrupted_exit_status(signal_number);
  }
  if (rows.empty()) {
    std::cout << "nothing to do: the run is already at step " << trainer.global_step() << "\n";
    return 0;
  }
  std::cout << "done: test accuracy " << rows.back().test_accuracy << "% after " << trainer.global_step() << " steps";
  if (!flags.log_path.empty()) std::cout << "; log " << flags.log_path.string();
  if (!flags.save_path.empty()) std::cout << "; checkpoint " << flags.save_path.string();
  std::cout << std::endl;
  return 0;
}

}  // namespace examples
