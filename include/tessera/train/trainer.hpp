// Trainer: the training loop of an image classifier — AdamW with the weight-decay split, per-step linear warmup then
// cosine schedule, label-smoothed cross-entropy — with test accuracy, a CSV row and a checkpoint after every epoch,
// a progress display, and resume from a checkpoint that reproduces the uninterrupted run exactly. Kill-safe: the CSV
// row goes to disk before the checkpoint (resume drops rows beyond its checkpoint), a stop request (Ctrl-C, through
// StopOnSignals) ends the run after the step under way with a mid-epoch checkpoint, and a non-finite loss stops it
// without touching the last checkpoint. Data parallel when given a communicator of several ranks
// (TrainerOptions::communicator, docs/distributed.md): each rank trains on its share of every global batch, and all
// ranks take the same steps.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/core/error.hpp"
#include "tessera/core/threads.hpp"
#include "tessera/data/data_loader.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/data/mix.hpp"
#include "tessera/data/transforms.hpp"
#include "tessera/distributed/communicator.hpp"
#include "tessera/distributed/gradient_buckets.hpp"
#include "tessera/distributed/parameters.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/io/detail/atomic_file.hpp"
#include "tessera/nn/json.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/vision_transformer.hpp"
#include "tessera/optim/adamw.hpp"
#include "tessera/optim/ema.hpp"
#include "tessera/optim/param_groups.hpp"
#include "tessera/optim/schedule.hpp"
#include "tessera/train/budget.hpp"
#include "tessera/train/classifier_info.hpp"
#include "tessera/train/csv_log.hpp"
#include "tessera/train/progress.hpp"
#include "tessera/train/step.hpp"
#include "tessera/train/stop_signals.hpp"

namespace tessera::train {

struct TrainerOptions {
  // ---- the recipe: a resumed run must use the same values (Trainer::resume checks) ----
  int64_t epochs = 10;
  // > 0: the run sizes itself to end, evaluation and checkpoint included, within this many minutes of
  // budget_start: it measures its first steps, then plans the number of steps (epochs is then ignored).
  double time_budget_minutes = 0.0;
  int64_t batch_size = 128;  // the last incomplete batch of an epoch is dropped
  double lr = 1e-3;          // peak learning rate, reached at the end of warmup
  double min_lr = 1e-5;      // where the decay ends
  double warmup_epochs = 1.0;  // linear warmup, per step, over this many epochs
  optim::Decay decay = optim::Decay::cosine;  // after warmup: cosine or linear down to min_lr
  double weight_decay = 0.05;  // on parameters of rank >= 2 not matching no_weight_decay
  std::vector<std::string> no_weight_decay = {"pos_embed", "cls_token"};
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double label_smoothing = 0.1;
  // > 0: an exponential moving average of the weights (optim::WeightEma, with timm's decay warm-up) is what the run
  // evaluates and saves as the model; the trained weights travel beside it in the checkpoint for resuming.
  double ema_decay = 0.0;
  // Batch-level MixUp / CutMix (data::mix_batch, timm's Mixup): off while both alphas are 0.
  data::MixOptions mix{.mixup_alpha = 0.0, .cutmix_alpha = 0.0};
  uint64_t seed = 0;  // shuffling and augmentation (the model's init is the caller's)
  int64_t eval_batch_size = 250;
  // ---- free to change between a run and its resumption ----
  int64_t max_steps = 0;  // stop once this many optimizer steps are done in total (0: no limit); the schedule
                          // still spans the whole run, so a shortened run is the start of the full one
  int64_t eval_every = 1;  // evaluate at every eval_every-th epoch end (0: only at the end of the run)
  bool eval_flip = false;  // evaluate on each image and its mirror image, summing the logits
  int workers = 1;        // DataLoader background threads per loader
  std::filesystem::path checkpoint;  // written after every epoch and when max_steps stops the run; empty: none
  std::filesystem::path csv;         // one row per epoch; empty: none
  std::ostream* output = &std::cout;  // progress and per-epoch lines; nullptr: silent
  bool live_progress = isatty(STDOUT_FILENO) != 0;  // a redrawn bar; otherwise plain lines every 30 s
  // Where the time budget starts counting (a program sets it when it starts); unset: when the Trainer is built.
  std::optional<std::chrono::steady_clock::time_point> budget_start;
  // The Normalize constants of the transforms; with the train set's class names they are recorded in every
  // checkpoint as a ClassifierInfo, for classify and visualize_attention. Empty: not recorded.
  std::vector<float> normalize_mean, normalize_std;
  // Read between steps: once it holds a non-zero value (for StopOnSignals, the signal's number) the run ends after
  // the step under way, writes the CSV row and a checkpoint of where it stands, inside an epoch if it is, and fit()
  // returns with interrupted() set. nullptr: never.
  const std::atomic<int>* stop_request = &signal_stop_request();
  // How error messages name the fields of this struct (and "train_samples", "test_samples", the dataset sizes):
  // a program maps them to its flags, e.g. {"label_smoothing", "--label-smoothing"}; unmapped fields keep their names.
  std::map<std::string, std::string, std::less<>> field_names;
  // Data-parallel training (docs/distributed.md): every rank of `communicator` runs a Trainer with the same options
  // and datasets; batch_size and eval_batch_size stay the global batches, each rank trains and evaluates on its
  // share of each (batch_size must be a multiple of the ranks), gradients are averaged over the ranks as backward
  // produces them, and rank 0 alone prints and writes the CSV and the checkpoints. The parameters and buffers start
  // as rank 0's. nullptr or a single rank: one process, exactly as without it.
  distributed::Communicator* communicator = nullptr;

  // The name of `field` in messages: its entry in field_names, else the field's own name.
  std::string name_of(std::string_view field) const {
    const auto found = field_names.find(field);
    return found != field_names.end() ? found->second : std::string(field);
  }

  bool budgeted() const { return time_budget_minutes > 0.0; }
  bool mixing() const { return mix.mixup_alpha > 0.0 || mix.cutmix_alpha > 0.0; }

