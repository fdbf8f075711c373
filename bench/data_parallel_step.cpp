// Data-parallel training steps under mpirun, for the scaling measurements of docs/distributed.md ("Scaling"): a ViT
// (vit_cifar, the fast recipe's model or ViT-B/16 at 224) at a global batch split over the ranks, timed with the
// gradient averaging on and with it skipped, then the averaging alone; rank 0 prints one JSON line of medians.
//
//   mpirun -np 2 --bind-to none data_parallel_step --threads 1    # 2 ranks x 1 thread, global batch 128
//   mpirun -np 1 data_parallel_step --threads 2                   # 1 rank x 2 threads, the same global batch
//
// The two modes, alternated in rounds so that both see the same machine:
//   comm  the step train::Trainer takes on N ranks: forward and loss on this rank's rows, backward with each
//         gradient bucket's allreduce started from autograd's hook, the wait for all buckets, AdamW, then the
//         trainer's small per-step allreduce (loss, stop flag, BatchNorm running statistics).
//   skip  the same step with communication skipped, a benchmark-only mode: the same GradientBuckets (same layout,
//         same copies in and out of the buckets) over a SingleProcessCommunicator, whose allreduce is the identity,
//         and no per-step allreduce. The ranks then train apart (their parameters drift); no timing depends on that.
// Then the averaging alone, with nothing else running: the allreduces of all buckets started back to back (the
// communication that backward could hide) and a small allreduce of 2 floats (the latency of one).
//
// Per-step phases come from train::StepTimes. Each rank takes the median of each phase over its timed steps; the
// JSON gives the largest step median over the ranks (the slowest rank sets the pace of a synchronous run) and the
// mean over the ranks of the other phases.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <tessera/tessera.hpp>
#include <tessera/train/cifar10_recipes.hpp>
#include <tessera/train/step.hpp>

#include "cli_checks.hpp"  // examples/cli_checks.hpp: the usage-error exit status of every program

using namespace tessera;
namespace dist = tessera::distributed;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string model = "vit_cifar";
  int64_t batch = 128;  // global
  int threads = 1;      // per rank
  int warmup = 2, steps = 5, rounds = 3, repeats = 10;
  double bucket_mb = 4.0;
  double timeout_s = 300.0;
  std::vector<std::string> modes = {"comm", "skip"};
  std::vector<std::string> tags;  // key=value, copied into the JSON line
  std::string json_out;           // appended to by rank 0, besides stdout
};

// The phases of one step, in milliseconds.
constexpr std::array<const char*, 6> kPhaseNames = {"step_ms", "forward_ms", "backward_ms",
                                                    "wait_ms", "optimizer_ms", "agree_ms"};
enum Phase : size_t { kStep, kForward, kBackward, kWait, kOptimizer, kAgree };
using Phases = std::array<double, kPhaseNames.size()>;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

Phases medians(const std::vector<Phases>& samples) {
  Phases out{};
  for (size_t f = 0; f < out.size(); ++f) {
    std::vector<double> field;
    for (const Phases& s : samples) field.push_back(s[f]);
    out[f] = median(field);
  }
  return out;
}

nn::ViTConfig model_config(const std::string& name) {
  if (name == "vit_cifar") return nn::ViTConfig::vit_cifar();
  if (name == "fast") return train::cifar10_recipe("fast").model;
  TESSERA_CHECK(name == "vit_b16", "data_parallel_step: unknown model '", name, "'");
  return nn::ViTConfig::vit_base_patch16_224();
}

// Every rank's `values` (the same count on each rank), on every rank: rank r's at [r n, (r + 1) n). Through the
// averaging allreduce: a rank contributes zeros but at its own slots, so the average times the rank count gives
// the values back (exactly for a power-of-two rank count, within a rounding otherwise; these are timings).
std::vector<double> from_all_ranks(dist::Communicator& comm, const std::vector<double>& values) {
  const size_t n = values.size(), ranks = static_cast<size_t>(comm.size());
  std::vector<double> flat(n * ranks, 0.0);
  const auto mine = flat.begin() + static_cast<std::ptrdiff_t>(n * static_cast<size_t>(comm.rank()));
  std::copy(values.begin(), values.end(), mine);
  comm.allreduce_average(std::span<double>(flat));
  for (double& v : flat) v *= static_cast<double>(ranks);
  return flat;
}

