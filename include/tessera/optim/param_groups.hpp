// Parameter groups for optimizers: named parameters sharing a learning rate and weight decay, and the two usual
// splits (decay on everything; decay only on weights of rank >= 2 except named exclusions such as pos_embed).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::optim {

template <class T>
using NamedParameters = std::vector<std::pair<std::string, Tensor<T>>>;

// Parameters updated with the same hyper-parameters. lr and weight_decay fall back to the optimizer's
// options when unset. Names identify each parameter's optimizer state in checkpoints.
template <class T>
struct ParamGroup {
  NamedParameters<T> params;
  std::optional<double> lr;
  std::optional<double> weight_decay;
};

// One group holding every parameter, all with weight decay `weight_decay` (as in the timm fixture's AdamW).
template <class T>
std::vector<ParamGroup<T>> single_group(NamedParameters<T> params, std::optional<double> weight_decay = std::nullopt) {
  return {ParamGroup<T>{std::move(params), std::nullopt, weight_decay}};
}

// Two groups as in the reference recipe: decay `weight_decay` on parameters of rank >= 2 whose names match none of
// the glob patterns in `no_decay`; 0 on the rest (biases, LayerNorm weights, pos_embed, cls_token). Frozen
// parameters are kept (the optimizer skips them while they are frozen) so that unfreezing later needs no rebuild.
template <class T>
std::vector<ParamGroup<T>> param_groups_weight_decay(const NamedParameters<T>& params, double weight_decay,
                                                     const std::vector<std::string>& no_decay = {"pos_embed",
                                                                                                 "cls_token"}) {
  ParamGroup<T> decay{{}, std::nullopt, weight_decay};
  ParamGroup<T> plain{{}, std::nullopt, 0.0};
  for (const auto& [name, p] : params) {
    bool excluded = p.rank() < 2;
    for (const auto& pattern : no_decay) excluded = excluded || nn::glob_match(pattern, name);
    (excluded ? plain : decay).params.emplace_back(name, p);
  }
  std::vector<ParamGroup<T>> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!plain.params.empty()) groups.push_back(std::move(plain));
  return groups;
}

}  // namespace tessera::optim
