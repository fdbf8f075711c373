// Trains a Vision Transformer on CIFAR-10 with a named recipe — "fast" (docs/fast_training.md, the default) or
// "reference" (docs/training.md) — whose every setting a flag can override: flags, data and model set-up here, the
// recipes in tessera::train::cifar10_recipe, the loop in tessera::train::Trainer. Under `mpirun -np N` (a build with
// TESSERA_MPI) the N ranks train one model data-parallel, with the results of one process (docs/distributed.md).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>

#include <tessera/tessera.hpp>
#include <tessera/distributed/world.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/train/cifar10_recipes.hpp>
#include <tessera/train/classifier_info.hpp>
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

// The value of --dist-timeout SECONDS (or --dist-timeout=SECONDS), read before the other flags because the
// communicator is made first (so that rank 0 alone prints); 30 when absent or not a positive number (CLI11 then
// reports it).
double dist_timeout_in(int argc, char** argv) {
  const char* value = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dist-timeout") == 0 && i + 1 < argc) value = argv[i + 1];
    if (std::strncmp(argv[i], "--dist-timeout=", 15) == 0) value = argv[i] + 15;
  }
  const double seconds = value ? std::strtod(value, nullptr) : 30.0;
  return seconds > 0.0 ? seconds : 30.0;
}

// --evaluate: the accuracy of a checkpoint's model on the evaluation set the flags choose (the test set, or the
// --val-split images), with test-time flips as --eval-flip says; the weight average when the checkpoint keeps one,
// or with trained_weights the weights it averaged. Nothing is trained or written. Evaluating one run's checkpoint
// both ways and with and without flips gives the ablation rows of the average and of the flips at no training cost:
// neither changes what is trained.
int evaluate_checkpoint(const std::filesystem::path& checkpoint, bool trained_weights,
                        const std::filesystem::path& data_root, const examples::TrainingFlags& flags) {
  const train::Classifier classifier = train::load_classifier(checkpoint);
  const nn::ViTConfig& config = classifier.config;
  TESSERA_CHECK(config.img_size == 32 && config.num_classes == 10 && config.in_chans == 3,
                "--evaluate: the model of '", checkpoint.string(), "' takes ", config.in_chans, "x", config.img_size,
                "x", config.img_size, " images into ", config.num_classes, " classes; CIFAR-10 needs 3x32x32 and 10");
  nn::VisionTransformer<float>& model = *classifier.model;
  if (trained_weights) train::load_trained_weights(checkpoint, model);
  model.set_attention_fn(&ops::attention<float>);
  std::cout << "loading CIFAR-10 from " << data_root.string() << " ..." << std::endl;
  // Only the split that is evaluated is opened (an image folder decodes every image as it opens).
  std::shared_ptr<const data::Dataset> evaluation_all;
  if (flags.val_split == 0) {
    evaluation_all = data::open_cifar10(data_root, data::Split::test);
  } else {
    evaluation_all =
        train::split_validation(data::open_cifar10(data_root, data::Split::train), flags.val_split).validation;
    std::cout << "validation split: the " << flags.val_split << " training images a run with --val-split holds out\n";
  }
  const auto evaluation_set = train::spread_subset(evaluation_all, flags.test_limit);
  data::DataLoader loader(evaluation_set, data::cifar10_eval_transform(),  // what the trainer evaluates with
                          data::DataLoaderOptions{.batch_size = flags.options.eval_batch_size,
                                                  .shuffle = false,
                                                  .drop_last = false,
                                                  .num_workers = flags.options.workers});
  const train::Accuracy accuracy = train::evaluate(model, loader, flags.options.eval_flip);
  std::cout << "evaluated " << checkpoint.string() << " (" << (trained_weights ? "trained weights" : "saved weights")
            << (flags.options.eval_flip ? ", with test-time flips" : ", without flips") << ") on "
            << evaluation_set->description() << ": accuracy " << std::fixed << std::setprecision(2)
            << accuracy.percent() << "% (" << accuracy.correct << " of " << accuracy.total << ")" << std::endl;
  return 0;
}

