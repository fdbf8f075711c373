// The fast recipe's CIFAR-10 training transform: random crop with zero padding, horizontal flip, TrivialAugmentWide,
// ToTensor, Normalize(CIFAR-10 mean/std), Cutout; each part can be turned off. (The reference recipe's transform,
// cifar10_train_transform in data/cifar10.hpp, stays as it is.)
#pragma once

#include <cstdint>

#include "tessera/core/error.hpp"
#include "tessera/data/auto_augment.hpp"
#include "tessera/data/cifar10.hpp"
#include "tessera/data/cutout.hpp"
#include "tessera/data/transforms.hpp"

namespace tessera::data {

struct Cifar10FastAugmentOptions {
  int64_t crop_padding = 4;     // RandomCrop(32, crop_padding); 0 leaves the crop out
  bool horizontal_flip = true;  // RandomHorizontalFlip(0.5)
  bool trivial_augment = true;  // TrivialAugmentWide(31 bins, nearest, fill 0)
  int64_t cutout_size = 8;      // Cutout(cutout_size) after Normalize (0 = the mean colour); 0 leaves it out
};

// Compose(RandomCrop(32, pad), RandomHorizontalFlip(0.5), TrivialAugmentWide(), ToTensor(), Normalize(mean, std),
// Cutout(size)), leaving out the parts the options turn off.
inline Compose cifar10_fast_train_transform(const Cifar10FastAugmentOptions& options = {}) {
  TESSERA_CHECK(options.crop_padding >= 0, "cifar10_fast_train_transform: crop_padding must be non-negative, got ",
                options.crop_padding);
  TESSERA_CHECK(options.cutout_size >= 0, "cifar10_fast_train_transform: cutout_size must be non-negative, got ",
                options.cutout_size);
  Compose transform;
  if (options.crop_padding > 0) transform.then(RandomCrop(32, options.crop_padding));
  if (options.horizontal_flip) transform.then(RandomHorizontalFlip(0.5));
  if (options.trivial_augment) transform.then(TrivialAugmentWide());
  transform.then(ToTensor()).then(Normalize(cifar10_mean(), cifar10_std()));
  if (options.cutout_size > 0) transform.then(Cutout(options.cutout_size));
  return transform;
}

}  // namespace tessera::data
