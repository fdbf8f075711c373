// Writes everything a seed's train_cifar10 run is fed, so train_timm_on_stream.py can train timm on exactly the
// same: the initial weights, the decoded train and test pixels, and for every step of every epoch the samples with
// their crop offsets and flips. A self-check rebuilds the loader's first batches of each epoch from these records.
// Build and run with scripts/timm_equivalence/same_stream.sh.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <tessera/tessera.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/train/trainer.hpp>

using namespace tessera;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = 32, kPadding = 4, kChannels = 3;

// uint8 HWC pixels of every sample, then int64 labels.
void write_split(const data::Dataset& set, const fs::path& pixels, const fs::path& labels) {
  std::ofstream px(pixels, std::ios::binary), lb(labels, std::ios::binary);
  for (int64_t i = 0; i < set.size(); ++i) {
    const data::Sample s = set.get(i);
    TESSERA_CHECK(s.image.height == kSide && s.image.width == kSide && s.image.channels == kChannels,
                  "record_stream: ", set.sample_name(i), " is ", s.image.size_string(), ", not 32x32x3");
    px.write(reinterpret_cast<const char*>(s.image.data()), s.image.numel());
    lb.write(reinterpret_cast<const char*>(&s.label), sizeof s.label);
  }
}

// The loader's batch must be these records' samples, cropped from the zero-padded image and maybe flipped, then
// normalised; `records` holds (index, top, left, flip) per sample.
void check_batch(const data::Dataset& set, const data::Batch& batch, const int32_t* records) {
  const std::vector<float> mean = data::cifar10_mean(), stdev = data::cifar10_std();
  for (size_t i = 0; i < batch.indices.size(); ++i) {
    const int32_t* r = records + 4 * i;
    TESSERA_CHECK(batch.indices[i] == r[0], "record_stream: the loader's sample ", i, " is ", batch.indices[i],
                  ", not ", r[0]);
    const data::Image image = set.get(r[0]).image;
    for (int64_t c = 0; c < kChannels; ++c)
      for (int64_t y = 0; y < kSide; ++y)
        for (int64_t x = 0; x < kSide; ++x) {
          const int64_t sy = y + r[1] - kPadding, sx = (r[3] ? kSide - 1 - x : x) + r[2] - kPadding;
          const bool inside = sy >= 0 && sy < kSide && sx >= 0 && sx < kSide;
          const double expected = ((inside ? image.at(sy, sx, c) / 255.0 : 0.0) - mean[c]) / stdev[c];
          const double got = batch.images.data()[((static_cast<int64_t>(i) * kChannels + c) * kSide + y) * kSide + x];
          TESSERA_CHECK(std::abs(got - expected) < 1e-5, "record_stream: sample ", i, " differs from its record");
        }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: record_stream DATA_ROOT OUT_DIR [SEED]\n";
    return 2;
  }
  try {
    const fs::path data_root = argv[1], out = argv[2];
    const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 0;
    fs::create_directories(out);
    const train::TrainerOptions recipe;  // the defaults are the reference recipe
    const auto train_set = data::open_cifar10(data_root, data::Split::train);
    const auto test_set = data::open_cifar10(data_root, data::Split::test);

    nn::VisionTransformer<float> model(nn::ViTConfig::vit_cifar(), seed);
    std::vector<std::pair<std::string, Tensor<float>>> weights;
    for (const auto& [name, p] : model.named_parameters()) weights.emplace_back(name, p.clone());
    io::save_safetensors(out / "init.safetensors", weights);
    write_split(*train_set, out / "train_u8.bin", out / "train_labels.i64");
    write_split(*test_set, out / "test_u8.bin", out / "test_labels.i64");

    // What the trainer's loader draws: the epoch's order, then per sample top, left (RandomCrop) and the flip.
    data::DataLoader loader(train_set, data::cifar10_train_transform(kPadding),
                            data::DataLoaderOptions{.batch_size = recipe.batch_size, .shuffle = true,
                                                    .drop_last = true, .seed = seed, .num_workers = 1});
    const int64_t steps_per_epoch = loader.num_batches(), batch_size = recipe.batch_size;
    std::ofstream stream(out / "stream.i32", std::ios::binary);
    for (int64_t epoch = 0; epoch < recipe.epochs; ++epoch) {
      const std::vector<int64_t> order = data::epoch_order(train_set->size(), seed, epoch, true);
      std::vector<int32_t> records;
      for (int64_t k = 0; k < steps_per_epoch * batch_size; ++k) {
        Generator gen = data::sample_generator(seed, epoch, order[k]);
        const auto top = static_cast<int32_t>(gen.below(2 * kPadding + 1));
        const auto left = static_cast<int32_t>(gen.below(2 * kPadding + 1));
        const int32_t flip = gen.uniform() < 0.5;
        records.insert(records.end(), {static_cast<int32_t>(order[k]), top, left, flip});
      }
      stream.write(reinterpret_cast<const char*>(records.data()),
                   static_cast<std::streamsize>(records.size() * sizeof(int32_t)));
      loader.start_epoch(epoch);
      for (int64_t b = 0; b < 2; ++b) check_batch(*train_set, *loader.next(), &records[4 * b * batch_size]);
    }
    std::ofstream(out / "recipe.txt") << recipe.epochs << ' ' << steps_per_epoch << ' ' << batch_size << '\n';
    std::cout << "record_stream: seed " << seed << ", " << recipe.epochs << " epochs of " << steps_per_epoch
              << " steps written to " << out.string() << " (first two batches of each epoch match the loader)\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "record_stream: error: " << e.what() << "\n";
    return 1;
  }
}
