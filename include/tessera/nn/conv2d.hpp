// nn::Conv2d: a 2D convolution with weight (out_channels, in_channels, kh, kw) and bias (out_channels), PyTorch's
// names and initialisation, on ops::conv2d.
#pragma once

#include <array>
#include <cstdint>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/conv2d.hpp"

namespace tessera::nn {

template <class T>
class Conv2d : public Module<T> {
 public:
  // Initialised as torch.nn.Conv2d is (U(±1/sqrt(fan_in)) for weight and bias, fan_in = in_channels kh kw), from
  // `generator`. kernel_size is (kh, kw); stride and padding in `options`.
  Conv2d(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> kernel_size,
         const ops::Conv2dOptions& options = {}, bool with_bias = true, Generator& generator = default_generator())
      : Module<T>("Conv2d"),
        in_channels(in_channels),
        out_channels(out_channels),
        kernel_size(kernel_size),
        options(options) {
    TESSERA_CHECK(in_channels > 0 && out_channels > 0 && kernel_size[0] > 0 && kernel_size[1] > 0,
                  "Conv2d: in_channels, out_channels and kernel_size must be positive, got ", in_channels, ", ",
                  out_channels, " and (", kernel_size[0], ", ", kernel_size[1], ")");
    TESSERA_CHECK(
        options.stride[0] >= 1 && options.stride[1] >= 1 && options.padding[0] >= 0 && options.padding[1] >= 0,
        "Conv2d: stride must be >= 1 and padding >= 0, got stride (", options.stride[0], ", ", options.stride[1],
        ") and padding (", options.padding[0], ", ", options.padding[1], ")");
    weight = Tensor<T>::zeros(Shape{out_channels, in_channels, kernel_size[0], kernel_size[1]});
    this->register_parameter("weight", weight);
    if (with_bias) {
      bias = Tensor<T>::zeros(Shape{out_channels});
      this->register_parameter("bias", bias);
    }
    init::torch_default_(weight, with_bias ? &bias : nullptr, generator);
  }
  // A square kernel_size x kernel_size kernel.
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, const ops::Conv2dOptions& options = {},
         bool with_bias = true, Generator& generator = default_generator())
      : Conv2d(in_channels, out_channels, std::array<int64_t, 2>{kernel_size, kernel_size}, options, with_bias,
               generator) {}

  // x is (B, in_channels, H, W); returns (B, out_channels, Ho, Wo).
  Tensor<T> forward(const Tensor<T>& x) const {
    TESSERA_CHECK(x.rank() == 4 && x.size(1) == in_channels, this->where(), ": expected input (B, ", in_channels,
                  ", H, W), got shape ", x.shape(), " (weight ", weight.shape(), ")");
    return ops::conv2d(x, weight, bias, options);
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  bool has_bias() const { return bias.defined(); }

  const int64_t in_channels;
  const int64_t out_channels;
  const std::array<int64_t, 2> kernel_size;
  const ops::Conv2dOptions options;
  Tensor<T> weight;
  Tensor<T> bias;  // undefined without bias
};

}  // namespace tessera::nn
