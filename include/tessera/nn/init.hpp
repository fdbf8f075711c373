// Parameter initialisers (in place, from a seeded Generator) matching the schemes timm and PyTorch use:
// timm's trunc_normal_ and lecun_normal_, xavier_uniform_, and PyTorch's default Linear/Conv2d reset.
#pragma once

#include <cmath>
#include <cstdint>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::nn::init {

// (fan_in, fan_out) as PyTorch computes them: dim 1 and dim 0 of a matrix, times the receptive field
// (the product of dims 2...) for convolution weights (out, in, kh, kw).
struct Fans {
  double fan_in;
  double fan_out;
};

template <class T>
Fans fans(const Tensor<T>& t, const char* op) {
  TESSERA_CHECK(t.rank() >= 2, op, ": fan in and fan out need a tensor of rank >= 2, got shape ", t.shape());
  double receptive = 1.0;
  for (int d = 2; d < t.rank(); ++d) receptive *= static_cast<double>(t.size(d));
  return {static_cast<double>(t.size(1)) * receptive, static_cast<double>(t.size(0)) * receptive};
}

template <class T>
void constant_(Tensor<T>& t, double value) {
  t.fill_(static_cast<T>(value));
}
template <class T>
void zeros_(Tensor<T>& t) {
  t.fill_(T(0));
}
template <class T>
void ones_(Tensor<T>& t) {
  t.fill_(T(1));
}

template <class T>
void normal_(Tensor<T>& t, double mean, double stddev, Generator& gen) {
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(gen.normal(mean, stddev));
}

template <class T>
void uniform_(Tensor<T>& t, double low, double high, Generator& gen) {
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(gen.uniform(low, high));
}

// N(mean, stddev²) restricted to [a, b], by redrawing values outside. As in timm, a and b are absolute bounds
// (not multiples of stddev): timm's trunc_normal_(std=.02) keeps its defaults a = -2, b = 2.
template <class T>
void trunc_normal_(Tensor<T>& t, double stddev, Generator& gen, double mean = 0.0, double a = -2.0, double b = 2.0) {
  TESSERA_CHECK(a < b && stddev > 0.0, "trunc_normal_: needs a < b and stddev > 0, got a ", a, ", b ", b, ", stddev ",
                stddev);
  TESSERA_CHECK(mean >= a - 2.0 * stddev && mean <= b + 2.0 * stddev, "trunc_normal_: mean ", mean,
                " is more than two standard deviations outside [", a, ", ", b, "]");
  for (int64_t i = 0; i < t.numel(); ++i) {
    double x = gen.normal(mean, stddev);
    while (x < a || x > b) x = gen.normal(mean, stddev);
    t.data()[i] = static_cast<T>(x);
  }
}

// Glorot: U(-s, s) with s = gain·sqrt(6 / (fan_in + fan_out)).
template <class T>
void xavier_uniform_(Tensor<T>& t, Generator& gen, double gain = 1.0) {
  const Fans f = fans(t, "xavier_uniform_");
  const double bound = gain * std::sqrt(6.0 / (f.fan_in + f.fan_out));
  uniform_(t, -bound, bound, gen);
}

// timm's lecun_normal_: a standard normal truncated to [-2, 2], scaled so the variance is 1 / fan_in
// (stddev sqrt(1/fan_in) / 0.87962566103423978, the constant undoing the truncation's loss of variance).
template <class T>
void lecun_normal_(Tensor<T>& t, Generator& gen) {
  const Fans f = fans(t, "lecun_normal_");
  const double stddev = std::sqrt(1.0 / f.fan_in) / 0.87962566103423978;
  for (int64_t i = 0; i < t.numel(); ++i) {
    double x = gen.normal();
    while (x < -2.0 || x > 2.0) x = gen.normal();
    t.data()[i] = static_cast<T>(x * stddev);
  }
}

// PyTorch's reset_parameters for nn.Linear and nn.Conv2d: kaiming_uniform_(a = sqrt(5)) on the weight, which is
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
template <class T>
void torch_default_(Tensor<T>& weight, Tensor<T>* bias, Generator& gen) {
  const double bound = 1.0 / std::sqrt(fans(weight, "torch_default_").fan_in);
  uniform_(weight, -bound, bound, gen);
  if (bias && bias->defined()) uniform_(*bias, -bound, bound, gen);
}

}  // namespace tessera::nn::init
