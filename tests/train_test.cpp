// Tests of train/: a resumed run reproduces the uninterrupted one bit for bit (from an epoch boundary and from inside
// an epoch), resume refuses other settings, the schedule and weight-decay split of the recipe, train_step, evaluate,
// spread_subset, the CSV and progress output, and that training learns a simple task.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <tessera/io/checkpoint.hpp>
#include <tessera/tessera.hpp>

#include "test_helpers.hpp"
#include <tessera/train/classifier_info.hpp>
#include <tessera/train/subset.hpp>
#include <tessera/train/trainer.hpp>

namespace fs = std::filesystem;
using namespace tessera;

namespace {

using test::check_error;
using test::colour_dataset;
using test::read_lines;
using test::TempDir;
using test::without_timing;

// Dropout and drop-path on, so a resumed run also depends on the model's generator being restored.
nn::ViTConfig tiny_config() { return test::tiny_vit_config_with_dropout(); }
data::Compose train_transform() { return test::colour_train_transform(); }
data::Compose eval_transform() { return test::colour_eval_transform(); }

train::TrainerOptions tiny_options() {
  train::TrainerOptions o;
  o.epochs = 3;
  o.batch_size = 4;  // 26 samples: 6 steps per epoch, 2 samples dropped
  o.lr = 3e-3;
  o.min_lr = 1e-4;
  o.seed = 11;
  o.eval_batch_size = 5;
  o.workers = 1;
  o.output = nullptr;
  return o;
}

using Model = nn::VisionTransformer<float>;
using Trainer = train::Trainer<Model>;

Trainer make_trainer(Model& model, const train::TrainerOptions& options) {
  return Trainer(model, colour_dataset(26, 1), train_transform(), colour_dataset(9, 2), eval_transform(), options);
}

void check_same_weights(const Model& a, const Model& b) {
  for (const auto& [key, tensor] : a.state_dict()) {
    const auto& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
    const Tensor<float> other = b.state_dict().at(name);
    CHECK_MESSAGE(std::memcmp(tensor.data(), other.data(), sizeof(float) * static_cast<size_t>(tensor.numel())) == 0,
                  name);
  }
}

// The uninterrupted 3-epoch run, shared by the resume tests.
struct Reference {
  TempDir dir;
  std::vector<train::EpochRow> rows;
  std::vector<std::string> csv;
  Model model{tiny_config(), 3};
  Reference() {
    train::TrainerOptions options = tiny_options();
    options.csv = dir / "a.csv";
    options.checkpoint = dir / "a.safetensors";
    Trainer trainer = make_trainer(model, options);
    rows = trainer.fit();
    csv = read_lines(options.csv);
  }
};

const Reference& reference() {
  static const Reference run;
  return run;
}

// Trains to `stop_after` steps, then resumes in a new model (other init, no data workers) to the end; the rows
// and the CSV must equal the uninterrupted run's in every non-timing column, and so must the final weights.
void check_resume_reproduces(int64_t stop_after) {
  const Reference& ref = reference();
  REQUIRE(ref.rows.size() == 3);
  TempDir dir;
  train::TrainerOptions options = tiny_options();
  options.csv = dir / "b.csv";
  options.checkpoint = dir / "b.safetensors";
  options.max_steps = stop_after;
  {
    Model model(tiny_config(), 3);
    Trainer first = make_trainer(model, options);
    const auto rows = first.fit();
    CHECK(first.global_step() == stop_after);
    REQUIRE(!rows.empty());
    CHECK(rows.back().step == stop_after);
  }
  options.max_steps = 0;
  options.workers = 0;
  Model model(tiny_config(), 1234);
  Trainer second = make_trainer(model, options);
  second.resume(options.checkpoint);
  const auto rows = second.fit();
  REQUIRE(!rows.empty());
  CHECK(rows.back().epoch == 3);

  // The rows computed after resuming, bit-exact; the CSV, also holding the rows of before, text-identical.
  REQUIRE(rows.size() <= ref.rows.size());
  const size_t offset = ref.rows.size() - rows.size();
  for (size_t i = 0; i < rows.size(); ++i) {
    const train::EpochRow& expected = ref.rows[offset + i];
    CAPTURE(i);
    CHECK(rows[i].epoch == expected.epoch);
    CHECK(rows[i].step == expected.step);
    CHECK(rows[i].train_loss == expected.train_loss);
    CHECK(rows[i].test_accuracy == expected.test_accuracy);
  }
  CHECK(second.csv().rows().size() == ref.rows.size());
  const auto csv = read_lines(options.csv);
  REQUIRE(csv.size() == ref.csv.size());
  CHECK(csv[0] == train::kCsvHeader);
  for (size_t i = 1; i < csv.size(); ++i) CHECK(without_timing(csv[i]) == without_timing(ref.csv[i]));
  check_same_weights(ref.model, model);
}

}  // namespace

TEST_CASE("resuming from an epoch's checkpoint reproduces the uninterrupted run bit for bit") {
  check_resume_reproduces(6);   // after epoch 1
  check_resume_reproduces(12);  // after epoch 2
}

TEST_CASE("resuming from inside an epoch (a run stopped by max_steps) reproduces the uninterrupted run") {
  check_resume_reproduces(8);
}

