// Tests of kill-safe training (train/trainer.hpp, train/stop_signals.hpp, train/progress.hpp): a stop request or a
// real SIGINT ends a run after the step under way with a mid-epoch checkpoint and CSV row, and resuming reproduces the
// uninterrupted run bit for bit; the CSV row is written before the checkpoint and resume drops rows beyond it; stale
// temporary files are removed; a non-finite loss stops the run without touching the last checkpoint; a second signal
// ends the process; the live progress line fits the terminal; error messages name a program's flags.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <tessera/io/checkpoint.hpp>
#include <tessera/io/detail/atomic_file.hpp>
#include <tessera/tessera.hpp>
#include <tessera/train/progress.hpp>
#include <tessera/train/stop_signals.hpp>
#include <tessera/train/trainer.hpp>

#include "test_helpers.hpp"

namespace fs = std::filesystem;
using namespace tessera;

namespace {

using test::check_error;
using test::colour_dataset;
using test::read_lines;
using test::read_text;
using test::TempDir;
using test::without_timing;

// Dropout and drop-path on, so that a resumed run also depends on the model's generator.
nn::ViTConfig tiny_config() { return test::tiny_vit_config_with_dropout(); }

// A dataset that, on its `at`-th load (counting from 1), either sets `flag` to SIGINT or raises a real SIGINT: with
// no data workers the load happens on the training thread just before a step, so the stop comes during that step.
class StopAtLoad final : public data::Dataset {
 public:
  StopAtLoad(std::shared_ptr<const data::Dataset> inner, int64_t at, std::atomic<int>* flag)
      : inner_(std::move(inner)), at_(at), flag_(flag) {}
  int64_t size() const override { return inner_->size(); }
  const std::vector<std::string>& class_names() const override { return inner_->class_names(); }
  data::Sample get(int64_t index) const override {
    if (++*loads_ == at_) {
      if (flag_) flag_->store(SIGINT);
      else ::raise(SIGINT);
    }
    return inner_->get(index);
  }
  int64_t label(int64_t index) const override { return inner_->label(index); }
  std::string sample_name(int64_t index) const override { return inner_->sample_name(index); }
  std::string description() const override { return inner_->description(); }

 private:
  std::shared_ptr<const data::Dataset> inner_;
  int64_t at_;
  std::atomic<int>* flag_;
  std::shared_ptr<int64_t> loads_ = std::make_shared<int64_t>(0);
};

// While it lives SIGINT and SIGTERM reach StopOnSignals even when the test runs with them ignored (a background job
// of a script): StopOnSignals leaves an ignored signal ignored.
class SignalsNotIgnored {
 public:
  SignalsNotIgnored() {
    struct sigaction action {};
    action.sa_handler = [](int) {};
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &interrupt_);
    ::sigaction(SIGTERM, &action, &terminate_);
  }
  ~SignalsNotIgnored() {
    ::sigaction(SIGINT, &interrupt_, nullptr);
    ::sigaction(SIGTERM, &terminate_, nullptr);
  }
  SignalsNotIgnored(const SignalsNotIgnored&) = delete;
  SignalsNotIgnored& operator=(const SignalsNotIgnored&) = delete;

 private:
  struct sigaction interrupt_ {};
  struct sigaction terminate_ {};
};

data::Compose train_transform() { return test::colour_train_transform(); }
data::Compose eval_transform() { return test::colour_eval_transform(); }

constexpr int64_t kBatch = 4;  // 26 samples: 6 steps per epoch, 18 in the run

train::TrainerOptions tiny_options(const fs::path& dir, const std::string& name) {
  train::TrainerOptions o;
  o.epochs = 3;
  o.batch_size = kBatch;
  o.lr = 3e-3;
  o.min_lr = 1e-4;
  o.seed = 11;
  o.eval_batch_size = 5;
  o.workers = 0;
  o.output = nullptr;
  o.stop_request = nullptr;
  o.checkpoint = dir / (name + ".safetensors");
  o.csv = dir / (name + ".csv");
  return o;
}

using Model = nn::VisionTransformer<float>;
using Trainer = train::Trainer<Model>;

Trainer make_trainer(Model& model, const train::TrainerOptions& options,
                     std::shared_ptr<const data::Dataset> train_set = colour_dataset(26, 1)) {
  return Trainer(model, std::move(train_set), train_transform(), colour_dataset(9, 2), eval_transform(), options);
}