  void validate() const {
    // "TrainerOptions: lr must be positive" for a library user, "--lr must be positive" for a program's flags.
    const std::string where = field_names.empty() ? "TrainerOptions: " : "";
    const auto n = [&](std::string_view field) { return where + name_of(field); };
    TESSERA_CHECK(epochs >= 1, n("epochs"), " must be at least 1, got ", epochs);
    TESSERA_CHECK(std::isfinite(time_budget_minutes) && time_budget_minutes >= 0.0, n("time_budget_minutes"),
                  " must be >= 0, got ", time_budget_minutes);
    TESSERA_CHECK(batch_size >= 1, n("batch_size"), " must be at least 1, got ", batch_size);
    TESSERA_CHECK(eval_batch_size >= 1, n("eval_batch_size"), " must be at least 1, got ", eval_batch_size);
    TESSERA_CHECK(std::isfinite(lr) && lr > 0.0, n("lr"), " must be positive, got ", lr);
    TESSERA_CHECK(std::isfinite(min_lr) && min_lr >= 0.0 && min_lr <= lr, n("min_lr"), " must be in [0, ",
                  name_of("lr"), " = ", lr, "], got ", min_lr);
    TESSERA_CHECK(std::isfinite(warmup_epochs) && warmup_epochs >= 0.0 &&
                      (budgeted() || warmup_epochs <= static_cast<double>(epochs)),
                  n("warmup_epochs"), " must be in [0, ", name_of("epochs"), " = ", epochs, "], got ", warmup_epochs);
    TESSERA_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0, n("weight_decay"), " must be >= 0, got ",
                  weight_decay);
    TESSERA_CHECK(label_smoothing >= 0.0 && label_smoothing < 1.0, n("label_smoothing"), " must be in [0, 1), got ",
                  label_smoothing);
    TESSERA_CHECK(ema_decay >= 0.0 && ema_decay < 1.0, n("ema_decay"), " must be in [0, 1), got ", ema_decay);
    TESSERA_CHECK(mix.mixup_alpha >= 0.0 && mix.cutmix_alpha >= 0.0 && mix.switch_prob >= 0.0 &&
                      mix.switch_prob <= 1.0 && mix.prob >= 0.0 && mix.prob <= 1.0,
                  n("mix"), " needs alphas >= 0 and probabilities in [0, 1], got mixup_alpha ", mix.mixup_alpha,
                  ", cutmix_alpha ", mix.cutmix_alpha, ", switch_prob ", mix.switch_prob, ", prob ", mix.prob);
    TESSERA_CHECK(max_steps >= 0, n("max_steps"), " must be >= 0, got ", max_steps);
    TESSERA_CHECK(eval_every >= 0, n("eval_every"), " must be >= 0, got ", eval_every);
    TESSERA_CHECK(workers >= 0, n("workers"), " must be >= 0, got ", workers);
    TESSERA_CHECK(normalize_mean.size() == normalize_std.size(), where, "normalize_mean has ", normalize_mean.size(),
                  " values and normalize_std ", normalize_std.size());
    if (communicator != nullptr && communicator->size() > 1) {
      const int ranks = communicator->size();
      TESSERA_CHECK(batch_size % ranks == 0, n("batch_size"), " (the global batch) must be a multiple of the ",
                    ranks, " ranks, got ", batch_size);
      TESSERA_CHECK(!mixing(), n("mix"), ": MixUp and CutMix pair samples across the whole batch and are not "
                    "supported with more than one rank yet (", ranks, " ranks)");
    }
  }

  // The recipe fields as a JSON object (what a checkpoint records and resume compares). Options added after the
  // first checkpoints appear only when set, so those checkpoints still resume.
  nlohmann::json recipe_json() const {
    nlohmann::json recipe = {{"epochs", epochs},         {"batch_size", batch_size},
                             {"lr", lr},                 {"min_lr", min_lr},
                             {"warmup_epochs", warmup_epochs}, {"weight_decay", weight_decay},
                             {"no_weight_decay", no_weight_decay}, {"beta1", beta1},
                             {"beta2", beta2},           {"eps", eps},
                             {"label_smoothing", label_smoothing}, {"seed", seed},
                             {"eval_batch_size", eval_batch_size}};
    if (budgeted()) recipe["time_budget_minutes"] = time_budget_minutes;
    if (decay != optim::Decay::cosine) recipe["decay"] = "linear";
    if (ema_decay > 0.0) recipe["ema_decay"] = ema_decay;
    if (mixing())
      recipe["mix"] = {{"mixup_alpha", mix.mixup_alpha}, {"cutmix_alpha", mix.cutmix_alpha},
                       {"switch_prob", mix.switch_prob}, {"prob", mix.prob}, {"correct_lambda", mix.correct_lambda}};
    return recipe;
  }
};

// Usage:
//   nn::VisionTransformer<float> model(nn::ViTConfig::vit_cifar(), seed);
//   train::Trainer trainer(model, train_set, data::cifar10_train_transform(), test_set,
//                          data::cifar10_eval_transform(), options);
//   if (resuming) trainer.resume(path);
//   trainer.fit();
// Model is a nn::Module<float> with forward(images) -> logits (B, classes) and config().to_json() (the config a
// checkpoint records); nn::VisionTransformer<float> is one. The datasets' labels must be below the model's classes.
template <class Model>
class Trainer {
  using Clock = std::chrono::steady_clock;