TEST_CASE("the uninterrupted run's checkpoint and CSV describe where it ended") {
  const Reference& ref = reference();
  REQUIRE(ref.csv.size() == 4);
  CHECK(ref.csv[0] == "epoch,step,train_loss,test_acc,img_per_s,elapsed_s");
  CHECK(ref.csv[3].rfind("3,18,", 0) == 0);
  const io::CheckpointState state = io::read_checkpoint_state(ref.dir / "a.safetensors");
  CHECK(state.epoch == 3);
  CHECK(state.global_step == 18);
  CHECK(state.trainer.at("batch_in_epoch") == 0);
  CHECK(state.trainer.at("recipe").at("train_samples") == 26);
  CHECK(state.schedule.at("warmup_steps") == 6);
  CHECK(state.schedule.at("total_steps") == 18);
  CHECK(state.generators.count("model") == 1);
  for (const auto& row : ref.rows) CHECK(std::isfinite(row.train_loss));
  CHECK(ref.rows[2].train_loss < ref.rows[0].train_loss);
}

TEST_CASE("resume refuses a checkpoint of other settings, naming them") {
  const Reference& ref = reference();
  Model model(tiny_config(), 3);
  train::TrainerOptions options = tiny_options();
  options.lr = 1e-3;
  options.epochs = 4;
  Trainer trainer = make_trainer(model, options);
  check_error([&] { trainer.resume(ref.dir / "a.safetensors"); },
              {"a.safetensors", "lr: checkpoint 0.003, this run 0.001", "epochs: checkpoint 3, this run 4"});

  Trainer other_data(model, colour_dataset(30, 1), train_transform(), colour_dataset(9, 2), eval_transform(),
                     tiny_options());
  check_error([&] { other_data.resume(ref.dir / "a.safetensors"); }, {"train_samples: checkpoint 26, this run 30"});

  nn::ViTConfig wider = tiny_config();
  wider.embed_dim = 12;
  Model wide(wider, 3);
  Trainer wide_trainer = make_trainer(wide, tiny_options());
  check_error([&] { wide_trainer.resume(ref.dir / "a.safetensors"); }, {"a.safetensors", "embed_dim"});
}

TEST_CASE("resume's message about other settings stays short whatever the checkpoint's settings hold") {
  const Reference& ref = reference();
  io::CheckpointState state = io::read_checkpoint_state(ref.dir / "a.safetensors");
  nlohmann::json& recipe = state.trainer["recipe"];
  recipe["lr"] = std::vector<double>(10000, 0.5);
  recipe["label_smoothing"] = std::string(100000, 'x');
  recipe[std::string(5000, 'k')] = 1;
  for (int i = 0; i < 12; ++i) {
    const std::string name = (i < 10 ? "unknown_0" : "unknown_") + std::to_string(i);
    recipe[name] = {{"deep", {{"deeper", std::vector<int>(1000, i)}}}};
  }
  TempDir dir;
  Model model(tiny_config(), 3);
  io::save_checkpoint(dir / "big.safetensors", model, nullptr, state);
  Trainer trainer = make_trainer(model, tiny_options());
  std::string message;
  try {
    trainer.resume(dir / "big.safetensors");
  } catch (const Error& e) {
    message = e.what();
  }
  // 15 settings differ: in name order the long name, label_smoothing, lr and unknown_00 to unknown_04, then a count.
  CHECK(message.find("big.safetensors") != std::string::npos);
  CHECK(message.find("lr: checkpoint [0.5,0.5,") != std::string::npos);
  CHECK(message.find(", this run 0.003") != std::string::npos);
  CHECK(message.find("label_smoothing: checkpoint \"xxxx") != std::string::npos);
  CHECK(message.find("unknown_04: checkpoint {\"deep\":{\"deeper\":[...]}}, this run (absent)") != std::string::npos);
  CHECK(message.find("unknown_05") == std::string::npos);
  CHECK(message.find("; and 7 more") != std::string::npos);
  CHECK(message.find(std::string(200, 'k')) == std::string::npos);
  CHECK_MESSAGE(message.size() < 2500, message.size());
}

TEST_CASE("a finished run has nothing left to do; max_steps past the end changes nothing") {
  const Reference& ref = reference();
  Model model(tiny_config(), 3);
  train::TrainerOptions options = tiny_options();
  options.max_steps = 100;
  Trainer trainer = make_trainer(model, options);
  trainer.resume(ref.dir / "a.safetensors");
  CHECK(trainer.fit().empty());
  check_same_weights(ref.model, model);
}

TEST_CASE("the schedule is per-step linear warmup over warmup_epochs, then cosine to min_lr") {
  Model model(tiny_config(), 3);
  train::TrainerOptions options = tiny_options();
  options.warmup_epochs = 1.0;
  Trainer trainer = make_trainer(model, options);
  REQUIRE(trainer.steps_per_epoch() == 6);
  const auto& s = trainer.schedule();
  CHECK(s.warmup_steps() == 6);
  CHECK(s.total_steps() == 18);
  constexpr double kPi = 3.14159265358979323846;
  for (int64_t step = 0; step < 18; ++step) {
    const double expected = step < 6 ? 3e-3 * static_cast<double>(step + 1) / 6.0
                                     : 1e-4 + (3e-3 - 1e-4) * 0.5 * (1.0 + std::cos(kPi * static_cast<double>(step - 6) / 12.0));
    CHECK(s(step) == doctest::Approx(expected).epsilon(1e-12));
  }
  trainer.fit();
  CHECK(trainer.optimizer().lr() == s(17));  // the rate used by the last step
}

