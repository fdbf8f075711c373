// train::Trainer data-parallel over MPI against one process (run by ctest as `mpirun -np N trainer_check DIR`): a
// tiny ViT on a synthetic dataset, 20 steps at one global batch. Checks that N ranks reach the losses, evaluation
// counts and final parameters of one process, hold bit-identical parameters and buffers, that rank 0 alone writes
// files, that a checkpoint written by N ranks resumes in one process and one written by one process resumes on N
// ranks (both ending where the uninterrupted run ends), that a stop request on one rank stops every rank at the same
// step, and that BatchNorm's running statistics (a conv stem) stay the same on every rank.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <tessera/distributed/distributed.hpp>
#include <tessera/tessera.hpp>
#include <tessera/train/trainer.hpp>

namespace dist = tessera::distributed;
namespace fs = std::filesystem;
using namespace tessera;

namespace {

// No dropout (masks are drawn per row of the local batch, so they differ from one process's); no qkv bias (the key
// part of its gradient is exactly zero in exact arithmetic, rounding noise in floats, which AdamW scales to full
// steps: no two summation orders agree on it).
nn::ViTConfig tiny_config() {
  nn::ViTConfig c;
  c.img_size = 8;
  c.patch_size = 4;
  c.num_classes = 3;
  c.embed_dim = 16;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_ratio = 2.0;
  c.qkv_bias = false;
  return c;
}

// n random 8x8 RGB images; the label is the channel drawn brighter (a learnable rule).
std::shared_ptr<const data::Dataset> colour_dataset(int64_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<data::Image> images;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) {
    const auto label = static_cast<int64_t>(gen.below(3));
    data::Image image(8, 8, 3);
    for (int64_t p = 0; p < 64; ++p)
      for (int64_t c = 0; c < 3; ++c)
        image.pixels[static_cast<size_t>(p * 3 + c)] = static_cast<uint8_t>(gen.below(c == label ? 256 : 160));
    images.push_back(std::move(image));
    labels.push_back(label);
  }
  return std::make_shared<data::InMemoryDataset>(std::move(images), std::move(labels),
                                                 std::vector<std::string>{"red", "green", "blue"}, "colours");
}

data::Compose train_transform() {
  return data::Compose{data::RandomCrop(8, 1), data::RandomHorizontalFlip(0.5), data::ToTensor(),
                       data::Normalize({0.4f, 0.4f, 0.4f}, {0.25f, 0.25f, 0.25f})};
}
data::Compose eval_transform() {
  return data::Compose{data::ToTensor(), data::Normalize({0.4f, 0.4f, 0.4f}, {0.25f, 0.25f, 0.25f})};
}

using Model = nn::VisionTransformer<float>;
using Trainer = train::Trainer<Model>;

const auto kTrain = colour_dataset(26, 1);  // 2 steps per epoch of 12, 2 samples dropped
const auto kTest = colour_dataset(10, 2);   // evaluation batches of 4, 4 and 2 (an empty shard with 3 ranks)

// 10 epochs of 2 steps at the global batch 12, evaluated after every epoch.
train::TrainerOptions options_for(dist::Communicator* comm) {
  train::TrainerOptions o;
  o.epochs = 10;
  o.batch_size = 12;
  o.lr = 3e-3;
  o.min_lr = 1e-4;
  o.seed = 11;
  o.eval_batch_size = 4;
  o.workers = 1;
  o.output = nullptr;
  o.stop_request = nullptr;
  o.communicator = comm;
  return o;
}

Trainer make_trainer(Model& model, const train::TrainerOptions& options) {
  return Trainer(model, kTrain, train_transform(), kTest, eval_transform(), options);
}

std::vector<Tensor<float>> tensors_of(const Model& model) {
  std::vector<Tensor<float>> out;
  for (const auto& [name, t] : model.state_dict()) out.push_back(t);
  return out;
}

struct Failures {
  int count = 0;
  int rank = 0;
  void check(bool ok, const std::string& what) {
    if (!ok) {
      ++count;
      std::fprintf(stderr, "FAILED (rank %d): %s\n", rank, what.c_str());
    }
  }
};

bool near(double a, double b, double relative) { return std::abs(a - b) <= relative * std::max(std::abs(b), 1e-12); }

// The largest relative difference (by norm) of a tensor of `a` from the same tensor of `b`.
double max_relative_difference(const Model& a, const Model& b) {
  double worst = 0.0;
  const auto sb = b.state_dict();
  for (const auto& [name, ta] : a.state_dict()) {
    const Tensor<float> tb = sb.at(name);
    double diff = 0.0, norm = 0.0;
    for (int64_t i = 0; i < ta.numel(); ++i) {
      const double d = static_cast<double>(ta.data()[i]) - static_cast<double>(tb.data()[i]);
      diff += d * d;
      norm += static_cast<double>(tb.data()[i]) * tb.data()[i];
    }
    worst = std::max(worst, std::sqrt(diff) / std::max(std::sqrt(norm), 1e-12));
  }
  return worst;
}

