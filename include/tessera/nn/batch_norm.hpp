// nn::BatchNorm2d: batch normalisation over the channels of (B, C, H, W) input with a learned scale (weight) and
// shift (bias) and the running statistics as buffers (running_mean, running_var, num_batches_tracked: PyTorch's
// names, saved in the state dict, never trained). Training mode uses and updates the batch statistics; eval mode
// uses the running ones.
#pragma once

#include <cstdint>

#include "tessera/core/tensor.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/batch_norm.hpp"

namespace tessera::nn {

template <class T>
class BatchNorm2d : public Module<T> {
 public:
  // eps and momentum as torch.nn.BatchNorm2d's defaults: running = (1 - momentum) running + momentum batch.
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1)
      : Module<T>("BatchNorm2d"), num_features(num_features), eps(eps), momentum(momentum) {
    TESSERA_CHECK(num_features > 0, "BatchNorm2d: num_features must be positive, got ", num_features);
    TESSERA_CHECK(eps > 0.0, "BatchNorm2d: eps must be positive, got ", eps);
    TESSERA_CHECK(momentum >= 0.0 && momentum <= 1.0, "BatchNorm2d: momentum must be in [0, 1], got ", momentum);
    weight = Tensor<T>::ones(Shape{num_features});
    bias = Tensor<T>::zeros(Shape{num_features});
    running_mean = Tensor<T>::zeros(Shape{num_features});
    running_var = Tensor<T>::ones(Shape{num_features});
    num_batches_tracked = Tensor<T>::zeros(Shape{});  // a scalar, as PyTorch's (which is int64)
    this->register_parameter("weight", weight);
    this->register_parameter("bias", bias);
    this->register_buffer("running_mean", running_mean);
    this->register_buffer("running_var", running_var);
    this->register_buffer("num_batches_tracked", num_batches_tracked);
  }

  // x is (B, num_features, H, W). In training mode this also updates the running statistics and counts the batch
  // (even under NoGradGuard, as PyTorch does).
  Tensor<T> forward(const Tensor<T>& x) const {
    TESSERA_CHECK(x.rank() == 4 && x.size(1) == num_features, this->where(), ": expected input (B, ", num_features,
                  ", H, W), got shape ", x.shape());
    const bool training = this->is_training();
    Tensor<T> out = ops::batch_norm(x, weight, bias, running_mean, running_var,
                                    ops::BatchNormOptions{.training = training, .momentum = momentum, .eps = eps});
    if (training) num_batches_tracked.data()[0] += T(1);
    return out;
  }
  Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

  const int64_t num_features;
  const double eps;
  const double momentum;
  Tensor<T> weight;
  Tensor<T> bias;
  Tensor<T> running_mean;
  Tensor<T> running_var;
  Tensor<T> num_batches_tracked;
};

}  // namespace tessera::nn