TEST_CASE("weight decay applies to weights of rank >= 2 except pos_embed and cls_token") {
  Model model(tiny_config(), 3);
  Trainer trainer = make_trainer(model, tiny_options());
  const auto& groups = trainer.optimizer().param_groups();
  REQUIRE(groups.size() == 2);
  CHECK(*groups[0].weight_decay == 0.05);
  CHECK(*groups[1].weight_decay == 0.0);
  for (const auto& [key, p] : groups[0].params) {
    const auto& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
    CAPTURE(name);
    CHECK(p.rank() >= 2);
    CHECK(name != "pos_embed");
    CHECK(name != "cls_token");
  }
  std::vector<std::string> plain;
  for (const auto& [name, p] : groups[1].params) plain.push_back(name);
  CHECK(std::find(plain.begin(), plain.end(), "pos_embed") != plain.end());
  CHECK(std::find(plain.begin(), plain.end(), "cls_token") != plain.end());
  CHECK(std::find(plain.begin(), plain.end(), "blocks.0.norm1.weight") != plain.end());
  CHECK(std::find(plain.begin(), plain.end(), "head.bias") != plain.end());
  CHECK(groups[0].params.size() + groups[1].params.size() == model.named_parameters().size());
}

TEST_CASE("train_step returns the loss of the forward before the update and updates every parameter") {
  nn::ViTConfig config = tiny_config();
  config.proj_drop_rate = 0.0;
  config.drop_path_rate = 0.0;
  Model model(config, 3);
  optim::AdamW<float> optimizer(optim::param_groups_weight_decay(model.named_parameters(), 0.05));
  Generator gen(4);
  const auto images = Tensor<float>::normal(Shape{5, 3, 8, 8}, 0.0f, 1.0f, gen);
  const std::vector<int64_t> labels = {0, 1, 2, 1, 0};
  float expected = 0.0f;
  {
    NoGradGuard no_grad;
    expected = ops::cross_entropy(model.forward(images), labels, 0.1).item();
  }
  const auto before = model.state_dict();
  std::vector<Tensor<float>> copies;
  for (const auto& [name, t] : before) copies.push_back(t.clone());
  train::StepTimes times;
  times.forward_ms = -1.0;
  const float loss = train::train_step(model, optimizer, images, labels, 0.1, &times);
  CHECK(loss == expected);
  CHECK(times.forward_ms >= 0.0);
  CHECK(times.backward_ms >= 0.0);
  CHECK(times.optimizer_ms >= 0.0);
  size_t i = 0;
  for (const auto& [key, t] : model.state_dict()) {
    const auto& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
    CAPTURE(name);
    CHECK(std::memcmp(t.data(), copies[i].data(), sizeof(float) * static_cast<size_t>(t.numel())) != 0);
    ++i;
  }
}

TEST_CASE("evaluate counts top-1 hits in eval mode and restores the training mode") {
  Model model(tiny_config(), 3);
  const auto test_set = colour_dataset(7, 5);
  data::DataLoader loader(test_set, eval_transform(), {.batch_size = 3, .shuffle = false, .num_workers = 0});
  model.train();
  const train::Accuracy accuracy = train::evaluate(model, loader);
  CHECK(model.is_training());
  CHECK(accuracy.total == 7);
  model.eval();
  NoGradGuard no_grad;
  int64_t correct = 0;
  for (int64_t i = 0; i < 7; ++i) {
    const data::Sample sample = test_set->get(i);
    data::FloatImage image = eval_transform()(sample.image, default_generator());
    Tensor<float> x(Shape{1, 3, 8, 8});
    std::memcpy(x.data(), image.data(), sizeof(float) * 192);
    const Tensor<float> logits = model.forward(x);
    correct += train::argmax(logits.data(), 3) == sample.label;
  }
  CHECK(accuracy.correct == correct);
  CHECK(accuracy.percent() == doctest::Approx(100.0 * static_cast<double>(correct) / 7.0));
  const float values[] = {1.0f, 3.0f, 3.0f, -1.0f};
  CHECK(train::argmax(values, 4) == 1);
}

TEST_CASE("training learns the brightest-channel rule") {
  Model model(tiny_config(), 3);
  train::TrainerOptions options = tiny_options();
  options.epochs = 8;
  options.batch_size = 16;
  options.warmup_epochs = 0.5;
  options.lr = 1e-2;
  Trainer trainer(model, colour_dataset(320, 6), train_transform(), colour_dataset(90, 7), eval_transform(), options);
  const double before = trainer.evaluate_test().percent();
  const auto rows = trainer.fit();
  REQUIRE(rows.size() == 8);
  MESSAGE("test accuracy " << before << "% -> " << rows.back().test_accuracy << "%");
  CHECK(rows.back().test_accuracy >= 80.0);
  CHECK(rows.back().train_loss < rows.front().train_loss);
}