 public:
  Trainer(Model& model, std::shared_ptr<const data::Dataset> train_set, data::Compose train_transform,
          std::shared_ptr<const data::Dataset> test_set, data::Compose eval_transform, TrainerOptions options)
      : model_(model),
        options_(validated(std::move(options))),
        train_set_(checked_dataset(std::move(train_set), "train")),
        test_set_(checked_dataset(std::move(test_set), "test")),
        train_loader_(train_set_, std::move(train_transform),
                      data::DataLoaderOptions{.batch_size = options_.batch_size,
                                              .shuffle = true,
                                              .drop_last = true,
                                              .seed = options_.seed,
                                              .num_workers = options_.workers,
                                              .shard = rank_of(options_),
                                              .num_shards = ranks_of(options_)}),
        test_loader_(test_set_, std::move(eval_transform),
                     data::DataLoaderOptions{.batch_size = options_.eval_batch_size,
                                             .shuffle = false,
                                             .drop_last = false,
                                             .seed = options_.seed,
                                             .num_workers = options_.workers,
                                             .shard = rank_of(options_),
                                             .num_shards = ranks_of(options_)}),
        steps_per_epoch_(train_loader_.num_batches()),
        warmup_steps_(static_cast<int64_t>(
            std::llround(options_.warmup_epochs * static_cast<double>(steps_per_epoch_)))),
        optimizer_(optim::param_groups_weight_decay(model.named_parameters(), options_.weight_decay,
                                                    options_.no_weight_decay),
                   optim::AdamWOptions{options_.lr, options_.beta1, options_.beta2, options_.eps,
                                       options_.weight_decay}),
        schedule_(make_schedule(options_.budgeted() ? kUnplannedSteps : options_.epochs * steps_per_epoch_)),
        csv_(options_.csv),
        progress_(options_.output ? *options_.output : null_stream(), options_.output && options_.live_progress),
        budget_start_(options_.budget_start.value_or(Clock::now())),
        comm_(ranks_of(options_) > 1 ? options_.communicator : nullptr) {
    if (comm_) start_data_parallel();
    if (options_.ema_decay > 0.0) {
      const nn::StateDict<float> tensors = model_.state_dict();
      ema_.emplace(std::vector<std::pair<std::string, Tensor<float>>>(tensors.begin(), tensors.end()),
                   optim::WeightEmaOptions{.decay = options_.ema_decay});
    }
    if constexpr (requires { model.config().num_classes; }) {
      for (const auto* set : {train_set_.get(), test_set_.get()})
        TESSERA_CHECK(set->num_classes() == model.config().num_classes, "Trainer: ", set->description(), " has ",
                      set->num_classes(), " classes but the model has ", model.config().num_classes, " outputs");
    }
  }

  // Continues from a checkpoint written by a Trainer with the same recipe and datasets: loads the model, the
  // optimizer, the position in the run, a budgeted run's plan and the model's generator, and keeps the CSV rows up to
  // the checkpoint's position (a row beyond it, left by a kill during the checkpoint's save or by a stop inside an
  // epoch, is dropped from the file at once: the run redoes that epoch).
  void resume(const std::filesystem::path& checkpoint) {
    const io::CheckpointState peek = io::read_checkpoint_state(checkpoint);
    const nlohmann::json stored_recipe = peek.trainer.value("recipe", nlohmann::json());
    const nlohmann::json recipe = full_recipe();
    if (stored_recipe != recipe)
      ::tessera::detail::fail("Trainer::resume: '", checkpoint.string(),
                              "' was written by a run with other settings; resume with the same ones (",
                              describe_differences(stored_recipe, recipe), ")");
    io::CheckpointState state;
    if constexpr (std::is_base_of_v<nn::VisionTransformer<float>, Model>)
      state = io::load_checkpoint(checkpoint, static_cast<nn::VisionTransformer<float>&>(model_), &optimizer_);
    else
      state = io::load_checkpoint(checkpoint, static_cast<nn::Module<float>&>(model_), model_.config().to_json(),
                                  &optimizer_);
    if (ema_) {
      // "model." held the average, now in the model; the trained weights come from kTrainedPrefix.
      const nn::StateDict<float> trained = io::read_checkpoint_tensors<float>(checkpoint, kTrainedPrefix);
      TESSERA_CHECK(!trained.empty(), "Trainer::resume: '", checkpoint.string(), "' holds no \"", kTrainedPrefix,
                    "\" tensors (the trained weights beside their average)");
      ema_->reset_to_model();
      model_.load_state_dict(trained, true);
    }
    const int64_t batch_in_epoch = state.trainer.value("batch_in_epoch", int64_t{-1});
    TESSERA_CHECK(batch_in_epoch >= 0 && batch_in_epoch < steps_per_epoch_ &&
                      state.global_step == state.epoch * steps_per_epoch_ + batch_in_epoch,
                  "Trainer::resume: '", checkpoint.string(), "' records epoch ", state.epoch, ", batch ", batch_in_epoch,
                  " and step ", state.global_step, ", which do not agree with ", steps_per_epoch_, " steps per epoch");
    epoch_ = state.epoch;
    batch_in_epoch_ = batch_in_epoch;
    global_step_ = state.global_step;
    epoch_loss_sum_ = state.trainer.value("epoch_loss_sum", 0.0);
    elapsed_before_ = state.trainer.value("elapsed_s", 0.0);
    if (state.trainer.contains("budget_plan")) {
      try {
        adopt_plan(BudgetPlan::from_json(state.trainer.at("budget_plan")));
      } catch (const Error& e) {
        ::tessera::detail::fail("Trainer::resume: '", checkpoint.string(), "' has a malformed budget plan: ", e.what());
      }
    }
    resumed_ = true;
    const auto generator = state.generators.find("model");
    if (generator != state.generators.end()) model_.generator().restore(generator->second);
    if (comm_ && !distributed::same_on_all_ranks(*comm_, distributed::tensors_hash(model_tensors())))
      ::tessera::detail::fail("Trainer::resume: the ranks read different states from '", checkpoint.string(),
                              "' (every rank must see the same file, e.g. on a shared file system)");
    const size_t dropped = csv_.load_existing(static_cast<int>(epoch_), global_step_);
    if (dropped > 0) csv_.save();
    std::error_code not_same;
    if (!options_.checkpoint.empty() && std::filesystem::equivalent(checkpoint, options_.checkpoint, not_same))
      saved_step_ = global_step_;
    message("resumed from " + checkpoint.string() + " at epoch " + std::to_string(epoch_) + ", step " +
            std::to_string(global_step_) +
            (dropped > 0 ? "; dropped " + std::to_string(dropped) + " CSV row(s) beyond that point from " +
                               options_.csv.string()
                         : std::string()));
  }

  // Trains from the current position to the end of the run (the last epoch, or a budgeted run's planned steps), or
  // until max_steps; returns the rows written by this call: one per epoch, and one for a partial epoch when the run
  // stops inside it.
  // A stop request (TrainerOptions::stop_request) ends it after the step under way: the rows and the checkpoint then
  // describe where it stopped, and interrupted() names the request. A non-finite loss throws, naming the step, before
  // anything of that step is saved.
  std::vector<EpochRow> fit() {
    session_start_ = Clock::now();
    session_first_step_ = global_step_;
    interrupted_ = 0;
    if (writes_files()) remove_stale_temporaries();
    std::vector<EpochRow> rows;
    while (!run_over() && !stop_requested()) {
      const EpochProgress progress = train_epoch();
      if (progress.images == 0 && stop_requested()) break;  // stopped before its first step: nothing new to save
      rows.push_back(end_epoch(progress));
    }
    if (stop_requested() && !run_over()) {
      interrupted_ = options_.stop_request->load();
      if (interrupted_ == 0) interrupted_ = SIGTERM;  // another rank received the signal
      report_interruption();
    }
    return rows;
  }

