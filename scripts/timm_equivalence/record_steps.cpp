// Records what tessera's CIFAR-10 trainer does in some steps, so replay_in_timm.py can redo them in timm: the
// starting weights, the augmented batches (with each sample's file), every loss and learning rate, and the weights
// afterwards; with a checkpoint, also the gradients of that trained model on the first batch. The steps are the
// first of a fresh run, or with START_STEP those from that point of the schedule, continuing the checkpoint's
// weights and AdamW state (written too), so the late, full-learning-rate phase is checked as well.
// Build and run with scripts/timm_equivalence/run.sh.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <tessera/tessera.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/optim/param_groups.hpp>
#include <tessera/optim/schedule.hpp>
#include <tessera/train/step.hpp>
#include <tessera/train/trainer.hpp>

using namespace tessera;
namespace fs = std::filesystem;

namespace {

std::vector<std::pair<std::string, Tensor<float>>> snapshot(nn::Module<float>& model, const std::string& prefix = "") {
  std::vector<std::pair<std::string, Tensor<float>>> named;
  for (auto& [name, p] : model.named_parameters()) named.emplace_back(prefix + name, p.clone());
  return named;
}

template <class T>
void write_raw(std::ofstream& out, const T* data, size_t count) {
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(T)));
}

// Forward and backward of the trained model in `checkpoint` on `images`: its logits, parameters and gradients.
void record_trained_gradients(const fs::path& checkpoint, const Tensor<float>& images,
                              const std::vector<int64_t>& labels, double label_smoothing, const fs::path& out) {
  nn::VisionTransformer<float> model(io::read_checkpoint_vit_config(checkpoint), 0);
  io::load_checkpoint(checkpoint, model, static_cast<optim::AdamW<float>*>(nullptr));
  model.set_attention_fn(&ops::attention<float>);
  model.train();
  const Tensor<float> logits = model.forward(images);
  ops::cross_entropy(logits, labels, label_smoothing).backward();
  auto named = snapshot(model, "param.");
  for (auto& [name, p] : model.named_parameters()) named.emplace_back("grad." + name, p.grad().clone());
  named.emplace_back("logits", logits.detach().clone());
  io::save_safetensors(out, named);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: record_steps DATA_ROOT OUT_DIR STEPS [SEED [TRAINED_CHECKPOINT [START_STEP]]]\n";
    return 2;
  }
  try {
    const fs::path data_root = argv[1], out = argv[2];
    const int steps = std::atoi(argv[3]);
    const uint64_t seed = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 0;
    fs::create_directories(out);
    const train::TrainerOptions recipe;  // the defaults are the reference recipe
    const auto train_set = data::open_cifar10(data_root, data::Split::train);

    const fs::path checkpoint = argc > 5 ? fs::path(argv[5]) : fs::path();
    const int64_t start_step = argc > 6 ? std::atoll(argv[6]) : 0;
    TESSERA_CHECK(start_step >= 0, "record_steps: START_STEP must be >= 0, got ", start_step);
    TESSERA_CHECK(start_step == 0 || !checkpoint.empty(), "record_steps: START_STEP needs TRAINED_CHECKPOINT");

    // The model, the optimizer and the loader exactly as train_cifar10 builds them for this seed.
    nn::VisionTransformer<float> model(start_step > 0 ? io::read_checkpoint_vit_config(checkpoint)
                                                      : nn::ViTConfig::vit_cifar(),
                                       seed);
    model.set_attention_fn(&ops::attention<float>);
    data::DataLoader loader(train_set, data::cifar10_train_transform(),
                            data::DataLoaderOptions{.batch_size = recipe.batch_size, .shuffle = true,
                                                    .drop_last = true, .seed = seed, .num_workers = 1});
    const int64_t steps_per_epoch = loader.num_batches();
    optim::AdamW<float> optimizer(
        optim::param_groups_weight_decay(model.named_parameters(), recipe.weight_decay, recipe.no_weight_decay),
        optim::AdamWOptions{recipe.lr, recipe.beta1, recipe.beta2, recipe.eps, recipe.weight_decay});
    const int64_t warmup_steps = std::llround(recipe.warmup_epochs * static_cast<double>(steps_per_epoch));
    const optim::CosineSchedule schedule(recipe.lr, recipe.epochs * steps_per_epoch, warmup_steps, recipe.min_lr);
    if (start_step > 0) {
      io::load_checkpoint(checkpoint, model, &optimizer);
      const nn::StateDict<float> state = optimizer.state_dict();
      io::save_safetensors(out / "optimizer.safetensors",
                           std::vector<std::pair<std::string, Tensor<float>>>(state.begin(), state.end()));
    }
    io::save_safetensors(out / "init.safetensors", snapshot(model));
    std::ofstream(out / "start_step.txt") << start_step << '\n';

    std::ofstream images(out / "batches.f32", std::ios::binary), labels(out / "labels.i64", std::ios::binary);
    std::ofstream samples(out / "samples.tsv"), losses(out / "tessera_loss.txt");
    losses.precision(9);
    Tensor<float> first_images;
    std::vector<int64_t> first_labels;
    loader.start_epoch(start_step / steps_per_epoch);
    for (int64_t s = 0; s < start_step % steps_per_epoch; ++s) loader.next();
    model.train();
    for (int s = 0; s < steps; ++s) {
      std::optional<data::Batch> batch = loader.next();
      TESSERA_CHECK(batch.has_value(), "record_steps: ", steps, " steps from step ", start_step,
                    " go past the end of its epoch (", steps_per_epoch, " steps each)");
      write_raw(images, batch->images.data(), static_cast<size_t>(batch->images.numel()));
      write_raw(labels, batch->labels.data(), batch->labels.size());
      for (size_t i = 0; i < batch->labels.size(); ++i)
        samples << train_set->sample_name(batch->indices[i]) << '\t' << train_set->class_names()[batch->labels[i]]
                << '\n';
      if (s == 0) first_images = batch->images.clone(), first_labels = batch->labels;
      const double lr = schedule(start_step + s);
      optimizer.set_lr(lr);
      losses << train::train_step(model, optimizer, batch->images, batch->labels, recipe.label_smoothing) << ' ' << lr
             << '\n';
    }
    io::save_safetensors(out / "final.safetensors", snapshot(model));
    if (!checkpoint.empty())
      record_trained_gradients(checkpoint, first_images, first_labels, recipe.label_smoothing,
                               out / "trained_gradients.safetensors");
    std::cout << "record_steps: " << steps << " steps of seed " << seed << " written to " << out.string() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "record_steps: error: " << e.what() << "\n";
    return 1;
  }
}