TEST_CASE("the trainer reports progress and per-epoch lines, and checks classes and options") {
  TempDir dir;
  Model model(tiny_config(), 3);
  std::ostringstream out;
  train::TrainerOptions options = tiny_options();
  options.epochs = 2;
  options.output = &out;
  options.live_progress = false;
  options.checkpoint = dir / "c.safetensors";
  Trainer trainer = make_trainer(model, options);
  const std::string summary = trainer.summary();
  CHECK(summary.find("trainable") != std::string::npos);
  CHECK(summary.find("6 per epoch") != std::string::npos);
  trainer.fit();
  const std::string text = out.str();
  CHECK(text.find("epoch 1/2 step 6/6") != std::string::npos);
  CHECK(text.find("test_acc") != std::string::npos);
  CHECK(text.find("data wait") != std::string::npos);
  CHECK(text.find("saved " + (dir / "c.safetensors").string()) != std::string::npos);

  nn::ViTConfig five = tiny_config();
  five.num_classes = 5;
  Model wrong(five, 1);
  check_error([&] { make_trainer(wrong, tiny_options()); }, {"3 classes", "5 outputs"});
  train::TrainerOptions bad = tiny_options();
  bad.min_lr = 1.0;
  check_error([&] { make_trainer(model, bad); }, {"min_lr"});
  bad = tiny_options();
  bad.batch_size = 27;
  check_error([&] { make_trainer(model, bad); }, {"drop_last", "27"});
}

TEST_CASE("spread_subset takes samples spread evenly over the dataset") {
  const auto base = colour_dataset(10, 1);
  const auto subset = train::spread_subset(base, 3);
  REQUIRE(subset->size() == 3);
  const int64_t expected[] = {0, 3, 6};
  for (int64_t i = 0; i < 3; ++i) {
    CHECK(subset->label(i) == base->label(expected[i]));
    CHECK(subset->get(i).image.pixels == base->get(expected[i]).image.pixels);
    CHECK(subset->sample_name(i) == base->sample_name(expected[i]));
  }
  CHECK(subset->class_names() == base->class_names());
  CHECK(subset->description().find("3 samples of colours") == 0);
  CHECK(train::spread_subset(base, 0) == base);
  CHECK(train::spread_subset(base, 10) == base);
  CHECK(train::spread_subset(base, 99) == base);
  check_error([&] { train::spread_subset(base, -1); }, {"spread_subset", "-1"});
  check_error([&] { subset->get(3); }, {"Subset::get", "3"});
  check_error([&] { train::Subset(base, {0, 10}); }, {"Subset", "10"});
}

TEST_CASE("split_validation holds out the last samples of each class, keeping the class balance") {
  // 40 samples, labels in blocks (as an image folder lists them): 0 x16, 1 x12, 2 x12.
  std::vector<data::Image> images;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < 40; ++i) {
    images.emplace_back(2, 2, 3);
    images.back().pixels[0] = static_cast<uint8_t>(i);
    labels.push_back(i < 16 ? 0 : i < 28 ? 1 : 2);
  }
  const auto base = std::make_shared<data::InMemoryDataset>(std::move(images), std::move(labels),
                                                            std::vector<std::string>{"a", "b", "c"}, "blocks");
  const train::ValidationSplit split = train::split_validation(base, 10);
  // Shares: 10·16/40 = 4, 10·12/40 = 3, 3; the validation set is samples 12-15, 25-27, 37-39.
  REQUIRE(split.validation->size() == 10);
  REQUIRE(split.train->size() == 30);
  const int64_t held_out[] = {12, 13, 14, 15, 25, 26, 27, 37, 38, 39};
  for (int64_t i = 0; i < 10; ++i) CHECK(split.validation->get(i).image.pixels[0] == held_out[i]);
  std::vector<int> seen(40, 0);
  for (int64_t i = 0; i < 30; ++i) ++seen[split.train->get(i).image.pixels[0]];
  for (int64_t i = 0; i < 10; ++i) ++seen[split.validation->get(i).image.pixels[0]];
  for (int count : seen) CHECK(count == 1);
  check_error([&] { train::split_validation(base, 40); }, {"split_validation", "between 1 and 39", "40"});
  check_error([&] { train::split_validation(base, 0); }, {"split_validation"});
}

