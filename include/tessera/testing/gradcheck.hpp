// gradcheck: compares autograd's gradients with central finite differences, in double precision.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "tessera/autograd/engine.hpp"
#include "tessera/autograd/grad_mode.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::testing {

struct GradcheckOptions {
  double step = 1e-6;        // finite-difference step
  double atol = 1e-6;        // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-4;
  uint64_t seed = 1234;      // seed of the random projection of the output
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // on failure: the worst element (input, index, analytic, numeric)
  explicit operator bool() const { return ok; }
};

using DifferentiableFn = std::function<Tensor<double>(const std::vector<Tensor<double>>&)>;

// Checks d(sum(r * f(inputs)))/d(input) for every input that requires grad, with r a fixed random tensor of the
// output's shape (so every output element matters). Inputs that do not require grad are held constant.
inline GradcheckResult gradcheck(const DifferentiableFn& f, const std::vector<Tensor<double>>& inputs,
                                 const GradcheckOptions& options = {}) {
  GradcheckResult result;
  for (const auto& input : inputs) {
    TESSERA_CHECK(input.defined() && input.is_leaf(), "gradcheck: every input must be a defined leaf tensor");
    if (input.requires_grad()) input.set_grad(Tensor<double>());
  }

  Tensor<double> output = f(inputs);
  Generator generator(options.seed);
  Tensor<double> projection = Tensor<double>::uniform(output.shape(), -1.0, 1.0, generator);
  auto projected = [&](const Tensor<double>& y) {
    double total = 0.0;
    for (int64_t i = 0; i < y.numel(); ++i) total += projection.data()[i] * y.data()[i];
    return total;
  };
  const bool any_requires_grad = output.requires_grad();
  if (any_requires_grad) output.backward(projection);

  double worst_excess = 0.0;
  std::ostringstream worst;
  for (size_t which = 0; which < inputs.size(); ++which) {
    const Tensor<double>& input = inputs[which];
    if (!input.requires_grad()) continue;
    Tensor<double> analytic = input.grad();
    if (!analytic.defined()) analytic = Tensor<double>::zeros(input.shape());  // no path: gradient is zero
    for (int64_t i = 0; i < input.numel(); ++i) {
      double& x = input.data()[i];
      const double saved = x;
      double plus, minus;
      {
        NoGradGuard no_grad;
        x = saved + options.step;
        plus = projected(f(inputs));
        x = saved - options.step;
        minus = projected(f(inputs));
      }
      x = saved;
      const double numeric = (plus - minus) / (2.0 * options.step);
      const double error = std::abs(analytic.data()[i] - numeric);
      const double allowed = options.atol + options.rtol * std::abs(numeric);
      if (!(error <= allowed) && (error - allowed > worst_excess || result.ok)) {
        result.ok = false;
        worst_excess = error - allowed;
        worst.str("");
        worst << "gradcheck failed: input " << which << " of shape " << input.shape() << ", flat index " << i
              << ": analytic " << analytic.data()[i] << ", numeric " << numeric << ", |error| " << error
              << " > allowed " << allowed;
      }
    }
  }
  if (!result.ok) result.message = worst.str();
  return result;
}

}  // namespace tessera::testing