  // The stop request that ended the last fit() before the end of the run (a signal's number), or 0.
  int interrupted() const { return interrupted_; }

  // Writes the model, the optimizer and the position in the run to `path` (what fit() does after each epoch). With
  // a weight average, "model." holds the average and kTrainedPrefix the trained weights.
  void save_checkpoint(const std::filesystem::path& path, double elapsed_seconds = 0.0) {
    io::CheckpointState state;
    state.epoch = epoch_;
    state.global_step = global_step_;
    state.generators.emplace("model", model_.generator().snapshot());
    state.schedule = {{"type", schedule_.decay() == optim::Decay::cosine ? "linear warmup, then cosine"
                                                                         : "linear warmup, then linear decay"},
                      {"base_lr", schedule_.base_lr()},
                      {"min_lr", schedule_.min_lr()},
                      {"warmup_steps", schedule_.warmup_steps()},
                      {"total_steps", total_steps()},
                      {"position", global_step_},
                      {"lr", schedule_(global_step_)}};
    state.trainer = {{"recipe", full_recipe()},
                     {"batch_in_epoch", batch_in_epoch_},
                     {"epoch_loss_sum", epoch_loss_sum_},
                     {"elapsed_s", elapsed_seconds},
                     {"threads", num_threads()},
                     {"workers", options_.workers},
                     {"max_steps", options_.max_steps}};
    if (comm_) state.trainer["ranks"] = comm_->size();  // for the record: any number of ranks may resume it
    if (plan_) state.trainer["budget_plan"] = plan_->to_json();
    if (!options_.normalize_mean.empty())
      state.trainer["classifier"] =
          ClassifierInfo{train_set_->class_names(), options_.normalize_mean, options_.normalize_std}.to_json();
    const AverageInModel average(ema_);
    std::vector<std::pair<std::string, Tensor<float>>> trained;
    if (ema_)
      for (auto& [name, tensor] : ema_->held()) trained.emplace_back(std::string(kTrainedPrefix) + name, tensor);
    io::save_checkpoint(path, static_cast<const nn::Module<float>&>(model_), model_.config().to_json(), &optimizer_,
                        state, trained);
  }

  // A few lines describing the run: parameters, data, schedule.
  std::string summary() const {
    std::ostringstream out;
    out << "parameters: " << model_.num_trainable_parameters() << " trainable of " << model_.num_parameters()
        << " total\n";
    out << "train: " << train_set_->description() << "\n";
    out << "test:  " << test_set_->description() << "\n";
    out << "steps: " << steps_per_epoch_ << " per epoch of " << options_.batch_size << " images, ";
    if (options_.budgeted())
      out << "as many as fit in " << options_.time_budget_minutes << " minutes (planned after " << kPlanAfterSteps
          << " steps)";
    else
      out << total_steps() << " in " << options_.epochs << " epochs";
    if (options_.max_steps > 0) out << " (stopping after " << options_.max_steps << ")";
    out << "\nAdamW: lr " << options_.lr << " (warmup " << warmup_steps_ << " steps, "
        << (options_.decay == optim::Decay::cosine ? "cosine" : "linear") << " to " << options_.min_lr
        << "), betas (" << options_.beta1 << ", " << options_.beta2 << "), eps " << options_.eps << ", weight decay "
        << options_.weight_decay << ", label smoothing " << options_.label_smoothing << "\n";
    out << "threads: " << num_threads() << " compute, " << options_.workers << " data workers per loader";
    if (comm_)
      out << " (per rank)\ndata parallel: " << comm_->description() << ", " << options_.batch_size / comm_->size()
          << " images per rank per step, gradients in " << buckets_->buckets().size() << " buckets";
    return out.str();
  }

  // Top-1 accuracy on the test set now (of the weight average, when the run keeps one). Data parallel: each rank
  // evaluates its share of every evaluation batch and the counts are summed over the ranks (call it on every rank).
  Accuracy evaluate_test() {
    const AverageInModel average(ema_);
    Accuracy accuracy = evaluate(model_, test_loader_, options_.eval_flip);
    if (comm_) {
      // Integer counts, exact in doubles: their average times the ranks rounds back to the exact sum.
      double counts[2] = {static_cast<double>(accuracy.correct), static_cast<double>(accuracy.total)};
      comm_->allreduce_average(std::span<double>(counts, 2));
      accuracy.correct = std::llround(counts[0] * comm_->size());
      accuracy.total = std::llround(counts[1] * comm_->size());
    }
    return accuracy;
  }

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // The run's length in steps; a budgeted run knows it once it has planned (0 before).
  int64_t total_steps() const {
    if (options_.budgeted()) return plan_ ? plan_->total_steps : 0;
    return options_.epochs * steps_per_epoch_;
  }
  int64_t epoch() const { return epoch_; }
  int64_t global_step() const { return global_step_; }
  const TrainerOptions& options() const { return options_; }
  optim::AdamW<float>& optimizer() { return optimizer_; }
  const optim::WarmupDecaySchedule& schedule() const { return schedule_; }
  const std::optional<BudgetPlan>& budget_plan() const { return plan_; }
  const CsvLog& csv() const { return csv_; }
  // The communicator of a data-parallel run (several ranks), or nullptr.
  distributed::Communicator* communicator() const { return comm_; }

 private:
  // Where a checkpoint keeps the trained weights when "model." holds their average.
  static constexpr std::string_view kTrainedPrefix = kTrainedWeightsPrefix;

  // Puts the weight average (if any) into the model for its lifetime, then the trained weights back.
  class AverageInModel {
   public:
    explicit AverageInModel(std::optional<optim::WeightEma>& ema) : ema_(ema) {
      if (ema_) ema_->swap();
    }
    ~AverageInModel() {
      if (ema_) ema_->swap();
    }
    AverageInModel(const AverageInModel&) = delete;
    AverageInModel& operator=(const AverageInModel&) = delete;