// The trainer's per-step collective (Trainer::agree_after_step): BatchNorm's running statistics, the loss and a
// stop flag, averaged over the ranks in one allreduce.
void agree_after_step(dist::Communicator& comm, const std::vector<Tensor<float>>& synced_buffers, float loss,
                      std::vector<float>& flat) {
  flat.clear();
  for (const Tensor<float>& b : synced_buffers) flat.insert(flat.end(), b.data(), b.data() + b.numel());
  flat.push_back(loss);
  flat.push_back(0.0f);
  comm.allreduce_average(std::span<float>(flat));
  const float* averaged = flat.data();
  for (const Tensor<float>& b : synced_buffers) {
    std::copy_n(averaged, b.numel(), b.data());
    averaged += b.numel();
  }
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name, family, model;
  while (std::getline(in, line)) {
    const auto value = [&] { return line.substr(std::min(line.size(), line.find(':') + 2)); };
    if (name.empty() && line.rfind("model name", 0) == 0) name = value();
    if (family.empty() && line.rfind("cpu family", 0) == 0) family = value();
    if (model.empty() && line.rfind("model\t", 0) == 0) model = value();
  }
  return name + " (family " + family + " model " + model + ")";
}

std::string host_name() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) return "unknown";
  return host.data();
}

nlohmann::json run(dist::Communicator& comm, const Options& o) {
  const int rank = comm.rank(), ranks = comm.size();
  TESSERA_CHECK(o.batch % ranks == 0, "data_parallel_step: the global batch ", o.batch, " does not split over ",
                ranks, " ranks (--batch must be a multiple of the rank count)");
  const int64_t local_batch = o.batch / ranks;
  nlohmann::json tags = nlohmann::json::object();
  for (const std::string& tag : o.tags) {
    const size_t eq = tag.find('=');
    TESSERA_CHECK(eq != std::string::npos && eq > 0, "data_parallel_step: --tag expects key=value, got '", tag, "'");
    tags[tag.substr(0, eq)] = tag.substr(eq + 1);
  }
  set_num_threads(o.threads);
  const bool root = comm.is_root();

  const nn::ViTConfig config = model_config(o.model);
  nn::VisionTransformer<float> model(config, 0);
  model.train();
  std::vector<Tensor<float>> state;  // parameters and buffers: rank 0's everywhere, as the trainer starts
  for (const auto& [name, tensor] : model.state_dict()) state.push_back(tensor);
  dist::broadcast_tensors(comm, state, 0);
  std::vector<Tensor<float>> synced_buffers;
  for (const auto& [name, buffer] : model.named_buffers())
    if (name.ends_with("running_mean") || name.ends_with("running_var")) synced_buffers.push_back(buffer);

  // This rank's rows: random images and labels, the same every step (the data pipeline is not timed here).
  Generator generator(1 + static_cast<uint64_t>(rank));
  const auto images = Tensor<float>::normal(Shape{local_batch, config.in_chans, config.img_size, config.img_size},
                                            0.0f, 1.0f, generator);
  std::vector<int64_t> labels(static_cast<size_t>(local_batch));
  for (auto& label : labels) label = static_cast<int64_t>(generator.below(static_cast<uint64_t>(config.num_classes)));
  optim::AdamW<float> optimizer(optim::param_groups_weight_decay(model.named_parameters(), 0.05),
                                optim::AdamWOptions{.lr = 1e-4, .weight_decay = 0.05});

  const dist::GradientBucketsOptions bucket_options{.bucket_bytes =
                                                        static_cast<int64_t>(o.bucket_mb * 1024.0 * 1024.0)};
  const auto order = dist::GradientBuckets<float>::backward_order(model.parameters());
  dist::GradientBuckets<float> buckets(comm, order, bucket_options);
  dist::SingleProcessCommunicator no_communication;  // the skip mode's: every allreduce is the identity
  dist::GradientBuckets<float> local_buckets(no_communication, order, bucket_options);

  int64_t gradient_values = 0, sent_values = 0;
  for (const auto& b : buckets.buckets()) {
    gradient_values += b.numel;
    // The fixed-order average (distributed/mpi.hpp): an all-to-all and an all-gather of P slices of ceil(n / P),
    // each sending P - 1 slices from every rank.
    sent_values += 2 * (ranks - 1) * dist::slice_length(b.numel, ranks);
  }
  if (root)
    std::cerr << "data_parallel_step: " << o.model << ", " << comm.description() << " x " << o.threads
              << " threads, global batch " << o.batch << " (" << local_batch << " per rank), "
              << model.num_trainable_parameters() << " parameters in " << buckets.buckets().size() << " buckets"
              << std::endl;

  const auto loss_of = [&](const Tensor<float>& logits) { return ops::cross_entropy(logits, labels, 0.1); };
  std::vector<float> agreement;
  const auto one_step = [&](bool communicate) {
    const auto start = Clock::now();
    train::StepTimes t;
    const float loss =
        train::train_step(model, optimizer, images, loss_of, &t, communicate ? &buckets : &local_buckets);
    Phases p{};
    p[kForward] = t.forward_ms;
    p[kBackward] = t.backward_ms;
    p[kWait] = t.gradient_wait_ms;
    p[kOptimizer] = t.optimizer_ms;
    if (communicate) {
      const auto agree_start = Clock::now();
      agree_after_step(comm, synced_buffers, loss, agreement);
      p[kAgree] = ms_since(agree_start);
    }
    p[kStep] = ms_since(start);
    return p;
  };

  std::map<std::string, std::vector<Phases>> samples;
  for (const std::string& mode : o.modes) {
    comm.barrier();
    for (int i = 0; i < o.warmup; ++i) one_step(mode == "comm");
  }
  for (int round = 0; round < o.rounds; ++round) {
    for (const std::string& mode : o.modes) {
      comm.barrier();  // both modes start together on every rank
      for (int i = 0; i < o.steps; ++i) samples[mode].push_back(one_step(mode == "comm"));
    }
    if (root) {
      std::cerr << "  round " << round + 1 << "/" << o.rounds << ", rank 0 medians so far:";
      for (const auto& [mode, s] : samples) std::cerr << " " << mode << " " << medians(s)[kStep] << " ms";
      std::cerr << std::endl;
    }
  }

  // The averaging alone: every bucket's allreduce started back to back, then waited for.
  std::vector<std::vector<float>> flats;
  for (const auto& b : buckets.buckets()) flats.emplace_back(static_cast<size_t>(b.numel), 1.0f);
  std::vector<double> alone, small;
  for (int r = 0; r < o.repeats; ++r) {
    comm.barrier();
    const auto start = Clock::now();
    std::vector<std::unique_ptr<dist::Request>> requests;
    for (auto& flat : flats) requests.push_back(comm.start_allreduce_average(std::span<float>(flat)));
    for (auto& request : requests) request->wait();
    alone.push_back(ms_since(start));
  }
  comm.barrier();
  std::array<float, 2> pair = {1.0f, 0.0f};
  for (int r = 0; r < 10 * o.repeats; ++r) {
    const auto start = Clock::now();
    comm.allreduce_average(std::span<float>(pair));
    small.push_back(1000.0 * ms_since(start));
  }

  // Everything rank 0 reports, gathered: per rank, the medians of each mode's phases, then the two alone-times.
  std::vector<double> mine;
  for (const std::string& mode : o.modes) {
    const Phases m = medians(samples[mode]);
    mine.insert(mine.end(), m.begin(), m.end());
  }
  mine.push_back(median(alone));
  mine.push_back(median(small));
  const std::vector<double> all = from_all_ranks(comm, mine);
  if (!root) return nullptr;

  const size_t per_rank = mine.size();
  const auto value = [&](int r, size_t index) { return all[static_cast<size_t>(r) * per_rank + index]; };
  nlohmann::json j;
  j["bench"] = "data_parallel_step";
  j["model"] = o.model;
  j["parameters"] = model.num_trainable_parameters();
  j["gradient_bytes"] = gradient_values * static_cast<int64_t>(sizeof(float));
  j["buckets"] = buckets.buckets().size();
  j["bucket_bytes"] = bucket_options.bucket_bytes;
  j["bytes_sent_per_rank"] = sent_values * static_cast<int64_t>(sizeof(float));
  j["ranks"] = ranks;
  j["threads_per_rank"] = o.threads;
  j["global_batch"] = o.batch;
  j["local_batch"] = local_batch;
  j["timed_steps_per_mode"] = o.steps * o.rounds;
  j["warmup_steps_per_mode"] = o.warmup;
  j["mpi"] = comm.description();
  j["host"] = host_name();
  j["cpu"] = cpu_name();
  for (size_t m = 0; m < o.modes.size(); ++m) {
    nlohmann::json phases, per_rank_step;
    for (size_t f = 0; f < kPhaseNames.size(); ++f) {
      double sum = 0.0, largest = 0.0;
      for (int r = 0; r < ranks; ++r) {
        const double v = value(r, m * kPhaseNames.size() + f);
        sum += v;
        largest = std::max(largest, v);
        if (f == kStep) per_rank_step.push_back(v);
      }
      phases[kPhaseNames[f]] = f == kStep ? largest : sum / ranks;
    }
    phases["step_ms_per_rank"] = per_rank_step;
    phases["images_per_second"] = static_cast<double>(o.batch) / (phases["step_ms"].get<double>() / 1000.0);
    j[o.modes[m]] = phases;
  }
  double alone_ms = 0.0, small_us = 0.0;
  for (int r = 0; r < ranks; ++r) {
    alone_ms = std::max(alone_ms, value(r, per_rank - 2));
    small_us = std::max(small_us, value(r, per_rank - 1));
  }
  j["allreduce_alone_ms"] = alone_ms;
  j["small_allreduce_us"] = small_us;
  // What each rank sent divided by the time of the averaging alone (null for one rank).
  j["effective_gbit_per_s"] = nullptr;
  if (ranks > 1 && alone_ms > 0.0)
    j["effective_gbit_per_s"] = static_cast<double>(sent_values * static_cast<int64_t>(sizeof(float))) * 8.0 /
                                (alone_ms * 1e6);
  if (j.contains("comm") && j.contains("skip")) {
    const nlohmann::json c = j["comm"], s = j["skip"];
    const double comm_step = c["step_ms"].get<double>(), skip_step = s["step_ms"].get<double>();
    j["slowdown"] = comm_step / skip_step;  // the acceptance ratio of issue 16
    j["overhead_ms"] = comm_step - skip_step;
    // The wait after backward beyond what the skip mode also waits (copying the averages back): the
    // communication backward did not hide.
    const double exposed = std::max(0.0, c["wait_ms"].get<double>() - s["wait_ms"].get<double>());
    j["exposed_ms"] = exposed;
    j["backward_extra_ms"] = c["backward_ms"].get<double>() - s["backward_ms"].get<double>();
    // The part of the averaging (timed alone) that backward hid: 1 when nothing is left to wait for.
    j["hidden_fraction"] = nullptr;
    if (alone_ms > 0.0) j["hidden_fraction"] = std::clamp(1.0 - exposed / alone_ms, 0.0, 1.0);
  }
  j["tags"] = tags;
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time data-parallel training steps under mpirun, with and without the gradient averaging; rank 0 "
               "prints one JSON line (docs/distributed.md, Scaling)"};
  Options o;
  app.add_option("--model", o.model, "vit_cifar, fast (the fast recipe's model) or vit_b16 (ViT-B/16 at 224)")
      ->capture_default_str()
      ->check(CLI::IsMember(std::vector<std::string>{"vit_cifar", "fast", "vit_b16"}));
  app.add_option("--batch", o.batch, "Global batch, split over the ranks")
      ->capture_default_str()
      ->check(examples::positive());
  app.add_option("--threads", o.threads, "Threads per rank")->capture_default_str()->check(examples::positive());
  app.add_option("--warmup", o.warmup, "Untimed steps per mode first")
      ->capture_default_str()
      ->check(examples::above(0.0, true));
  app.add_option("--steps", o.steps, "Timed steps per mode and round")
      ->capture_default_str()
      ->check(examples::positive());
  app.add_option("--rounds", o.rounds, "Rounds, each timing every mode in turn")
      ->capture_default_str()
      ->check(examples::positive());
  app.add_option("--repeats", o.repeats, "Repetitions of the allreduce-alone timing (10x that for the small one)")
      ->capture_default_str()
      ->check(examples::positive());
  app.add_option("--bucket-mb", o.bucket_mb, "Gradient bucket size in MiB")
      ->capture_default_str()
      ->check(examples::above(0.0));
  app.add_option("--modes", o.modes, "comm (gradients averaged over the ranks) and/or skip (communication skipped); "
                                     "default both")
      ->check(CLI::IsMember(std::vector<std::string>{"comm", "skip"}));
  app.add_option("--tag", o.tags, "key=value copied into the JSON line's tags (repeatable)");
  app.add_option("--json-out", o.json_out, "File to which rank 0 also appends the JSON line");
  app.add_option("--comm-timeout", o.timeout_s, "Seconds a rank waits for the others before giving up")
      ->capture_default_str()
      ->check(examples::above(0.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return examples::usage_exit(app, e);  // 2 for a usage error, as the examples (docs/training.md)
  }

  const auto comm = dist::make_world_communicator(
      {.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000.0))});
  try {
    const nlohmann::json result = run(*comm, o);
    if (comm->is_root()) {
      const std::string line = result.dump();
      std::cout << line << std::endl;
      if (!o.json_out.empty()) {
        std::ofstream out(o.json_out, std::ios::app);
        out << line << '\n';
        TESSERA_CHECK(out.good(), "data_parallel_step: could not append to '", o.json_out, "'");
      }
    }
    comm->barrier();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "data_parallel_step, rank " << comm->rank() << ": " << e.what() << std::endl;
    comm->abort(1);
    return 1;
  }
}
