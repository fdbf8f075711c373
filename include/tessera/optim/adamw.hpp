// optim::AdamW: Adam with decoupled weight decay, step for step the single-tensor path of torch.optim.AdamW,
// with parameter groups, frozen-parameter skipping, and optimizer state exported as named tensors.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/optim/param_groups.hpp"

namespace tessera::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // torch.optim.AdamW's default
};

template <class T>
class AdamW {
 public:
  // Per-parameter state, created at a parameter's first update.
  struct State {
    int64_t step = 0;
    Tensor<T> exp_avg;
    Tensor<T> exp_avg_sq;
  };

  AdamW(std::vector<ParamGroup<T>> groups, AdamWOptions options = {})
      : groups_(std::move(groups)), options_(options) {
    check_hyper("AdamW", options_.lr, options_.weight_decay);
    std::unordered_set<std::string> names;
    std::unordered_set<const void*> seen;
    for (size_t g = 0; g < groups_.size(); ++g) {
      auto& group = groups_[g];
      if (!group.lr) group.lr = options_.lr;
      if (!group.weight_decay) group.weight_decay = options_.weight_decay;
      check_hyper("AdamW: param group " + std::to_string(g), *group.lr, *group.weight_decay);
      for (const auto& [name, p] : group.params) {
        TESSERA_CHECK(p.defined(), "AdamW: parameter '", name, "' is an undefined tensor");
        TESSERA_CHECK(names.insert(name).second, "AdamW: the parameter name '", name, "' appears twice");
        TESSERA_CHECK(seen.insert(p.impl().get()).second, "AdamW: parameter '", name,
                      "' is the same tensor as an earlier parameter");
      }
    }
    TESSERA_CHECK(options_.beta1 >= 0.0 && options_.beta1 < 1.0 && options_.beta2 >= 0.0 && options_.beta2 < 1.0,
                  "AdamW: betas must be in [0, 1), got (", options_.beta1, ", ", options_.beta2, ")");
    TESSERA_CHECK(options_.eps >= 0.0, "AdamW: eps must be >= 0, got ", options_.eps);
  }

  // One group with weight decay options.weight_decay on every parameter.
  AdamW(NamedParameters<T> params, AdamWOptions options = {}) : AdamW(single_group(std::move(params)), options) {}

  // Updates every parameter that requires grad and has a gradient; frozen parameters and parameters that no
  // gradient reached are skipped (their state does not advance), as torch skips parameters whose grad is None.
  void step() {
    for (auto& group : groups_) {
      for (auto& [name, p] : group.params) {
        if (!p.requires_grad()) continue;
        const Tensor<T> g = p.grad();
        if (!g.defined()) continue;
        State& s = state_[name];
        if (!s.exp_avg.defined()) {
          s.exp_avg = Tensor<T>::zeros(p.shape());
          s.exp_avg_sq = Tensor<T>::zeros(p.shape());
        }
        TESSERA_CHECK(s.step < std::numeric_limits<int>::max(), "AdamW: parameter '", name, "' has taken ", s.step,
                      " steps, the kernel's int range");
        ++s.step;  // the update: kernels::adamw_step for float, kernels::reference::adamw_step for double
        kernels::dispatch::adamw_step(p.data(), g.data(), s.exp_avg.data(), s.exp_avg_sq.data(), p.numel(), *group.lr,
                                      options_.beta1, options_.beta2, options_.eps, *group.weight_decay,
                                      static_cast<int>(s.step));
      }
    }
    ++steps_taken_;
  }

  void zero_grad(bool set_to_none = true) {
    for (auto& group : groups_)
      for (auto& [name, p] : group.params) {
        if (set_to_none)
          p.set_grad(Tensor<T>());
        else
          p.zero_grad();
      }
  }

  // Sets the learning rate of every group (what a schedule calls before each step).
  void set_lr(double lr) {
    check_hyper("AdamW::set_lr", lr, 0.0);
    for (auto& group : groups_) group.lr = lr;
  }
  double lr(size_t group = 0) const {
    TESSERA_CHECK(group < groups_.size(), "AdamW::lr: group ", group, " out of range (", groups_.size(), " groups)");
    return *groups_[group].lr;
  }

  std::vector<ParamGroup<T>>& param_groups() { return groups_; }
  const std::vector<ParamGroup<T>>& param_groups() const { return groups_; }
  const AdamWOptions& options() const { return options_; }
  int64_t steps_taken() const { return steps_taken_; }

