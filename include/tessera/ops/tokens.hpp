// Differentiable token ops of a ViT: the sequence assembled in one pass (the class token put before the patch
// embeddings and the position embedding added, as timm's cat([cls_token.expand(B, -1, -1), x], dim=1) + pos_embed),
// and a weighted sum over the tokens (sequence pooling).
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/elementwise.hpp"
#include "tessera/kernels/token_pool.hpp"

namespace tessera::ops {

// patches (B, P, E), cls_token (1, 1, E), pos_embed (1, P + 1, E); returns (B, P + 1, E) with
//   out[b, 0] = cls_token + pos_embed[0],   out[b, 1 + i] = patches[b, i] + pos_embed[1 + i].
// Backward: dpatches[b, i] = g[b, 1 + i]; dpos_embed[t] = Σ_b g[b, t] and dcls_token = Σ_b g[b, 0], summed in
// batch order (the same bits on any number of threads).
template <class T>
Tensor<T> class_token_and_position(const Tensor<T>& patches, const Tensor<T>& cls_token, const Tensor<T>& pos_embed) {
  TESSERA_CHECK(patches.rank() == 3, "class_token_and_position: patches must be (B, P, E), got shape ",
                patches.shape());
  const int64_t B = patches.size(0), P = patches.size(1), E = patches.size(2), N = P + 1;
  TESSERA_CHECK((cls_token.shape() == Shape{1, 1, E}), "class_token_and_position: cls_token must be (1, 1, ", E,
                ") for patches of shape ", patches.shape(), ", got shape ", cls_token.shape());
  TESSERA_CHECK((pos_embed.shape() == Shape{1, N, E}), "class_token_and_position: pos_embed must be (1, ", N, ", ", E,
                ") for patches of shape ", patches.shape(), ", got shape ", pos_embed.shape());
  Tensor<T> out = Tensor<T>::empty(Shape{B, N, E});
  const auto add = [](T x, T y) { return x + y; };
  T* o = out.data();
  const T *cls = cls_token.data(), *pos = pos_embed.data();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t e = 0; e < E; ++e) o[b * N * E + e] = cls[e] + pos[e];
  kernels::map_binary_rows(o + E, N * E, patches.data(), P * E, pos + E, B, P * E, add);
  autograd::record<T>(out, "class_token_and_position", {patches, cls_token, pos_embed},
                      [B, P, E, N](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
                        Tensor<T> dpatches, dcls, dpos;
                        if (needs[0]) {
                          dpatches = Tensor<T>::empty(Shape{B, P, E});
                          kernels::copy_rows(dpatches.data(), P * E, g.data() + E, N * E, B, P * E);
                        }
                        if (needs[1] || needs[2]) {
                          dpos = Tensor<T>::zeros(Shape{1, N, E});
                          kernels::column_sums(dpos.data(), g.data(), B, N * E);
                        }
                        if (needs[1]) {
                          dcls = Tensor<T>::empty(Shape{1, 1, E});
                          std::copy(dpos.data(), dpos.data() + E, dcls.data());
                        }
                        return autograd::Grads<T>{dpatches, dcls, needs[2] ? dpos : Tensor<T>()};
                      });
  return out;
}

// tokens (B, N, E), weights (B, N); returns (B, E) with out[b] = Σ_n weights[b, n] tokens[b, n] (n ascending).
// Backward: dtokens[b, n] = weights[b, n] g[b];  dweights[b, n] = <tokens[b, n], g[b]>.
template <class T>
Tensor<T> weighted_token_sum(const Tensor<T>& tokens, const Tensor<T>& weights) {
  TESSERA_CHECK(tokens.rank() == 3, "weighted_token_sum: tokens must be (B, N, E), got shape ", tokens.shape());
  const int64_t B = tokens.size(0), N = tokens.size(1), E = tokens.size(2);
  TESSERA_CHECK((weights.shape() == Shape{B, N}), "weighted_token_sum: weights must be (", B, ", ", N,
                ") for tokens of shape ", tokens.shape(), ", got shape ", weights.shape());
  Tensor<T> out = Tensor<T>::empty(Shape{B, E});
  kernels::weighted_token_sum_forward(out.data(), tokens.data(), weights.data(), B, N, E);
  autograd::record<T>(out, "weighted_token_sum", {tokens, weights},
                      [tokens = tokens.detach(), weights = weights.detach(), B, N, E](
                          const Tensor<T>& g, const autograd::NeedsGrad& needs) {
                        Tensor<T> dtokens = needs[0] ? Tensor<T>::zeros(Shape{B, N, E}) : Tensor<T>();
                        Tensor<T> dweights = needs[1] ? Tensor<T>::zeros(Shape{B, N}) : Tensor<T>();
                        kernels::weighted_token_sum_backward(needs[0] ? dtokens.data() : nullptr,
                                                             needs[1] ? dweights.data() : nullptr, g.data(),
                                                             tokens.data(), weights.data(), B, N, E);
                        return autograd::Grads<T>{dtokens, dweights};
                      });
  return out;
}

}  // namespace tessera::ops