   private:
    std::optional<optim::WeightEma>& ema_;
  };

  // A budgeted run measures this many steps of its own before it plans (the first few, warming caches, untimed).
  static constexpr int64_t kPlanAfterSteps = 24;
  static constexpr int64_t kUntimedSteps = 4;
  // The schedule of a budgeted run before it has planned: warmup, then base_lr (what any plan gives so early).
  static constexpr int64_t kUnplannedSteps = int64_t{1} << 50;

  // What an epoch (or the part of it this call trained) did.
  struct EpochProgress {
    int64_t epoch = 0;  // 0-based, also the DataLoader's epoch
    int64_t images = 0;
    double train_seconds = 0.0;
    double data_wait_seconds = 0.0;
  };

  // Trains the steps of the current epoch from where it stands, until the epoch or the run ends.
  EpochProgress train_epoch() {
    EpochProgress progress{.epoch = epoch_};
    model_.train();
    train_loader_.start_epoch(epoch_, batch_in_epoch_);
    train_loader_.take_wait_seconds();
    while (!run_over() && !stop_requested()) {
      const auto step_start = Clock::now();
      std::optional<data::Batch> batch = train_loader_.next();
      if (!batch) break;
      optimizer_.set_lr(schedule_(global_step_));
      float loss = 0.0f;
      if (options_.mixing()) {
        Generator gen = data::mix_generator(options_.seed, epoch_, batch->index);
        const data::MixedBatch mixed = data::mix_batch(*batch, gen, options_.mix);
        loss = train_step(model_, optimizer_, mixed.images, [&](const Tensor<float>& logits) {
          return data::mixed_cross_entropy(logits, mixed, options_.label_smoothing);
        });
      } else if (comm_) {
        loss = train_step(
            model_, optimizer_, batch->images,
            [&](const Tensor<float>& logits) {
              return ops::cross_entropy(logits, batch->labels, options_.label_smoothing);
            },
            nullptr, &*buckets_);
      } else {
        loss = train_step(model_, optimizer_, batch->images, batch->labels, options_.label_smoothing);
      }
      if (comm_) loss = agree_after_step(loss);
      if (!std::isfinite(loss))
        ::tessera::detail::fail("Trainer: the loss became ", loss, " at step ", global_step_ + 1, " (epoch ",
                                epoch_ + 1, ", batch ", batch_in_epoch_ + 1, " of ", steps_per_epoch_,
                                "); stopping without saving: ", last_good_checkpoint(),
                                "; try a lower learning rate");
      epoch_loss_sum_ += static_cast<double>(loss);
      ++batch_in_epoch_;
      ++global_step_;
      if (ema_) ema_->update(global_step_);
      progress.images += comm_ ? options_.batch_size : batch->size();  // the global batch
      const double step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
      progress.train_seconds += step_seconds;
      note_step_time(step_seconds);
      if (options_.budgeted() && !plan_ && global_step_ - session_first_step_ >= kPlanAfterSteps) make_plan();
      show_progress(progress);
    }
    progress.data_wait_seconds = train_loader_.take_wait_seconds();
    return progress;
  }

  // After an epoch, or the part of one that ends the run or that a stop request cut short: evaluates (at every
  // eval_every-th epoch end and at the end of the run; never for a stop request inside an epoch), prints the line,
  // writes the CSV row, then the checkpoint. In that order, a kill between the two leaves a row beyond the
  // checkpoint, which resume drops, rather than a checkpoint whose row is lost.
  EpochRow end_epoch(const EpochProgress& progress) {
    const bool complete = batch_in_epoch_ == steps_per_epoch_;
    const bool last = run_over();
    const bool stopping = !complete && !last && stop_requested();
    const bool scheduled_eval = options_.eval_every > 0 && (progress.epoch + 1) % options_.eval_every == 0;
    double eval_seconds = 0.0;
    EpochRow row;
    row.epoch = static_cast<int>(progress.epoch + 1);
    row.step = global_step_;
    row.train_loss = batch_in_epoch_ > 0 ? epoch_loss_sum_ / static_cast<double>(batch_in_epoch_) : 0.0;
    row.test_accuracy = std::numeric_limits<double>::quiet_NaN();
    if (last || (scheduled_eval && !stopping && !root_decides(behind_budget()))) {
      const auto eval_start = Clock::now();
      row.test_accuracy = evaluate_test().percent();
      eval_seconds = std::chrono::duration<double>(Clock::now() - eval_start).count();
    }
    row.images_per_second =
        progress.train_seconds > 0.0 ? static_cast<double>(progress.images) / progress.train_seconds : 0.0;
    row.elapsed_seconds = elapsed_before_ + std::chrono::duration<double>(Clock::now() - session_start_).count();
    if (complete) {
      ++epoch_;
      batch_in_epoch_ = 0;
      epoch_loss_sum_ = 0.0;
    }

    // Why an epoch ends inside: a stop request, the budget's guard, the run's planned end, or max_steps.
    const char* partial = complete              ? ""
                          : stopping            ? " (interrupted)"
                          : stopped_for_budget_ ? " (stopped early to keep the budget)"
                          : global_step_ >= total_steps() ? " (the run's last step)"
                                                          : " (max_steps)";
    std::ostringstream line;
    line << std::fixed << "epoch " << row.epoch << '/' << epochs_label() << partial << "  step " << row.step
         << std::setprecision(4) << "  train_loss " << row.train_loss << std::setprecision(2);
    if (std::isnan(row.test_accuracy)) line << "  (not evaluated)";
    else line << "  test_acc " << row.test_accuracy << "%";
    line << std::setprecision(1) << "  " << row.images_per_second << " img/s  data wait "
         << progress.data_wait_seconds << " s  eval " << eval_seconds << " s  elapsed "
         << format_duration(row.elapsed_seconds);
    message(line.str());
    csv_.append(row);
    if (complete && !last && !stopping) replan(eval_seconds);  // before the checkpoint, which records it
    if (!options_.checkpoint.empty()) {
      if (writes_files()) save_checkpoint(options_.checkpoint, row.elapsed_seconds);
      saved_step_ = global_step_;
      message("saved " + options_.checkpoint.string());
    }
    return row;
  }