int run(int argc, char** argv, std::chrono::steady_clock::time_point start, distributed::Communicator& comm) {
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
  double dist_timeout = 30.0;
  app.add_option("--dist-timeout", dist_timeout,
                 "Under mpirun: seconds a rank waits for the others before it ends the job, naming the failure "
                 "(a rank that died or hangs)")
      ->capture_default_str()
      ->check(examples::above(0));
  std::filesystem::path evaluate_path;
  bool trained_weights = false;
  app.add_option("--evaluate", evaluate_path,
                 "Train nothing: print the accuracy of this checkpoint's model on the test set (or the --val-split "
                 "images), with test-time flips unless --no-eval-flip; the weight average when it keeps one");
  app.add_flag("--trained-weights", trained_weights,
               "With --evaluate: the trained weights a run with --ema keeps beside their average, instead of the "
               "average")
      ->needs("--evaluate");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (!comm.is_root()) return app.exit(e, std::cout, std::cout) == 0 ? 0 : examples::kUsageErrorStatus;  // silent
    return examples::usage_exit(app, e);
  }
  flags.options.communicator = &comm;  // before apply(), which checks the batch against the ranks

  flags.apply();
  train::TrainerOptions& options = flags.options;
  options.normalize_mean = data::cifar10_mean();
  options.normalize_std = data::cifar10_std();
  options.budget_start = start;
  recipe.reference_augmentation = !flags.fast_augmentation;
  if (!evaluate_path.empty()) {
    TESSERA_CHECK(comm.size() == 1, "--evaluate runs in one process, not under mpirun");
    return evaluate_checkpoint(evaluate_path, trained_weights, data_root, flags);
  }

  nn::ViTConfig config = model_name.empty() ? recipe.model : examples::model_presets().at(model_name)();
  if (!config_patch.empty()) config = examples::patched(config, config_patch);
  TESSERA_CHECK(config.img_size == 32 && config.num_classes == 10, "train_cifar10: --model ", model_name,
                " is for ", config.img_size, "x", config.img_size, " images and ", config.num_classes,
                " classes; CIFAR-10 needs 32x32 and 10 (examples/finetune adapts other models)");
  if (comm.size() > 1) std::cout << "train_cifar10: " << comm.description() << "\n";
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
  // MPI only when a launcher started this process: a plain run stays one process that never touches MPI.
  std::unique_ptr<distributed::Communicator> comm;
  try {
    const int launched = distributed::launcher_world_size();
    TESSERA_CHECK(distributed::have_mpi || launched <= 1, "started as ", launched,
                  " ranks, but this train_cifar10 was built without MPI (TESSERA_MPI off); install libopenmpi-dev and "
                  "rebuild, or run it without mpirun");
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(dist_timeout_in(argc, argv) * 1000.0));
    if (launched > 0) comm = distributed::make_world_communicator({.timeout = timeout});
    else comm = std::make_unique<distributed::SingleProcessCommunicator>();
  } catch (const std::exception& e) {
    std::cerr << "train_cifar10: error: cannot start: " << e.what() << std::endl;
    return 1;
  }
  // Rank 0 alone prints progress (errors still come from every rank, on stderr).
  if (!comm->is_root()) std::cout.rdbuf(nullptr);
  try {
    return run(argc, argv, start, *comm);
  } catch (const std::exception& e) {
    if (comm->size() == 1) {
      std::cerr << "\ntrain_cifar10: error: " << e.what() << std::endl;
      return 1;
    }
    // One rank's failure ends every rank at once (MPI_Abort), instead of leaving them waiting for it; the
    // checkpoint on disk is the last complete one (rank 0 writes it to a temporary, then renames).
    std::cerr << "\ntrain_cifar10: error on rank " << comm->rank() << " of " << comm->size() << ": " << e.what()
              << "\ntrain_cifar10: ending all ranks" << std::endl;
    comm->abort(1);
    return 1;
  }
}