TEST_CASE("a time budget's step count: the largest run whose steps, evaluations and checkpoints fit") {
  // Epoch ends strictly before the last step, after step 20, with 30 steps per epoch.
  CHECK(train::epoch_ends_before(90, 20, 30, 1).checkpoints == 2);  // ends at 30, 60
  CHECK(train::epoch_ends_before(91, 20, 30, 1).checkpoints == 3);  // and 90
  CHECK(train::epoch_ends_before(91, 20, 30, 2).evaluations == 1);  // only epoch 2's end (step 60)
  CHECK(train::epoch_ends_before(91, 20, 30, 0).evaluations == 0);
  CHECK(train::epoch_ends_before(20, 20, 30, 1).checkpoints == 0);
  CHECK(train::epoch_ends_before(121, 60, 30, 2).evaluations == 1);  // epochs 3 and 4 end after step 60: only 4

  // 90 s available. With an evaluation every epoch: 90 steps cost 70 + 3 evaluations·5 + 3 checkpoints·1 = 88 s,
  // 91 steps 71 + 4·5 + 4·1 = 95 s.
  train::BudgetInputs in{.budget = 100.0, .elapsed = 10.0, .steps_done = 20, .step = 1.0, .evaluation = 5.0,
                         .checkpoint = 1.0, .steps_per_epoch = 30, .eval_every = 1, .reserve_fraction = 0.0,
                         .exit_seconds = 0.0};
  CHECK(train::seconds_to_finish(in, 90) == doctest::Approx(88.0));
  CHECK(train::seconds_to_finish(in, 91) == doctest::Approx(95.0));
  CHECK(train::plan_total_steps(in) == 90);
  // Evaluating only at the end: 101 steps cost 81 + 5 + 4 = 90 s, 102 steps 91 s.
  in.eval_every = 0;
  CHECK(train::plan_total_steps(in) == 101);
  // A reserve of 10% leaves 100·0.9 - 10 = 80 s, the exit takes 5: 87 steps cost 67 + 5 + 3·1 + 5 = 80 s.
  in.reserve_fraction = 0.1;
  in.exit_seconds = 5.0;
  CHECK(train::plan_total_steps(in) == 87);
  // The recipe's warmup, unless it is over a fifth of the planned run: then a fifth, never before the planning step.
  CHECK(train::budget_warmup_steps(390, 5000, 24) == 390);
  CHECK(train::budget_warmup_steps(100, 300, 24) == 60);
  CHECK(train::budget_warmup_steps(176, 75, 24) == 24);
  CHECK(train::budget_warmup_steps(176, 20, 24) == 20);
  // A budget already spent plans no further steps.
  in.elapsed = 200.0;
  CHECK(train::plan_total_steps(in) == 20);
  in.step = 0.0;
  check_error([&] { train::plan_total_steps(in); }, {"plan_total_steps"});
}

// tiny_options with a 12-s budget, no evaluation on the way and a linear decay to 0: the budgeted runs below.
train::TrainerOptions budgeted_tiny_options() {
  train::TrainerOptions options = tiny_options();
  options.time_budget_minutes = 0.2;  // 12 s
  options.eval_every = 0;
  options.decay = optim::Decay::linear;
  options.min_lr = 0.0;
  return options;
}

TEST_CASE("a time-budgeted run plans its length from its first steps and lays the schedule over it") {
  TempDir dir;
  train::TrainerOptions options = budgeted_tiny_options();
  options.checkpoint = dir / "budget.safetensors";
  options.csv = dir / "budget.csv";
  const auto start = std::chrono::steady_clock::now();
  options.budget_start = start;
  Model model(tiny_config(), 3);
  Trainer trainer = make_trainer(model, options);
  CHECK(trainer.total_steps() == 0);  // not planned yet
  const auto rows = trainer.fit();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(trainer.budget_plan().has_value());
  const train::BudgetPlan plan = *trainer.budget_plan();
  CHECK(plan.planned_at_step == 24);
  CHECK(plan.total_steps > 24);
  // The whole plan, or less when the machine slowed down after planning and the guard stopped the run.
  CHECK(trainer.global_step() <= plan.total_steps);
  CHECK(trainer.global_step() > plan.planned_at_step);
  CHECK(trainer.schedule().total_steps() == plan.total_steps);
  CHECK(trainer.schedule().decay() == optim::Decay::linear);
  // Linear decay to 0 over the planned steps, from the warmup's end or, once the run re-planned at an epoch end,
  // from that step's learning rate a: the last step ran at a·1/(steps after the anchor).
  CHECK(trainer.schedule().warmup_steps() == plan.warmup_steps);
  const int64_t anchor = plan.replans > 0 ? plan.anchor_step : plan.warmup_steps;
  CHECK(trainer.schedule()(plan.total_steps - 1) ==
        doctest::Approx(trainer.schedule()(anchor) / static_cast<double>(plan.total_steps - anchor)));
  CHECK(trainer.schedule()(plan.total_steps) == 0.0);
  // Only the last row was evaluated; the others have an empty accuracy field.
  REQUIRE(!rows.empty());
  CHECK(std::isfinite(rows.back().test_accuracy));
  for (size_t i = 0; i + 1 < rows.size(); ++i) CHECK(std::isnan(rows[i].test_accuracy));
  const auto csv = read_lines(options.csv);
  REQUIRE(csv.size() == rows.size() + 1);
  if (rows.size() > 1) CHECK(csv[1].find(",,") != std::string::npos);
  // Not a speed test: the run's own guard keeps it near its budget even on a loaded machine.
  CHECK(seconds < 12.0 * 1.02 + 2.0);
  // The checkpoint carries the plan, so a resumed run keeps the same length.
  const io::CheckpointState state = io::read_checkpoint_state(options.checkpoint);
  CHECK(state.trainer.at("budget_plan").at("total_steps") == plan.total_steps);
  CHECK(state.schedule.at("total_steps") == plan.total_steps);
}