  // ---- interruptions ----

  // Data parallel: what the ranks agreed after the last step (a stop request on any rank stops them all there).
  bool stop_requested() const { return comm_ ? stop_agreed_ : stop_requested_here(); }
  bool stop_requested_here() const {
    return options_.stop_request != nullptr && options_.stop_request->load() != 0;
  }

  // Removes the temporary files that a kill during a save left beside the checkpoint and the CSV.
  void remove_stale_temporaries() {
    for (const std::filesystem::path& destination : {options_.checkpoint, options_.csv})
      for (const std::filesystem::path& removed : io::detail::remove_stale_temporaries(destination))
        message("removed " + removed.string() + ", left by a save that was interrupted");
  }

  // What a run stopped early by a stop request says: where it stopped and what it saved.
  void report_interruption() {
    std::ostringstream text;
    text << "stopped by " << signal_name(interrupted_) << " at step " << global_step_ << " (epoch " << epoch_ + 1
         << ", batch " << batch_in_epoch_ << " of " << steps_per_epoch_ << "): ";
    if (saved_step_ == global_step_)
      text << "the checkpoint " << options_.checkpoint.string() << " holds this step; resume from it to continue";
    else
      text << "no checkpoint holds this step: " << last_good_checkpoint();
    if (!options_.csv.empty()) text << "; the CSV " << options_.csv.string() << " ends at the same point";
    message(text.str());
  }

  // The checkpoint on disk, for messages when the run stops: the step it holds, or why there is none.
  std::string last_good_checkpoint() const {
    if (options_.checkpoint.empty()) return "no checkpoint path was given";
    if (saved_step_ < 0) return "this run has not written " + options_.checkpoint.string() + " yet";
    return options_.checkpoint.string() + " still holds step " + std::to_string(saved_step_) + ", the last good state";
  }

  // ---- where the run ends ----

  // The step the run stops at: its planned end, or max_steps when sooner; a budgeted run that has not planned yet
  // has no end.
  int64_t last_step() const {
    int64_t last = options_.budgeted() && !plan_ ? kUnplannedSteps : total_steps();
    if (options_.max_steps > 0) last = std::min(last, options_.max_steps);
    return last;
  }

  // A budgeted run that has fallen so far behind its plan that finishing it would overrun the budget stops at the
  // step where the final evaluation and checkpoint still fit (only in the session that planned: a resumed run
  // keeps the plan so that it reproduces the uninterrupted one).
  bool run_over() const { return global_step_ >= last_step() || stopped_for_budget_; }

  double budget_seconds() const { return options_.time_budget_minutes * 60.0; }
  double seconds_since_budget_start() const {
    return std::chrono::duration<double>(Clock::now() - budget_start_).count();
  }

  // Seconds the rest of the run needs at the recent pace, without the intermediate evaluations.
  double seconds_to_finish_without_evaluations() const {
    const double step = recent_step_seconds_ > 0.0 ? recent_step_seconds_ : plan_->step_seconds;
    return static_cast<double>(last_step() - global_step_) * step + plan_->evaluation_seconds +
           plan_->checkpoint_seconds;
  }

  // True when an intermediate evaluation now would push the end of the run past the budget.
  bool behind_budget() const {
    if (!plan_ || resumed_) return false;
    return seconds_since_budget_start() + plan_->evaluation_seconds + seconds_to_finish_without_evaluations() >
           budget_seconds();
  }

  void note_step_time(double seconds) {
    if (global_step_ - session_first_step_ <= kUntimedSteps) return;
    timed_step_seconds_ += seconds;
    ++timed_steps_;
    pace_seconds_ += seconds;
    ++pace_steps_;
    recent_step_seconds_ = recent_step_seconds_ > 0.0 ? 0.9 * recent_step_seconds_ + 0.1 * seconds : seconds;
    if (plan_ && !resumed_ &&
        seconds_since_budget_start() + plan_->evaluation_seconds + plan_->checkpoint_seconds + 1.0 >
            budget_seconds() * 1.005)
      stopped_for_budget_ = true;
    if (comm_ && plan_ && !resumed_) stopped_for_budget_ = root_decides(stopped_for_budget_);  // rank 0's clock
  }

  // Measures what an evaluation and a checkpoint cost, then fixes the run's length and lays the schedule over it.
  void make_plan() {
    BudgetPlan plan;
    plan.planned_at_step = global_step_;
    plan.step_seconds = timed_step_seconds_ / static_cast<double>(std::max<int64_t>(1, timed_steps_));
    pace_seconds_ = 0.0;
    pace_steps_ = 0;
    plan.evaluation_seconds = measure_evaluation_seconds();
    if (!options_.checkpoint.empty()) {
      const auto save_start = Clock::now();
      if (writes_files()) save_checkpoint(options_.checkpoint, elapsed_before_ + seconds_in_session());
      saved_step_ = global_step_;
      plan.checkpoint_seconds = std::chrono::duration<double>(Clock::now() - save_start).count();
    }
    const BudgetInputs inputs{.budget = budget_seconds(),
                              .elapsed = seconds_since_budget_start() + elapsed_before_,
                              .steps_done = global_step_,
                              .step = plan.step_seconds,
                              .evaluation = plan.evaluation_seconds,
                              .checkpoint = plan.checkpoint_seconds,
                              .steps_per_epoch = steps_per_epoch_,
                              .eval_every = options_.eval_every};
    plan.total_steps = std::max(plan_total_steps(inputs), std::max<int64_t>(global_step_, 1));
    plan.warmup_steps = budget_warmup_steps(warmup_steps_, plan.total_steps, global_step_);
    if (comm_) comm_->broadcast(std::as_writable_bytes(std::span<BudgetPlan>(&plan, 1)), 0);  // rank 0's plan
    adopt_plan(plan);
    std::ostringstream line;
    line << std::fixed << std::setprecision(3) << "time budget " << options_.time_budget_minutes << " min: "
         << plan.step_seconds << " s/step, " << std::setprecision(1) << plan.evaluation_seconds << " s/evaluation, "
         << plan.checkpoint_seconds << " s/checkpoint -> " << plan.total_steps << " steps ("
         << static_cast<double>(plan.total_steps) / static_cast<double>(steps_per_epoch_) << " epochs, warmup "
         << plan.warmup_steps << ")";
    message(line.str());
  }

