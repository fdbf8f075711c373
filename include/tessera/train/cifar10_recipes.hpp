// The named CIFAR-10 recipes of train_cifar10: "reference" (timm's tutorial recipe, docs/training.md) and "fast"
// (the best ViT found for a time budget on a 2-core CPU, docs/fast_training.md): the model, the trainer's recipe
// options and the training augmentation, each of which a program may still override.
#pragma once

#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/cifar10.hpp"
#include "tessera/data/cifar10_fast.hpp"
#include "tessera/data/transforms.hpp"
#include "tessera/nn/config.hpp"
#include "tessera/train/trainer.hpp"

namespace tessera::train {

struct Cifar10Recipe {
  std::string name;
  nn::ViTConfig model;
  TrainerOptions options;  // the recipe fields; the caller sets paths, output and the like
  // The training augmentation: the reference recipe's crop + flip, or the fast recipe's configurable one.
  bool reference_augmentation = true;
  data::Cifar10FastAugmentOptions augmentation;

  data::Compose train_transform() const {
    return reference_augmentation ? data::cifar10_train_transform() : data::cifar10_fast_train_transform(augmentation);
  }
};

inline std::vector<std::string> cifar10_recipe_names() { return {"reference", "fast"}; }

inline Cifar10Recipe cifar10_recipe(const std::string& name) {
  Cifar10Recipe recipe;
  recipe.name = name;
  recipe.model = nn::ViTConfig::vit_cifar();
  if (name == "reference") return recipe;  // TrainerOptions' defaults are the reference recipe
  TESSERA_CHECK(name == "fast", "cifar10_recipe: unknown recipe '", name, "' (expected reference or fast)");
  // The fast recipe (docs/fast_training.md; tuned on a validation split, not final): a hybrid ViT whose
  // convolutional stem (3x3 conv + BatchNorm + ReLU stages of 32, 64, 64 and 128 channels, strides 2, 1, 2, 2, then
  // a 1x1 projection) turns the 32x32 image into 4x4 tokens, so the transformer runs on 16 tokens instead of 64 and a
  // step costs about a third; patch tokens averaged instead of a class token, a weight average, a linear decay to
  // zero sized by a 60-minute budget, evaluation only at the end, with flips.
  recipe.model.patch_size = 8;
  recipe.model.stem_channels = {32, 64, 64, 128};
  recipe.model.stem_strides = {2, 1, 2, 2};
  recipe.model.class_token = false;
  recipe.model.global_pool = "avg";
  recipe.options.time_budget_minutes = 60.0;
  recipe.options.decay = optim::Decay::linear;
  recipe.options.min_lr = 0.0;
  recipe.options.warmup_epochs = 0.5;
  recipe.options.ema_decay = 0.999;
  recipe.options.eval_every = 0;
  recipe.options.eval_flip = true;
  recipe.options.no_weight_decay = {"pos_embed", "cls_token"};
  recipe.reference_augmentation = true;
  return recipe;
}

}  // namespace tessera::train