// The uninterrupted run that the interrupted ones must reproduce.
struct Reference {
  TempDir dir;
  train::TrainerOptions options = tiny_options(dir.path, "reference");
  std::vector<std::string> csv;
  Reference() {
    Model model(tiny_config(), 3);
    Trainer trainer = make_trainer(model, options);
    trainer.fit();
    csv = read_lines(options.csv);
  }
};

const Reference& reference() {
  static const Reference run;
  return run;
}

// The checkpoint at `path` holds the same tensors, position and generator as the reference run's final one, and the
// CSV the same rows in every column but the timings.
void check_same_as_reference(const train::TrainerOptions& options) {
  const Reference& ref = reference();
  const io::SafetensorsFile expected = io::SafetensorsFile::read(ref.options.checkpoint);
  const io::SafetensorsFile actual = io::SafetensorsFile::read(options.checkpoint);
  REQUIRE(actual.entries().size() == expected.entries().size());
  for (const auto& entry : expected.entries()) {
    const std::string tensor_name = entry.name;
    CAPTURE(tensor_name);
    REQUIRE(actual.contains(tensor_name));
    CHECK(actual.entry(tensor_name).data.dtype() == entry.data.dtype());
    CHECK(actual.entry(tensor_name).data.shape() == entry.data.shape());
    const auto a = actual.entry(tensor_name).data.bytes();
    const auto b = entry.data.bytes();
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);
  }
  const io::CheckpointState want = io::read_checkpoint_state(ref.options.checkpoint);
  const io::CheckpointState got = io::read_checkpoint_state(options.checkpoint);
  CHECK(got.epoch == want.epoch);
  CHECK(got.global_step == want.global_step);
  CHECK(got.trainer.at("batch_in_epoch") == want.trainer.at("batch_in_epoch"));
  REQUIRE(got.generators.count("model") == 1);
  CHECK(got.generators.at("model").state == want.generators.at("model").state);
  CHECK(got.generators.at("model").has_spare_normal == want.generators.at("model").has_spare_normal);
  const auto csv = read_lines(options.csv);
  REQUIRE(csv.size() == ref.csv.size());
  for (size_t i = 0; i < csv.size(); ++i) CHECK(without_timing(csv[i]) == without_timing(ref.csv[i]));
}

// The first load of the batch of step `step` (1-based) in a run that starts at step `first` + 1.
int64_t load_of_step(int64_t step, int64_t first = 0) { return (step - first - 1) * kBatch + 1; }

// Trains until a stop request during step `stop_step` (set by the dataset, or a real SIGINT when `real_signal`), checks
// what the stopped run left, and returns. `first` is the step the run starts from (it resumes when > 0).
void run_until_stopped(const train::TrainerOptions& base, int64_t first, int64_t stop_step, bool real_signal) {
  CAPTURE(stop_step);
  std::atomic<int> flag{0};
  train::TrainerOptions options = base;
  SignalsNotIgnored receivable;
  std::unique_ptr<train::StopOnSignals> handlers;
  if (real_signal) {
    handlers = std::make_unique<train::StopOnSignals>();
    options.stop_request = &train::signal_stop_request();
  } else {
    options.stop_request = &flag;
  }
  Model model(tiny_config(), first == 0 ? 3 : 77);
  auto train_set = std::make_shared<StopAtLoad>(colour_dataset(26, 1), load_of_step(stop_step, first),
                                                real_signal ? nullptr : &flag);
  Trainer trainer = make_trainer(model, options, train_set);
  if (first > 0) trainer.resume(options.checkpoint);
  REQUIRE(trainer.global_step() == first);
  const auto rows = trainer.fit();
  CHECK(trainer.interrupted() == SIGINT);
  CHECK(trainer.global_step() == stop_step);
  REQUIRE(!rows.empty());
  CHECK(rows.back().step == stop_step);

  const io::CheckpointState state = io::read_checkpoint_state(options.checkpoint);
  CHECK(state.global_step == stop_step);
  CHECK(state.epoch == stop_step / 6);
  CHECK(state.trainer.at("batch_in_epoch") == stop_step % 6);
  // The CSV ends at the checkpoint: its last row is the stopped step's, unevaluated inside an epoch.
  const auto csv = read_lines(options.csv);
  REQUIRE(csv.size() >= 2);
  const std::string expected_start = std::to_string((stop_step + 5) / 6) + "," + std::to_string(stop_step) + ",";
  CHECK(csv.back().rfind(expected_start, 0) == 0);
  if (stop_step % 6 != 0) CHECK(without_timing(csv.back()).back() == ',');  // test_acc empty
}