  // At an epoch end of a budgeted run that planned in this session: plans again from the pace of the steps since
  // the last plan (at least an epoch's, and a tenth of the run's) and the evaluation just timed, if any, so that a
  // machine slower or faster than during the first steps neither cuts the schedule short (stopped early, the
  // learning rate still high) nor leaves the budget unused. The rest of the decay is re-laid over the new length
  // from here: no jump in the learning rate. Rank 0's plan is everyone's (every rank counts the same steps, so all
  // reach the broadcast together). A resumed run keeps its plan (so that it reproduces the run it continues).
  void replan(double eval_seconds) {
    if (!options_.budgeted() || !plan_ || resumed_) return;
    if (pace_steps_ < replan_window_steps(steps_per_epoch_, plan_->total_steps)) return;
    BudgetPlan plan = *plan_;
    if (eval_seconds > 0.0) plan.evaluation_seconds = eval_seconds;
    const double step_seconds = pace_seconds_ / static_cast<double>(pace_steps_);
    pace_seconds_ = 0.0;
    pace_steps_ = 0;
    const BudgetInputs inputs{.budget = budget_seconds(),
                              // the checkpoint of this epoch end, written next, is not among those still ahead
                              .elapsed = seconds_since_budget_start() + elapsed_before_ + plan.checkpoint_seconds,
                              .steps_done = global_step_,
                              .step = step_seconds,
                              .evaluation = plan.evaluation_seconds,
                              .checkpoint = plan.checkpoint_seconds,
                              .steps_per_epoch = steps_per_epoch_,
                              .eval_every = options_.eval_every};
    const int64_t total = std::max(replanned_total_steps(inputs, plan.total_steps), plan.warmup_steps);
    if (total != plan.total_steps) {
      const int64_t was = plan.total_steps;
      const optim::WarmupDecaySchedule continued = schedule_.continued(global_step_, total);
      plan.total_steps = total;
      plan.step_seconds = step_seconds;
      plan.anchor_step = continued.anchor_step();
      plan.anchor_progress = continued.anchor_progress();
      ++plan.replans;
      std::ostringstream line;
      line << std::fixed << std::setprecision(3) << "time budget: " << step_seconds
           << " s/step since the last plan -> " << total << " steps (" << std::setprecision(1)
           << static_cast<double>(total) / static_cast<double>(steps_per_epoch_) << " epochs; the plan was " << was
           << "), the rest of the schedule re-laid from step " << global_step_;
      message(line.str());
    }
    if (comm_) comm_->broadcast(std::as_writable_bytes(std::span<BudgetPlan>(&plan, 1)), 0);  // rank 0's plan
    adopt_plan(plan);
  }

  void adopt_plan(const BudgetPlan& plan) {
    plan_ = plan;
    schedule_ = optim::WarmupDecaySchedule(options_.lr, plan.total_steps, plan.warmup_steps, options_.min_lr,
                                           options_.decay, plan.anchor_step, plan.anchor_progress);
  }

  // One evaluation's cost, estimated from timing the forward pass of one evaluation batch.
  double measure_evaluation_seconds() {
    const bool was_training = model_.is_training();
    model_.eval();
    NoGradGuard no_grad;
    test_loader_.start_epoch(0);
    std::optional<data::Batch> batch = test_loader_.next();
    const auto start = Clock::now();
    if (batch && batch->size() > 0) (void)model_.forward(batch->images);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    model_.train(was_training);
    if (!batch || batch->size() == 0) return 0.0;
    // This rank's share of the test set (all of it in one process).
    return seconds * (options_.eval_flip ? 2.0 : 1.0) * static_cast<double>(test_set_->size()) /
           static_cast<double>(ranks_of(options_)) / static_cast<double>(batch->size());
  }

  optim::WarmupDecaySchedule make_schedule(int64_t total) const {
    return optim::WarmupDecaySchedule(options_.lr, std::max(total, warmup_steps_), warmup_steps_, options_.min_lr,
                                      options_.decay);
  }

  // ---- display ----

  double seconds_in_session() const { return std::chrono::duration<double>(Clock::now() - session_start_).count(); }

  std::string epochs_label() const {
    if (options_.budgeted() && !plan_) return "?";
    return std::to_string((total_steps() + steps_per_epoch_ - 1) / steps_per_epoch_);
  }

  void show_progress(const EpochProgress& progress) {
    const int64_t steps_this_session = global_step_ - session_first_step_;
    const bool end_known = !(options_.budgeted() && !plan_);
    progress_.update({.epoch = static_cast<int>(progress.epoch + 1),
                      .epochs = end_known ? static_cast<int>((last_step() + steps_per_epoch_ - 1) / steps_per_epoch_)
                                          : 0,
                      .step = batch_in_epoch_,
                      .steps = steps_per_epoch_,
                      .loss = epoch_loss_sum_ / static_cast<double>(batch_in_epoch_),
                      .images_per_second = static_cast<double>(progress.images) / progress.train_seconds,
                      .eta_seconds = end_known ? seconds_in_session() / static_cast<double>(steps_this_session) *
                                                     static_cast<double>(last_step() - global_step_)
                                               : 0.0});
  }

  static TrainerOptions validated(TrainerOptions options) {
    options.validate();
    if (rank_of(options) != 0) {  // rank 0 alone prints and writes the CSV
      options.output = nullptr;
      options.csv.clear();
    }
    return options;
  }
  static int ranks_of(const TrainerOptions& options) {
    return options.communicator != nullptr ? options.communicator->size() : 1;
  }
  static int rank_of(const TrainerOptions& options) {
    return options.communicator != nullptr ? options.communicator->rank() : 0;
  }

  // ---- data parallel ----

  // Rank 0 alone writes files (checkpoints, the CSV, removing stale temporaries).
  bool writes_files() const { return comm_ == nullptr || comm_->is_root(); }

  std::vector<Tensor<float>> model_tensors() const {
    std::vector<Tensor<float>> tensors;
    for (const auto& [name, tensor] : model_.state_dict()) tensors.push_back(tensor);
    return tensors;
  }

