// Gradient clipping as torch.nn.utils does it: clip_grad_norm_ (returns the total norm) and clip_grad_value_.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::optim {

// The norm of all gradients together (the norm of the per-tensor norms), accumulated in double; parameters
// without a gradient are skipped. norm_type is p >= 1 or infinity.
template <class T>
double grad_norm(const std::vector<Tensor<T>>& params, double norm_type = 2.0) {
  TESSERA_CHECK(norm_type >= 1.0, "grad_norm: norm_type must be >= 1 or infinity, got ", norm_type);
  const bool infinity = std::isinf(norm_type);
  double total = 0.0;
  for (const auto& p : params) {
    const Tensor<T> g = p.grad();
    if (!g.defined()) continue;
    const T* d = g.data();
    double tensor_norm = 0.0;
    if (infinity) {
      for (int64_t i = 0; i < g.numel(); ++i) tensor_norm = std::max(tensor_norm, std::abs(static_cast<double>(d[i])));
      total = std::max(total, tensor_norm);
    } else if (norm_type == 2.0) {
      for (int64_t i = 0; i < g.numel(); ++i) tensor_norm += static_cast<double>(d[i]) * static_cast<double>(d[i]);
      total += tensor_norm;  // sum of squares; the root is taken once at the end
    } else {
      for (int64_t i = 0; i < g.numel(); ++i) tensor_norm += std::pow(std::abs(static_cast<double>(d[i])), norm_type);
      total += tensor_norm;
    }
  }
  if (infinity) return total;
  return norm_type == 2.0 ? std::sqrt(total) : std::pow(total, 1.0 / norm_type);
}

// Scales every gradient by min(1, max_norm / (total_norm + 1e-6)) and returns total_norm, the norm before clipping.
// With error_if_nonfinite a NaN or infinite total norm throws instead (and no gradient changes).
template <class T>
double clip_grad_norm_(const std::vector<Tensor<T>>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false) {
  TESSERA_CHECK(max_norm >= 0.0, "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
  const double total = grad_norm(params, norm_type);
  TESSERA_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_: the total gradient norm of order ",
                norm_type, " is ", total, " (non-finite)");
  const double raw = max_norm / (total + 1e-6);
  const double coefficient = std::isnan(raw) ? raw : std::min(1.0, raw);  // NaN spreads, as in torch
  if (!(coefficient >= 1.0)) {
    const T c = static_cast<T>(coefficient);
    for (const auto& p : params) {
      const Tensor<T> g = p.grad();
      if (!g.defined()) continue;
      T* d = g.data();
      for (int64_t i = 0; i < g.numel(); ++i) d[i] *= c;
    }
  }
  return total;
}

// Clamps every gradient element to [-clip_value, clip_value].
template <class T>
void clip_grad_value_(const std::vector<Tensor<T>>& params, double clip_value) {
  TESSERA_CHECK(clip_value >= 0.0, "clip_grad_value_: clip_value must be >= 0, got ", clip_value);
  const T c = static_cast<T>(clip_value);
  for (const auto& p : params) {
    const Tensor<T> g = p.grad();
    if (!g.defined()) continue;
    T* d = g.data();
    for (int64_t i = 0; i < g.numel(); ++i) d[i] = std::clamp(d[i], -c, c);
  }
}

}  // namespace tessera::optim
