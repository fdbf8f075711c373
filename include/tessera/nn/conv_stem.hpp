// nn::ConvNormAct and nn::ConvStem: a stack of convolutions, each but the last followed by BatchNorm2d and ReLU —
// timm's ConvStem (vision_transformer_hybrid.py) with its parameter names, the convolutional stem of a ViT.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/batch_norm.hpp"
#include "tessera/nn/conv2d.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/elementwise.hpp"

namespace tessera::nn {

// One stage, timm's ConvNormAct: `conv` (a square kernel, zero padding) then, when normalised, `bn` (BatchNorm2d)
// and ReLU. timm's stage without norm and activation has a conv bias; one with them has none (the BN shift is it).
template <class T>
class ConvNormAct : public Module<T> {
 public:
  struct Options {
    int64_t in_channels = 0;
    int64_t out_channels = 0;
    int64_t kernel_size = 3;
    int64_t stride = 1;
    int64_t padding = 0;
    bool norm_act = true;  // BatchNorm2d and ReLU after the convolution, and no conv bias
  };

  ConvNormAct(const Options& options, Generator& generator)
      : Module<T>("ConvNormAct"),
        conv(options.in_channels, options.out_channels, options.kernel_size,
             ops::Conv2dOptions{.stride = {options.stride, options.stride},
                                .padding = {options.padding, options.padding}},
             !options.norm_act, generator) {
    this->register_module("conv", conv);
    if (options.norm_act) {
      bn = std::make_unique<BatchNorm2d<T>>(options.out_channels);
      this->register_module("bn", *bn);
    }
  }

  // x is (B, in_channels, H, W); returns (B, out_channels, Ho, Wo).
  Tensor<T> forward(const Tensor<T>& x) const {
    const Tensor<T> y = conv(x);
    return bn ? ops::relu((*bn)(y)) : y;
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  Conv2d<T> conv;
  std::unique_ptr<BatchNorm2d<T>> bn;  // null for a stage without norm and activation
};

// A stack of stages named "0", "1", ... applied in order (timm's ConvStem, an nn.Sequential of ConvNormAct).
template <class T>
class ConvStem : public ModuleList<T, ConvNormAct<T>> {
 public:
  // Stages built in order from `stages`, each initialised as torch.nn.Conv2d (PyTorch's default, which timm keeps)
  // from `generator`; consecutive stages must agree on their channels.
  ConvStem(const std::vector<typename ConvNormAct<T>::Options>& stages, Generator& generator) {
    for (size_t i = 0; i < stages.size(); ++i) {
      TESSERA_CHECK(i == 0 || stages[i].in_channels == stages[i - 1].out_channels, "ConvStem: stage ", i, " takes ",
                    stages[i].in_channels, " channels but stage ", i - 1, " gives ", stages[i - 1].out_channels);
      this->emplace_back(stages[i], generator);
    }
  }

  Tensor<T> forward(const Tensor<T>& x) const {
    Tensor<T> h = x;
    for (const auto& stage : *this) h = (*stage)(h);
    return h;
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }
};

}  // namespace tessera::nn
