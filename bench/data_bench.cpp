// Augmentation throughput on one thread (what one DataLoader worker can produce): each op of TrivialAugment at a
// middle magnitude, TrivialAugmentWide and RandAugment with their random draws, Cutout, the reference and fast CIFAR-10
// training transforms end to end, and MixUp/CutMix on a 128-image batch. Counter: images, per second.
// Run: build/bench/data_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include <tessera/data/auto_augment.hpp>
#include <tessera/data/cifar10.hpp>
#include <tessera/data/cifar10_fast.hpp>
#include <tessera/data/cutout.hpp>
#include <tessera/data/image_ops.hpp>
#include <tessera/data/mix.hpp>
#include <tessera/data/transforms.hpp>

namespace {

using namespace tessera::data;
using tessera::Generator;

// A 32x32 RGB image of random bytes (a CIFAR-10 image's size; the ops' cost does not depend on the content).
Image cifar_like_image() {
  Generator gen(7);
  Image image(32, 32, 3);
  for (auto& v : image.pixels) v = static_cast<uint8_t>(gen.below(256));
  return image;
}

void set_images_per_second(benchmark::State& state, int64_t images_per_iteration = 1) {
  state.counters["images"] =
      benchmark::Counter(static_cast<double>(images_per_iteration), benchmark::Counter::kIsIterationInvariantRate);
}

// One op at bin 15 of 31 of the wide space (positive sign).
void BM_AugmentOp(benchmark::State& state) {
  const auto op = static_cast<AugmentOp>(state.range(0));
  const Image image = cifar_like_image();
  const double magnitude = augment_magnitude(AugmentSpace::wide, op, 15, 31, 32, 32);
  for (auto _ : state) benchmark::DoNotOptimize(apply_augment_op(image, op, magnitude).pixels.data());
  state.SetLabel(augment_op_name(op));
  set_images_per_second(state);
}
BENCHMARK(BM_AugmentOp)->DenseRange(0, kNumAugmentOps - 1);

void BM_RotateBilinear(benchmark::State& state) {
  const Image image = cifar_like_image();
  for (auto _ : state) benchmark::DoNotOptimize(rotate(image, 33.0, Interpolation::bilinear).pixels.data());
  set_images_per_second(state);
}
BENCHMARK(BM_RotateBilinear);

void BM_TrivialAugmentWide(benchmark::State& state) {
  const Image image = cifar_like_image();
  const TrivialAugmentWide trivial;
  Generator gen(1);
  for (auto _ : state) benchmark::DoNotOptimize(trivial(image, gen).pixels.data());
  set_images_per_second(state);
}
BENCHMARK(BM_TrivialAugmentWide);

void BM_RandAugment(benchmark::State& state) {
  const Image image = cifar_like_image();
  const RandAugment rand_augment(2, 9);
  Generator gen(1);
  for (auto _ : state) benchmark::DoNotOptimize(rand_augment(image, gen).pixels.data());
  set_images_per_second(state);
}
BENCHMARK(BM_RandAugment);

void BM_Cutout(benchmark::State& state) {
  FloatImage image(3, 32, 32, 0.5f);
  const Cutout cutout(8);
  Generator gen(1);
  for (auto _ : state) {
    cutout(image, gen);
    benchmark::DoNotOptimize(image.values.data());
  }
  set_images_per_second(state);
}
BENCHMARK(BM_Cutout);

// The whole per-sample pipeline (what a DataLoader worker runs per image, less the dataset read and the batch copy).
void BM_Cifar10ReferenceTransform(benchmark::State& state) {
  const Image image = cifar_like_image();
  const Compose transform = cifar10_train_transform();
  Generator gen(1);
  for (auto _ : state) benchmark::DoNotOptimize(transform(image, gen).values.data());
  set_images_per_second(state);
}
BENCHMARK(BM_Cifar10ReferenceTransform);

void BM_Cifar10FastTransform(benchmark::State& state) {
  const Image image = cifar_like_image();
  const Compose transform = cifar10_fast_train_transform();
  Generator gen(1);
  for (auto _ : state) benchmark::DoNotOptimize(transform(image, gen).values.data());
  set_images_per_second(state);
}
BENCHMARK(BM_Cifar10FastTransform);

// MixUp (range 0) or CutMix (range 1) of a (128, 3, 32, 32) batch, a new tensor each time.
void BM_MixBatch(benchmark::State& state) {
  const int64_t B = 128;
  Generator fill(3);
  const auto images = tessera::Tensor<float>::uniform(tessera::Shape{B, 3, 32, 32}, -2.0f, 2.0f, fill);
  std::vector<int64_t> labels(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) labels[static_cast<size_t>(i)] = i % 10;
  MixOptions options;
  if (state.range(0) == 0) options.cutmix_alpha = 0.0;
  else options.mixup_alpha = 0.0;
  Generator gen(1);
  for (auto _ : state) benchmark::DoNotOptimize(mix_batch(images, labels, gen, options).images.data());
  state.SetLabel(state.range(0) == 0 ? "MixUp" : "CutMix");
  set_images_per_second(state, B);
}
BENCHMARK(BM_MixBatch)->Arg(0)->Arg(1);

}  // namespace