// A dataset whose first `slow` samples each take `delay` to read: a machine that is slow while a budgeted run
// measures its first steps, and fast afterwards.
class SlowStartDataset final : public data::Dataset {
 public:
  SlowStartDataset(std::shared_ptr<const data::Dataset> base, int slow, std::chrono::milliseconds delay)
      : base_(std::move(base)), slow_left_(slow), delay_(delay) {}
  int64_t size() const override { return base_->size(); }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }
  data::Sample get(int64_t index) const override {
    if (slow_left_.fetch_sub(1) > 0) std::this_thread::sleep_for(delay_);
    return base_->get(index);
  }
  int64_t label(int64_t index) const override { return base_->label(index); }
  std::string sample_name(int64_t index) const override { return base_->sample_name(index); }
  std::string description() const override { return "slow start of " + base_->description(); }

 private:
  std::shared_ptr<const data::Dataset> base_;
  mutable std::atomic<int> slow_left_;
  std::chrono::milliseconds delay_;
};

TEST_CASE("a budgeted run re-plans at epoch ends from the pace since its plan, re-laying the rest of the schedule") {
  TempDir dir;
  train::TrainerOptions options = budgeted_tiny_options();
  options.csv = dir / "replan.csv";
  const auto start = std::chrono::steady_clock::now();
  options.budget_start = start;
  Model model(tiny_config(), 3);
  // 10 ms a sample for the first 60 steps of 4 (the plan is made at step 24, at that pace), then the tiny model's
  // own speed, several times faster: a plan kept from the first steps would end the run after a fraction of its
  // budget.
  const auto train_set =
      std::make_shared<SlowStartDataset>(colour_dataset(26, 1), 240, std::chrono::milliseconds(10));
  Trainer trainer(model, train_set, train_transform(), colour_dataset(9, 2), eval_transform(), options);
  const auto rows = trainer.fit();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(trainer.budget_plan().has_value());
  const train::BudgetPlan plan = *trainer.budget_plan();
  CHECK(plan.planned_at_step == 24);
  CHECK(plan.replans >= 1);
  CHECK(plan.anchor_step > plan.planned_at_step);
  CHECK(plan.anchor_step % 6 == 0);  // at an epoch end (6 steps an epoch)
  CHECK(trainer.global_step() <= plan.total_steps);
  // The rest of the decay, re-laid from the last re-plan: a straight line from its learning rate to 0 at the end.
  const optim::WarmupDecaySchedule& schedule = trainer.schedule();
  CHECK(schedule.total_steps() == plan.total_steps);
  const double at_anchor = schedule(plan.anchor_step);
  CHECK(at_anchor > 0.0);
  CHECK(at_anchor < options.lr);
  const int64_t middle = plan.anchor_step + (plan.total_steps - plan.anchor_step) / 2;
  CHECK(schedule(middle) == doctest::Approx(at_anchor * static_cast<double>(plan.total_steps - middle) /
                                            static_cast<double>(plan.total_steps - plan.anchor_step)));
  CHECK(schedule(plan.total_steps) == 0.0);
  // The budget was used (a plan kept from the slow start would have ended after a few seconds) and not overrun.
  REQUIRE(!rows.empty());
  CHECK(std::isfinite(rows.back().test_accuracy));
  CHECK(seconds > 12.0 * 0.6);
  CHECK(seconds < 12.0 * 1.02 + 2.0);
}

TEST_CASE("a budgeted run resumed after its plan keeps the plan") {
  TempDir dir;
  train::TrainerOptions options = tiny_options();
  options.time_budget_minutes = 10.0;  // far more than the steps run here: the plan is long
  options.eval_every = 2;
  options.checkpoint = dir / "budget.safetensors";
  options.csv = dir / "budget.csv";
  options.max_steps = 27;  // stops inside epoch 5, after planning at step 24
  int64_t planned = 0;
  {
    Model model(tiny_config(), 3);
    Trainer first = make_trainer(model, options);
    first.fit();
    REQUIRE(first.budget_plan().has_value());
    planned = first.budget_plan()->total_steps;
    CHECK(planned > 27);
    CHECK(first.global_step() == 27);
  }
  options.max_steps = 33;
  Model model(tiny_config(), 5);
  Trainer second = make_trainer(model, options);
  second.resume(options.checkpoint);
  REQUIRE(second.budget_plan().has_value());
  CHECK(second.budget_plan()->total_steps == planned);
  CHECK(second.schedule().total_steps() == planned);
  second.fit();
  CHECK(second.global_step() == 33);
  // The CSV parses back, including rows of epochs that were not evaluated (eval_every 2).
  train::CsvLog reread(options.csv);
  reread.load_existing(1000);
  CHECK(reread.rows().size() == second.csv().rows().size());
  CHECK(std::isnan(reread.rows().front().test_accuracy));
  CHECK(std::isfinite(reread.rows().back().test_accuracy));  // the run's stop by max_steps evaluates
}

TEST_CASE("linear decay: warmup, then a straight line from lr to min_lr") {
  const optim::WarmupDecaySchedule schedule(1.0, 12, 2, 0.1, optim::Decay::linear);
  CHECK(schedule(0) == doctest::Approx(0.5));
  CHECK(schedule(1) == doctest::Approx(1.0));
  CHECK(schedule(2) == doctest::Approx(1.0));
  CHECK(schedule(7) == doctest::Approx(0.1 + 0.9 * 0.5));
  CHECK(schedule(12) == doctest::Approx(0.1));
  CHECK(schedule(50) == doctest::Approx(0.1));
}