  // Rank 0's parameters and buffers on every rank; the gradient buckets; the buffers that training changes on each
  // rank (BatchNorm's running statistics), which are averaged after every step.
  void start_data_parallel() {
    distributed::broadcast_tensors(*comm_, model_tensors(), 0);
    buckets_.emplace(*comm_, distributed::GradientBuckets<float>::backward_order(model_.parameters()));
    for (const auto& [name, buffer] : model_.named_buffers())
      if (name.ends_with("running_mean") || name.ends_with("running_var")) synced_buffers_.push_back(buffer);
  }

  // After each step, one collective: the step's loss averaged over the ranks (the mean over the global batch, as
  // one process computes it, up to rounding), whether any rank got a stop request, and BatchNorm's running
  // statistics averaged, so that every rank holds the same. Returns the averaged loss.
  float agree_after_step(float loss) {
    std::vector<float>& flat = step_agreement_;
    flat.clear();
    for (const Tensor<float>& b : synced_buffers_) flat.insert(flat.end(), b.data(), b.data() + b.numel());
    flat.push_back(loss);
    flat.push_back(stop_requested_here() ? 1.0f : 0.0f);
    comm_->allreduce_average(std::span<float>(flat));
    const float* averaged = flat.data();
    for (const Tensor<float>& b : synced_buffers_) {
      std::copy_n(averaged, b.numel(), b.data());
      averaged += b.numel();
    }
    stop_agreed_ = flat.back() > 0.0f;
    return flat[flat.size() - 2];
  }

  // A decision taken from one rank's clock: rank 0's `value` on every rank (the value itself in one process).
  bool root_decides(bool value) {
    if (!comm_) return value;
    unsigned char byte = value ? 1 : 0;
    comm_->broadcast(std::as_writable_bytes(std::span<unsigned char>(&byte, 1)), 0);
    return byte != 0;
  }
  static std::shared_ptr<const data::Dataset> checked_dataset(std::shared_ptr<const data::Dataset> set,
                                                              const char* which) {
    TESSERA_CHECK(set != nullptr, "Trainer: the ", which, " dataset is null");
    return set;
  }
  static std::ostream& null_stream() {
    static std::ostream stream(nullptr);
    return stream;
  }

  // The recipe plus the sizes of the datasets: what must agree for a resumed run to continue the same run.
  nlohmann::json full_recipe() const {
    nlohmann::json recipe = options_.recipe_json();
    recipe["train_samples"] = train_set_->size();
    recipe["test_samples"] = test_set_->size();
    return recipe;
  }

  // "lr: checkpoint 0.003, this run 0.001; ...", each setting named as options_.name_of says (a program's flag). The
  // checkpoint is a file from anywhere: its values are shown as short excerpts, its names clipped, and after eight
  // differing settings the rest are only counted.
  std::string describe_differences(const nlohmann::json& stored, const nlohmann::json& current) const {
    if (!stored.is_object()) return "the checkpoint records no settings";
    constexpr size_t kMaxShown = 8, kMaxNameChars = 80;
    std::set<std::string> keys;
    for (const auto& [key, value] : stored.items()) keys.insert(key);
    for (const auto& [key, value] : current.items()) keys.insert(key);
    const auto shown_value = [](const nlohmann::json& settings, const std::string& key) {
      return settings.contains(key) ? ::tessera::detail::json_excerpt(settings.at(key)) : std::string("(absent)");
    };
    std::string out;
    size_t differing = 0;
    for (const auto& key : keys) {
      if (stored.contains(key) && current.contains(key) && stored.at(key) == current.at(key)) continue;
      if (++differing > kMaxShown) continue;
      std::string name = options_.name_of(key);
      if (name.size() > kMaxNameChars) name = name.substr(0, kMaxNameChars) + "...";
      out += (out.empty() ? "" : "; ") + name + ": checkpoint " + shown_value(stored, key) + ", this run " +
             shown_value(current, key);
    }
    if (differing > kMaxShown) out += "; and " + std::to_string(differing - kMaxShown) + " more";
    return out;
  }

  void message(const std::string& text) {
    if (options_.output) progress_.message(text);
  }

  Model& model_;
  TrainerOptions options_;
  std::shared_ptr<const data::Dataset> train_set_, test_set_;
  data::DataLoader train_loader_, test_loader_;
  int64_t steps_per_epoch_;
  int64_t warmup_steps_;
  optim::AdamW<float> optimizer_;
  optim::WarmupDecaySchedule schedule_;
  CsvLog csv_;
  Progress progress_;
  Clock::time_point budget_start_;
  distributed::Communicator* comm_;  // data parallel over several ranks; nullptr: one process
  std::optional<distributed::GradientBuckets<float>> buckets_;
  std::vector<Tensor<float>> synced_buffers_;  // averaged over the ranks after every step
  std::vector<float> step_agreement_;
  bool stop_agreed_ = false;  // data parallel: a stop request reached some rank by the end of the last step

  int64_t epoch_ = 0;           // epochs completed
  int64_t batch_in_epoch_ = 0;  // steps done in the epoch under way
  int64_t global_step_ = 0;     // optimizer steps done
  double epoch_loss_sum_ = 0.0; // sum of the losses of the epoch under way
  double elapsed_before_ = 0.0; // seconds spent by the runs this one resumes

  std::optional<optim::WeightEma> ema_;  // the weight average, when options_.ema_decay > 0
  std::optional<BudgetPlan> plan_;  // a budgeted run's length, once measured (or resumed)
  bool resumed_ = false;
  bool stopped_for_budget_ = false;
  int interrupted_ = 0;       // the stop request that ended the last fit() early, or 0
  int64_t saved_step_ = -1;   // the step options_.checkpoint holds when this Trainer wrote or resumed it; -1: unknown
  Clock::time_point session_start_ = Clock::now();  // when this fit() began
  int64_t session_first_step_ = 0;
  double timed_step_seconds_ = 0.0;  // steps of this session after the untimed ones
  int64_t timed_steps_ = 0;
  double recent_step_seconds_ = 0.0;  // exponential average of the latest steps
  double pace_seconds_ = 0.0;         // the timed steps since the budget was last planned: the pace a re-plan uses
  int64_t pace_steps_ = 0;
};

}  // namespace tessera::train