// Resumes from the checkpoint to the end of the run with no stop request.
void resume_to_end(const train::TrainerOptions& options) {
  Model model(tiny_config(), 1234);
  Trainer trainer = make_trainer(model, options);
  trainer.resume(options.checkpoint);
  trainer.fit();
  CHECK(trainer.interrupted() == 0);
  CHECK(trainer.global_step() == 18);
}

}  // namespace

TEST_CASE("a stop request ends the run after the step under way with a checkpoint; resuming reproduces the run") {
  for (const int64_t stop_step : {int64_t{8}, int64_t{6}, int64_t{1}, int64_t{17}}) {
    CAPTURE(stop_step);
    TempDir dir;
    const train::TrainerOptions options = tiny_options(dir.path, "stopped");
    run_until_stopped(options, 0, stop_step, false);
    resume_to_end(options);
    check_same_as_reference(options);
  }
}

TEST_CASE("stopped twice inside one epoch and once more in the next, the run still ends as the uninterrupted one") {
  TempDir dir;
  const train::TrainerOptions options = tiny_options(dir.path, "thrice");
  run_until_stopped(options, 0, 8, false);
  run_until_stopped(options, 8, 10, false);
  run_until_stopped(options, 10, 13, false);
  resume_to_end(options);
  check_same_as_reference(options);
}

TEST_CASE("a real SIGINT during a step stops the run there; resuming reproduces the run") {
  TempDir dir;
  const train::TrainerOptions options = tiny_options(dir.path, "sigint");
  run_until_stopped(options, 0, 9, true);
  CHECK(train::signal_stop_request().load() == 0);  // StopOnSignals cleared it when it went
  resume_to_end(options);
  check_same_as_reference(options);
}

TEST_CASE("a stop request before the first step saves nothing") {
  TempDir dir;
  train::TrainerOptions options = tiny_options(dir.path, "early");
  std::atomic<int> flag{SIGTERM};
  options.stop_request = &flag;
  std::ostringstream out;
  options.output = &out;
  Model model(tiny_config(), 3);
  Trainer trainer = make_trainer(model, options);
  CHECK(trainer.fit().empty());
  CHECK(trainer.interrupted() == SIGTERM);
  CHECK(trainer.global_step() == 0);
  CHECK(!fs::exists(options.checkpoint));
  CHECK(!fs::exists(options.csv));
  CHECK(out.str().find("stopped by SIGTERM at step 0") != std::string::npos);
}

TEST_CASE("StopOnSignals: the first SIGINT asks to stop, a second one ends the process; the old handlers come back") {
  SignalsNotIgnored receivable;
  struct sigaction before {};
  ::sigaction(SIGINT, nullptr, &before);
  {
    train::StopOnSignals stop;
    CHECK(stop.signal() == 0);
    ::raise(SIGINT);
    CHECK(stop.signal() == SIGINT);
    CHECK(train::signal_stop_request().load() == SIGINT);
  }
  // A signal ignored before stays ignored.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  struct sigaction saved {};
  ::sigaction(SIGTERM, &ignore, &saved);
  {
    train::StopOnSignals stop;
    ::raise(SIGTERM);
    CHECK(stop.signal() == 0);
  }
  ::sigaction(SIGTERM, &saved, nullptr);
  CHECK(train::signal_stop_request().load() == 0);
  struct sigaction after {};
  ::sigaction(SIGINT, nullptr, &after);
  CHECK((after.sa_handler == before.sa_handler));

  for (const int signal_number : {SIGINT, SIGTERM}) {
    CAPTURE(signal_number);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {  // only async-signal-safe calls from here
      struct sigaction default_action {};
      default_action.sa_handler = SIG_DFL;
      sigemptyset(&default_action.sa_mask);
      ::sigaction(signal_number, &default_action, nullptr);
      train::StopOnSignals stop;
      ::raise(signal_number);
      if (stop.signal() != signal_number) ::_exit(3);
      ::raise(signal_number);
      ::_exit(4);  // not reached: the second signal ends the process
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == signal_number);
    if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == 0);  // shows the child's exit code in the failure
  }
}