TEST_CASE("a schedule continued over another length goes on from where it stands, without a jump, to min_lr") {
  const optim::WarmupDecaySchedule base(1.0, 110, 10, 0.1, optim::Decay::linear);
  // Without a re-plan, the closed form: min_lr + (lr - min_lr)·(1 - (s - warmup)/(total - warmup)).
  CHECK(base(37) == doctest::Approx(0.1 + 0.9 * (1.0 - 27.0 / 100.0)).epsilon(1e-15));
  CHECK(base.anchor_step() == 10);
  CHECK(base.anchor_progress() == 0.0);
  // At step 60 the decay is half done (lr 0.55); laid over 210 steps instead of 110 from there: a straight line
  // from 0.55 at step 60 to 0.1 at step 210.
  const optim::WarmupDecaySchedule longer = base.continued(60, 210);
  for (const int64_t s : {0, 5, 9, 10, 30, 59, 60}) {
    CAPTURE(s);
    CHECK(longer(s) == doctest::Approx(base(s)));  // the steps already taken keep their learning rates
  }
  CHECK(longer.anchor_step() == 60);
  CHECK(longer.progress_at(60) == doctest::Approx(0.5));
  CHECK(longer(135) == doctest::Approx(0.1 + 0.45 * 0.5));
  CHECK(longer(209) > 0.1);
  CHECK(longer(210) == 0.1);
  CHECK(longer(500) == 0.1);
  // Shorter: the same 0.55 at step 60, down to 0.1 at step 80.
  const optim::WarmupDecaySchedule shorter = base.continued(60, 80);
  CHECK(shorter(60) == doctest::Approx(0.55));
  CHECK(shorter(70) == doctest::Approx(0.1 + 0.45 * 0.5));
  CHECK(shorter(80) == 0.1);
  // Re-planned twice: the progress goes on from the last anchor (0.75 at step 135 of `longer`).
  const optim::WarmupDecaySchedule twice = longer.continued(135, 160);
  CHECK(twice.progress_at(135) == doctest::Approx(0.75));
  CHECK(twice(135) == doctest::Approx(longer(135)));
  CHECK(twice(145) == doctest::Approx(0.1 + 0.9 * (1.0 - (0.75 + 0.25 * 10.0 / 25.0))));
  CHECK(twice(160) == 0.1);
  // Cosine: the progress continues the same way.
  const optim::WarmupDecaySchedule cosine(1.0, 110, 10, 0.0, optim::Decay::cosine);
  const optim::WarmupDecaySchedule cosine_longer = cosine.continued(60, 210);
  CHECK(cosine_longer(60) == doctest::Approx(cosine(60)));
  CHECK(cosine_longer(135) == doctest::Approx(0.5 * (1.0 + std::cos(3.14159265358979323846 * 0.75))));
  CHECK(cosine_longer(210) == 0.0);
  // During the warmup nothing has decayed: the decay simply spans the new length.
  const optim::WarmupDecaySchedule early = base.continued(5, 210);
  CHECK(early(5) == base(5));
  CHECK(early(110) == doctest::Approx(0.1 + 0.9 * 0.5));
  CHECK(early.anchor_step() == 10);
  check_error([&] { (void)base.continued(60, 50); }, {"continued", "step 60", "total_steps 50"});
  check_error([&] { optim::WarmupDecaySchedule(1.0, 110, 10, 0.1, optim::Decay::linear, 5, 0.3); }, {"anchor"});
  check_error([&] { optim::WarmupDecaySchedule(1.0, 110, 10, 0.1, optim::Decay::linear, 60, 1.5); }, {"anchor"});
}

TEST_CASE("a re-plan measures the pace over at least an epoch and a tenth of the run") {
  CHECK(train::replan_window_steps(390, 13000) == 1300);  // a 60-minute fast run on a Zen 3: a tenth, 3.3 epochs
  CHECK(train::replan_window_steps(390, 1200) == 390);    // a short run: one epoch
  CHECK(train::replan_window_steps(6, 59) == 6);
}