void check_rows(Failures& f, const std::string& what, const std::vector<train::EpochRow>& rows,
                const std::vector<train::EpochRow>& reference) {
  f.check(rows.size() <= reference.size() && !rows.empty(), what + ": " + std::to_string(rows.size()) + " rows");
  if (rows.empty() || rows.size() > reference.size()) return;
  const size_t offset = reference.size() - rows.size();
  for (size_t i = 0; i < rows.size(); ++i) {
    const train::EpochRow& r = rows[i];
    const train::EpochRow& e = reference[offset + i];
    const std::string at = what + ", epoch " + std::to_string(e.epoch);
    f.check(r.epoch == e.epoch && r.step == e.step, at + ": epoch/step " + std::to_string(r.epoch) + "/" +
                                                        std::to_string(r.step));
    f.check(near(r.train_loss, e.train_loss, 1e-5),
            at + ": train_loss " + std::to_string(r.train_loss) + " vs one process " + std::to_string(e.train_loss));
    f.check(r.test_accuracy == e.test_accuracy, at + ": test accuracy " + std::to_string(r.test_accuracy) +
                                                    " vs one process " + std::to_string(e.test_accuracy));
  }
}

int run(dist::Communicator& comm, const fs::path& work) {
  Failures f;
  f.rank = comm.rank();
  const int rank = comm.rank(), size = comm.size();
  // Each rank gets its own output folder: rank 0's files are the job's, the others' must stay empty.
  const fs::path shared = work / "rank0";
  const fs::path mine = work / ("rank" + std::to_string(rank));
  if (rank == 0) {
    fs::remove_all(work);
    fs::create_directories(work);
  }
  comm.barrier();
  fs::create_directories(mine);
  comm.barrier();

  // One process at the global batch, on every rank: the reference.
  Model reference(tiny_config(), 3);
  std::vector<train::EpochRow> reference_rows;
  {
    Trainer trainer = make_trainer(reference, options_for(nullptr));
    reference_rows = trainer.fit();
  }
  f.check(reference_rows.size() == 10, "the reference has 10 rows");

  // 1. N ranks, each from its own initialisation (rank 0's is broadcast), writing the CSV and checkpoints.
  {
    Model model(tiny_config(), rank == 0 ? 3 : 100 + static_cast<uint64_t>(rank));
    train::TrainerOptions options = options_for(&comm);
    options.csv = mine / "run.csv";
    options.checkpoint = mine / "run.safetensors";
    Trainer trainer = make_trainer(model, options);
    const auto rows = trainer.fit();
    check_rows(f, "N ranks", rows, reference_rows);
    const double difference = max_relative_difference(model, reference);
    f.check(difference <= 1e-5, "final parameters differ from one process by " + std::to_string(difference));
    f.check(dist::same_on_all_ranks(comm, dist::tensors_hash(tensors_of(model))),
            "parameters and buffers differ between the ranks");
    if (rank == 0)
      std::printf("%s: %zu epochs, largest relative difference of the final tensors from one process %.2e\n",
                  comm.description().c_str(), rows.size(), difference);

    // Sharded evaluation counts exactly what one process counts on the same model.
    const train::Accuracy sharded = trainer.evaluate_test();
    data::DataLoader whole(kTest, eval_transform(), {.batch_size = 4, .shuffle = false, .num_workers = 0});
    const train::Accuracy one = train::evaluate(model, whole);
    f.check(sharded.correct == one.correct && sharded.total == one.total,
            "sharded evaluation counted " + std::to_string(sharded.correct) + "/" + std::to_string(sharded.total) +
                ", one process " + std::to_string(one.correct) + "/" + std::to_string(one.total));
  }
  comm.barrier();
  if (rank == 0)
    f.check(fs::exists(mine / "run.csv") && fs::exists(mine / "run.safetensors"), "rank 0 wrote no CSV/checkpoint");

  // 2. A checkpoint written by N ranks at step 9 (inside epoch 5), resumed by one process.
  {
    Model model(tiny_config(), rank == 0 ? 3 : 100 + static_cast<uint64_t>(rank));
    train::TrainerOptions options = options_for(&comm);
    options.checkpoint = mine / "half_n.safetensors";
    options.max_steps = 9;  // inside epoch 5
    Trainer trainer = make_trainer(model, options);
    trainer.fit();
    f.check(trainer.global_step() == 9, "the N-rank run stopped at step " + std::to_string(trainer.global_step()));
  }
  comm.barrier();
  {
    Model model(tiny_config(), 55);
    Trainer trainer = make_trainer(model, options_for(nullptr));
    trainer.resume(shared / "half_n.safetensors");
    const auto rows = trainer.fit();
    check_rows(f, "N ranks resumed in one process", rows, reference_rows);
    const double difference = max_relative_difference(model, reference);
    f.check(difference <= 1e-5, "N ranks resumed in one process: final parameters differ by " +
                                    std::to_string(difference));
  }

  // 3. A checkpoint written by one process (rank 0's) at step 9, resumed on N ranks.
  {
    Model model(tiny_config(), 3);
    train::TrainerOptions options = options_for(nullptr);
    if (rank == 0) options.checkpoint = mine / "half_1.safetensors";
    options.max_steps = 9;
    Trainer trainer = make_trainer(model, options);
    trainer.fit();
  }
  comm.barrier();
  {
    Model model(tiny_config(), 77 + static_cast<uint64_t>(rank));
    train::TrainerOptions options = options_for(&comm);
    Trainer trainer = make_trainer(model, options);
    trainer.resume(shared / "half_1.safetensors");
    const auto rows = trainer.fit();
    check_rows(f, "one process resumed on N ranks", rows, reference_rows);
    const double difference = max_relative_difference(model, reference);
    f.check(difference <= 1e-5, "one process resumed on N ranks: final parameters differ by " +
                                    std::to_string(difference));
    f.check(dist::same_on_all_ranks(comm, dist::tensors_hash(tensors_of(model))),
            "after resuming, the ranks' parameters differ");
  }

  // 4. A stop request seen by the last rank only stops every rank after the same step, with a checkpoint.
  {
    std::atomic<int> stop{rank == size - 1 ? SIGTERM : 0};
    Model model(tiny_config(), 3);
    train::TrainerOptions options = options_for(&comm);
    options.stop_request = &stop;
    options.checkpoint = mine / "stopped.safetensors";
    Trainer trainer = make_trainer(model, options);
    trainer.fit();
    f.check(trainer.global_step() == 1, "a stop request on rank " + std::to_string(size - 1) +
                                            " left this rank at step " + std::to_string(trainer.global_step()));
    f.check(trainer.interrupted() != 0, "the stopped run does not say it was interrupted");
    comm.barrier();
    if (rank == 0) {
      const io::CheckpointState state = io::read_checkpoint_state(mine / "stopped.safetensors");
      f.check(state.global_step == 1, "the stopped run's checkpoint holds step " + std::to_string(state.global_step));
    }
  }

  // 5. A conv stem with BatchNorm: per-rank batch statistics in the forward, running statistics averaged after
  // every step, so the ranks stay identical (and the statistics move).
  {
    nn::ViTConfig config = tiny_config();
    config.stem_channels = {4};
    config.stem_strides = {2};
    Model model(config, 3);
    std::string mean_name;
    for (const auto& [name, t] : model.state_dict())
      if (mean_name.empty() && name.ends_with("running_mean")) mean_name = name;
    f.check(!mean_name.empty(), "the stem has no running_mean buffer");
    if (mean_name.empty()) return 1;
    const Tensor<float> initial_mean = model.state_dict().at(mean_name).clone();
    train::TrainerOptions options = options_for(&comm);
    options.max_steps = 6;
    Trainer trainer = make_trainer(model, options);
    trainer.fit();
    f.check(dist::same_on_all_ranks(comm, dist::tensors_hash(tensors_of(model))),
            "with BatchNorm, the ranks' parameters or running statistics differ");
    const Tensor<float> mean = model.state_dict().at(mean_name);
    bool moved = false;
    for (int64_t i = 0; i < mean.numel(); ++i) moved = moved || mean.data()[i] != initial_mean.data()[i];
    f.check(moved, "BatchNorm's running mean did not change");
  }

  // 6. A time budget: rank 0 measures and plans, every rank adopts its plan and stops at the same step.
  {
    Model model(tiny_config(), 3);
    train::TrainerOptions options = options_for(&comm);
    options.time_budget_minutes = 0.04;
    Trainer trainer = make_trainer(model, options);
    trainer.fit();
    f.check(trainer.budget_plan().has_value(), "the budgeted run made no plan");
    const int64_t plan = trainer.budget_plan() ? trainer.budget_plan()->total_steps : -1;
    const uint64_t ends = static_cast<uint64_t>(trainer.global_step()) * 1000003u + static_cast<uint64_t>(plan);
    f.check(dist::same_on_all_ranks(comm, ends), "the ranks planned or stopped differently (this rank: plan " +
                                                    std::to_string(plan) + ", stopped at step " +
                                                    std::to_string(trainer.global_step()) + ")");
    f.check(dist::same_on_all_ranks(comm, dist::tensors_hash(tensors_of(model))),
            "the budgeted run's parameters differ between the ranks");
  }

  // Every run above gave each rank its own output paths: only rank 0's folder may hold files.
  comm.barrier();
  if (rank != 0) f.check(fs::is_empty(mine), "rank " + std::to_string(rank) + " wrote files into " + mine.string());
  comm.barrier();
  if (rank == 0) fs::remove_all(work);
  if (rank == 0) std::printf("%s\n", f.count == 0 ? "all checks passed" : "FAILED");
  return f.count == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: mpirun -np N trainer_check WORK_DIR\n");
    return 2;
  }
  std::unique_ptr<dist::Communicator> comm;
  try {
    comm = dist::make_world_communicator();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trainer_check: %s\n", e.what());
    return 1;
  }
  try {
    const int failed = run(*comm, argv[1]);
    double any = failed;  // every rank returns the job's verdict
    comm->allreduce_average(std::span<double>(&any, 1));
    return any == 0.0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trainer_check (rank %d of %d): error: %s\n", comm->rank(), comm->size(), e.what());
    comm->abort(1);
    return 1;
  }
}