TEST_CASE("the CSV row is written before the checkpoint, and resume drops rows beyond its checkpoint") {
  TempDir dir;
  // A checkpoint that cannot be written: the epoch's row is already in the CSV when the save fails.
  {
    train::TrainerOptions options = tiny_options(dir.path, "unsaved");
    fs::create_directories(options.checkpoint);
    Model model(tiny_config(), 3);
    Trainer trainer = make_trainer(model, options);
    check_error([&] { trainer.fit(); }, {"unsaved.safetensors", "directory"});
    const auto csv = read_lines(options.csv);
    REQUIRE(csv.size() == 2);
    CHECK(csv[1].rfind("1,6,", 0) == 0);
  }
  // A kill after epoch 2's row reached the CSV and before its checkpoint did: the checkpoint still holds epoch 1.
  train::TrainerOptions options = tiny_options(dir.path, "killed");
  options.max_steps = 6;
  {
    Model model(tiny_config(), 3);
    Trainer trainer = make_trainer(model, options);
    trainer.fit();
  }
  fs::copy_file(options.checkpoint, dir / "epoch1.safetensors");
  options.max_steps = 12;
  {
    Model model(tiny_config(), 5);
    Trainer trainer = make_trainer(model, options);
    trainer.resume(options.checkpoint);
    trainer.fit();
  }
  REQUIRE(read_lines(options.csv).size() == 3);
  fs::copy_file(dir / "epoch1.safetensors", options.checkpoint, fs::copy_options::overwrite_existing);
  options.max_steps = 0;
  std::ostringstream out;
  options.output = &out;
  Model model(tiny_config(), 7);
  Trainer trainer = make_trainer(model, options);
  trainer.resume(options.checkpoint);
  const auto csv = read_lines(options.csv);  // rewritten by resume, before any training
  REQUIRE(csv.size() == 2);
  CHECK(without_timing(csv[1]) == without_timing(reference().csv[1]));
  CHECK(out.str().find("dropped 1 CSV row(s)") != std::string::npos);
  trainer.fit();
  options.output = nullptr;
  check_same_as_reference(options);
}

TEST_CASE("temporary files of tessera's naming beside the checkpoint and the CSV are removed at the start, no others") {
  TempDir dir;
  train::TrainerOptions options = tiny_options(dir.path, "run");
  options.max_steps = 1;
  std::ostringstream out;
  options.output = &out;
  const std::vector<std::string> ours = {"run.safetensors.tmp-0123456789abcdef", "run.csv.tmp-fedcba9876543210"};
  const std::vector<std::string> others = {"run.safetensors.tmp-0123456789ABCDEF", "run.safetensors.tmp-0123",
                                           "other.safetensors.tmp-0123456789abcdef", "run.safetensors.tmp-keep",
                                           "run.safetensors.tmp-0123456789abcdef0"};
  for (const auto& name : ours) std::ofstream(dir / name) << "partial";
  for (const auto& name : others) std::ofstream(dir / name) << "someone else's";
  fs::create_directory(dir / "run.csv.tmp-00000000000000aa");  // a folder is never ours
  Model model(tiny_config(), 3);
  Trainer trainer = make_trainer(model, options);
  trainer.fit();
  for (const auto& name : ours) {
    CHECK_MESSAGE(!fs::exists(dir / name), name);
    CHECK_MESSAGE(out.str().find("removed " + (dir / name).string()) != std::string::npos, name);
  }
  for (const auto& name : others) CHECK_MESSAGE(fs::exists(dir / name), name);
  CHECK(fs::is_directory(dir / "run.csv.tmp-00000000000000aa"));
  CHECK(fs::exists(options.checkpoint));
  CHECK(io::detail::remove_stale_temporaries(options.checkpoint).empty());
}