  // The state of a parameter by name, or nullptr before its first update.
  const State* state(const std::string& name) const {
    auto found = state_.find(name);
    return found == state_.end() ? nullptr : &found->second;
  }

  // The optimizer state as named tensors, for checkpoints: "exp_avg.<param>", "exp_avg_sq.<param>" and
  // "step.<param>" (one element holding the step count) for every parameter updated at least once.
  nn::StateDict<T> state_dict() const {
    nn::StateDict<T> out;
    for (const auto& group : groups_)
      for (const auto& [name, p] : group.params) {
        auto found = state_.find(name);
        if (found == state_.end()) continue;
        const State& s = found->second;
        TESSERA_CHECK(static_cast<double>(static_cast<T>(s.step)) == static_cast<double>(s.step),
                      "AdamW::state_dict: step count ", s.step, " of '", name, "' is not exact in this tensor type");
        out.insert("exp_avg." + name, s.exp_avg.clone());
        out.insert("exp_avg_sq." + name, s.exp_avg_sq.clone());
        out.insert("step." + name, Tensor<T>::full(Shape{1}, static_cast<T>(s.step)));
      }
    return out;
  }

  // Restores what state_dict() exported. Every key must name a parameter of this optimizer with the right
  // shape; the dict is checked completely before anything changes. Parameters absent from it start afresh.
  void load_state_dict(const nn::StateDict<T>& dict) {
    std::unordered_map<std::string, Shape> shapes;
    for (const auto& group : groups_)
      for (const auto& [name, p] : group.params) shapes.emplace(name, p.shape());
    std::unordered_map<std::string, State> loaded;
    for (const auto& [key, tensor] : dict) {
      const size_t dot = key.find('.');
      TESSERA_CHECK(dot != std::string::npos, "AdamW::load_state_dict: malformed key '", key, "'");
      const std::string kind = key.substr(0, dot), name = key.substr(dot + 1);
      auto shape = shapes.find(name);
      TESSERA_CHECK(shape != shapes.end(), "AdamW::load_state_dict: key '", key, "' names no parameter of this optimizer");
      State& s = loaded[name];
      if (kind == "step") {
        TESSERA_CHECK(tensor.numel() == 1, "AdamW::load_state_dict: '", key, "' must hold one element, got shape ",
                      tensor.shape());
        const double v = static_cast<double>(tensor.data()[0]);
        // Range-checked before the conversion, which is undefined for inf, NaN and values from 2^63 up.
        TESSERA_CHECK(v >= 1.0 && v < 9223372036854775808.0 && std::floor(v) == v, "AdamW::load_state_dict: '", key,
                      "' must be a positive integer step count below 2^63, got ", v);
        s.step = static_cast<int64_t>(v);
      } else if (kind == "exp_avg" || kind == "exp_avg_sq") {
        TESSERA_CHECK(tensor.shape() == shape->second, "AdamW::load_state_dict: '", key, "' has shape ",
                      tensor.shape(), ", parameter '", name, "' has shape ", shape->second);
        (kind == "exp_avg" ? s.exp_avg : s.exp_avg_sq) = tensor.clone();
      } else {
        tessera::detail::fail("AdamW::load_state_dict: unknown state kind in key '", key,
                              "' (expected exp_avg., exp_avg_sq. or step.)");
      }
    }
    for (const auto& [name, s] : loaded)
      TESSERA_CHECK(s.step > 0 && s.exp_avg.defined() && s.exp_avg_sq.defined(), "AdamW::load_state_dict: parameter '",
                    name, "' needs all of step., exp_avg. and exp_avg_sq.");
    state_ = std::move(loaded);
  }

 private:
  static void check_hyper(const std::string& where, double lr, double weight_decay) {
    TESSERA_CHECK(lr >= 0.0 && std::isfinite(lr), where, ": learning rate must be finite and >= 0, got ", lr);
    TESSERA_CHECK(weight_decay >= 0.0, where, ": weight decay must be >= 0, got ", weight_decay);
  }

  std::vector<ParamGroup<T>> groups_;
  AdamWOptions options_;
  std::unordered_map<std::string, State> state_;
  int64_t steps_taken_ = 0;
};

}  // namespace tessera::optim
