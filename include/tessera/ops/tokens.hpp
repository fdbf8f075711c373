// Differentiable assembly of a ViT's token sequence in one pass: the class token put before the patch embeddings and
// the position embedding added, as timm's cat([cls_token.expand(B, -1, -1), x], dim=1) + pos_embed.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/elementwise.hpp"

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

}  // namespace tessera::ops