TEST_CASE("a non-finite loss stops the run naming the step and leaves the last checkpoint and the CSV as they were") {
  TempDir dir;
  train::TrainerOptions options = tiny_options(dir.path, "diverged");
  options.max_steps = 6;
  {
    Model model(tiny_config(), 3);
    Trainer trainer = make_trainer(model, options);
    trainer.fit();
  }
  const std::string checkpoint_before = read_text(options.checkpoint);
  const std::string csv_before = read_text(options.csv);
  options.max_steps = 0;
  Model model(tiny_config(), 3);
  Trainer trainer = make_trainer(model, options);
  trainer.resume(options.checkpoint);
  for (const auto& parameter : model.named_parameters())
    if (parameter.first == "head.weight") parameter.second.data()[0] = std::numeric_limits<float>::quiet_NaN();
  check_error([&] { trainer.fit(); },
              {"loss became nan at step 7", "epoch 2, batch 1 of 6", "diverged.safetensors still holds step 6"});
  CHECK(trainer.global_step() == 6);
  CHECK(read_text(options.checkpoint) == checkpoint_before);
  CHECK(read_text(options.csv) == csv_before);
}

TEST_CASE("the live progress line never reaches the terminal's last column, and keeps what matters most") {
  train::ProgressState s{.epoch = 3, .epochs = 10, .step = 120, .steps = 390, .loss = 1.23456,
                         .images_per_second = 1234.5, .eta_seconds = 754.0};
  const std::string full = train::progress_line(s, 200);
  CHECK(full.find("epoch 3/10 [") == 0);
  CHECK(full.find("] step 120/390  loss 1.2346  1234.5 img/s  ETA 12:34") != std::string::npos);
  CHECK(full.size() == 88);  // a 24-character bar: wider than an 80-column terminal before the fix
  const std::string at80 = train::progress_line(s, 79);
  CHECK(at80.size() <= 79);
  CHECK(at80.find("[") != std::string::npos);
  CHECK(at80.find("ETA 12:34") != std::string::npos);
  const std::string at60 = train::progress_line(s, 59);
  CHECK(at60 == "epoch 3/10 step 120/390  loss 1.2346  ETA 12:34");
  CHECK(train::progress_line(s, 30) == "epoch 3/10 step 120/390");
  CHECK(train::progress_line(s, 8) == "epoch 3/");
  train::ProgressState big{.epoch = 1000, .epochs = 1000, .step = 123456, .steps = 390000, .loss = 12345.678,
                           .images_per_second = 123456.7, .eta_seconds = 360000.0};
  for (const auto& state : {s, big})
    for (int width = 1; width <= 160; ++width)
      CHECK(train::progress_line(state, width - 1).size() <= static_cast<size_t>(width - 1));
  CHECK(train::progress_line(s, 1000, false).find('[') == std::string::npos);

  // What Progress draws on a 50-column terminal: each redraw after "\r\033[K" fits in 49 characters.
  std::ostringstream out;
  train::Progress progress(out, true, std::chrono::seconds(30), 50);
  s.step = s.steps;  // the last step of an epoch is always drawn
  progress.update(s);
  const std::string drawn = out.str();
  REQUIRE(drawn.rfind("\r\033[K", 0) == 0);
  CHECK(drawn.size() - 4 <= 49);

  if (::isatty(STDOUT_FILENO) == 0) {  // the terminal's own width wins when there is one
    ::setenv("COLUMNS", "55", 1);
    CHECK(train::terminal_width() == 55);
    ::setenv("COLUMNS", "wide", 1);
    CHECK(train::terminal_width() == 80);
    ::unsetenv("COLUMNS");
    CHECK(train::terminal_width() == 80);
  }
}

TEST_CASE("errors name the program's flags when it maps the option fields to them") {
  train::TrainerOptions options;
  options.label_smoothing = 1.5;
  check_error([&] { options.validate(); }, {"TrainerOptions: label_smoothing must be in [0, 1), got 1.5"});
  options.field_names = {{"label_smoothing", "--label-smoothing"}, {"lr", "--lr"}};
  try {
    options.validate();
    FAIL("validate accepted label_smoothing 1.5");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("--label-smoothing must be in [0, 1), got 1.5") != std::string::npos);
    CHECK(std::string(e.what()).find("TrainerOptions") == std::string::npos);
  }

  // resume names the flag of a dataset size that differs
  const Reference& ref = reference();
  train::TrainerOptions other = ref.options;
  other.checkpoint.clear();
  other.csv.clear();
  other.field_names = {{"train_samples", "--train-limit"}};
  Model model(tiny_config(), 3);
  Trainer trainer(model, colour_dataset(30, 1), train_transform(), colour_dataset(9, 2), eval_transform(), other);
  check_error([&] { trainer.resume(ref.options.checkpoint); }, {"--train-limit: checkpoint 26, this run 30"});
}