TEST_CASE("a re-plan's length: the budget at the new pace, kept when the change is under half a percent") {
  // 10000 s, 1 s a step, nothing else: 10000 steps fit.
  train::BudgetInputs in{.budget = 10000.0, .elapsed = 0.0, .steps_done = 0, .step = 1.0, .evaluation = 0.0,
                         .checkpoint = 0.0, .steps_per_epoch = 100, .eval_every = 0, .reserve_fraction = 0.0,
                         .exit_seconds = 0.0};
  CHECK(train::plan_total_steps(in) == 10000);
  CHECK(train::replanned_total_steps(in, 9960) == 9960);    // 40 steps: under 0.5% of 9960
  CHECK(train::replanned_total_steps(in, 9900) == 10000);   // 100 steps: more
  CHECK(train::replanned_total_steps(in, 12000) == 10000);  // shorter too
  // At least one step more than those taken, which brings the final evaluation: never an end without one.
  in.steps_done = 500;
  in.elapsed = 20000.0;
  CHECK(train::plan_total_steps(in) == 500);
  CHECK(train::replanned_total_steps(in, 800) == 501);
  // The plan's JSON keeps the anchor once there was a re-plan; a plan without one reads back as before.
  train::BudgetPlan plan;
  plan.total_steps = 900;
  plan.warmup_steps = 50;
  plan.replans = 2;
  plan.anchor_step = 300;
  plan.anchor_progress = 0.25;
  const train::BudgetPlan back = train::BudgetPlan::from_json(plan.to_json());
  CHECK(back.replans == 2);
  CHECK(back.anchor_step == 300);
  CHECK(back.anchor_progress == 0.25);
  const train::BudgetPlan first = train::BudgetPlan::from_json({{"total_steps", 900}, {"warmup_steps", 50}});
  CHECK(first.replans == 0);
  CHECK(first.anchor_step == -1);
  CHECK(!train::BudgetPlan{}.to_json().contains("anchor_step"));
  check_error([] { (void)train::BudgetPlan::from_json({{"total_steps", 900}, {"anchor_step", 901}}); },
              {"anchor_step 901", "900 steps"});
}

TEST_CASE("with a weight average, the checkpoint's model is the average and a resumed run reproduces the run") {
  auto ema_options = [] {
    train::TrainerOptions options = tiny_options();
    options.ema_decay = 0.9;
    options.eval_flip = true;
    return options;
  };
  TempDir dir;
  train::TrainerOptions options = ema_options();
  options.checkpoint = dir / "a.safetensors";
  options.csv = dir / "a.csv";
  Model uninterrupted(tiny_config(), 3);
  std::vector<train::EpochRow> rows;
  {
    Trainer trainer = make_trainer(uninterrupted, options);
    rows = trainer.fit();
  }
  REQUIRE(rows.size() == 3);
  // The file's "model." tensors are the average, "trained." the weights the optimizer reached (in the model).
  const auto averaged = io::read_checkpoint_tensors<float>(options.checkpoint, "model.");
  const auto trained = io::read_checkpoint_tensors<float>(options.checkpoint, "trained.");
  REQUIRE(averaged.size() == trained.size());
  const Tensor<float> head_trained = trained.at("head.weight");
  const Tensor<float> head_average = averaged.at("head.weight");
  const Tensor<float> head_model = uninterrupted.state_dict().at("head.weight");
  CHECK(std::memcmp(head_trained.data(), head_model.data(), sizeof(float) * 24) == 0);
  CHECK(std::memcmp(head_average.data(), head_model.data(), sizeof(float) * 24) != 0);

  // load_trained_weights (train_cifar10 --evaluate --trained-weights) puts the weights the optimizer reached into a
  // model read from the checkpoint (the average): those of the run's model, every tensor.
  Model reread(tiny_config(), 5);
  io::load_model_weights(options.checkpoint, reread);
  CHECK(std::memcmp(reread.state_dict().at("head.weight").data(), head_average.data(), sizeof(float) * 24) == 0);
  train::load_trained_weights(options.checkpoint, reread);
  check_same_weights(uninterrupted, reread);
  // A checkpoint of a run without an average has no trained weights beside it: said, naming the file.
  check_error([&] { train::load_trained_weights(reference().dir / "a.safetensors", reread); },
              {"a.safetensors", "holds no \"trained.\" tensors", "without a weight average"});

  train::TrainerOptions resumed_options = ema_options();
  resumed_options.checkpoint = dir / "b.safetensors";
  resumed_options.csv = dir / "b.csv";
  resumed_options.max_steps = 8;
  {
    Model model(tiny_config(), 3);
    Trainer first = make_trainer(model, resumed_options);
    first.fit();
  }
  resumed_options.max_steps = 0;
  Model model(tiny_config(), 77);
  Trainer second = make_trainer(model, resumed_options);
  second.resume(resumed_options.checkpoint);
  const auto resumed_rows = second.fit();
  REQUIRE(!resumed_rows.empty());
  CHECK(resumed_rows.back().test_accuracy == rows.back().test_accuracy);
  CHECK(resumed_rows.back().train_loss == rows.back().train_loss);
  check_same_weights(uninterrupted, model);
  const auto averaged_again = io::read_checkpoint_tensors<float>(resumed_options.checkpoint, "model.");
  for (const auto& [key, tensor] : averaged) {
    const auto& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
    const Tensor<float> other = averaged_again.at(name);
    CHECK_MESSAGE(std::memcmp(tensor.data(), other.data(), sizeof(float) * static_cast<size_t>(tensor.numel())) == 0,
                  name);
  }
}

TEST_CASE("flip_horizontal mirrors each row; evaluate with flip sums the logits of both views") {
  Tensor<float> images({1, 2, 1, 3});
  for (int64_t i = 0; i < 6; ++i) images.data()[i] = static_cast<float>(i);
  const Tensor<float> flipped = train::flip_horizontal(images);
  const float expected[] = {2, 1, 0, 5, 4, 3};
  for (int64_t i = 0; i < 6; ++i) CHECK(flipped.data()[i] == expected[i]);
  check_error([&] { train::flip_horizontal(Tensor<float>({2, 3})); }, {"flip_horizontal", "(B, C, H, W)"});
}
