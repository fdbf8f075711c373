// The class token's attention over the patches as a (grid, grid) map, per head or fused over heads, read from a
// block's attention probabilities (B, H, N, N) with N = 1 + grid * grid and the class token at index 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::viz {

// How the heads of one block become one map: their mean, or their element-wise max or min.
enum class HeadFusion { mean, max, min };

namespace detail {

// The sizes of one block's attention probabilities, checked: probs is (B, H, N, N), N = 1 + grid * grid.
struct AttentionLayout {
  int64_t batch = 0;
  int64_t heads = 0;
  int64_t tokens = 0;  // N
  int64_t grid = 0;    // patches per side
};

// The side of a square grid of `patches` patches; throws naming `op` when `patches` is not a positive square.
inline int64_t square_grid_side(int64_t patches, const char* op) {
  TESSERA_CHECK(patches > 0, op, ": the attention has no patch tokens (", patches, " tokens after the class token)");
  int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(patches))));
  while (side * side > patches) --side;
  while ((side + 1) * (side + 1) <= patches) ++side;
  TESSERA_CHECK(side * side == patches, op, ": ", patches,
                " patch tokens do not form a square grid (tokens = 1 class token + grid * grid)");
  return side;
}

template <class T>
AttentionLayout attention_layout(const Tensor<T>& probs, const char* op) {
  TESSERA_CHECK(probs.defined(), op, ": the attention probabilities are an undefined tensor (was the model run with "
                "set_keep_attention(true)?)");
  const Shape& s = probs.shape();
  TESSERA_CHECK(s.rank() == 4 && s[2] == s[3], op,
                ": attention probabilities must be (batch, heads, tokens, tokens), got shape ", s);
  TESSERA_CHECK(s[0] > 0 && s[1] > 0, op, ": attention probabilities of shape ", s, " are empty");
  return {s[0], s[1], s[2], square_grid_side(s[2] - 1, op)};
}

inline void check_image_index(int64_t image, int64_t batch, const char* op) {
  TESSERA_CHECK(image >= 0 && image < batch, op, ": image ", image, " is out of range for a batch of ", batch);
}

inline void check_head_index(int64_t head, int64_t heads, const char* op) {
  TESSERA_CHECK(head >= 0 && head < heads, op, ": head ", head, " is out of range for ", heads, " heads");
}

template <class T>
const Tensor<T>& layer_probs(const std::vector<Tensor<T>>& probs, int64_t layer, const char* op) {
  TESSERA_CHECK(!probs.empty(), op, ": no attention layers were given");
  TESSERA_CHECK(layer >= 0 && layer < static_cast<int64_t>(probs.size()), op, ": layer ", layer,
                " is out of range for ", probs.size(), " layers");
  return probs[static_cast<size_t>(layer)];
}

// Pointer to row `row` of head `head` of image `image`: N contiguous probabilities.
template <class T>
const T* attention_row(const Tensor<T>& probs, const AttentionLayout& l, int64_t image, int64_t head, int64_t row) {
  return probs.data() + ((image * l.heads + head) * l.tokens + row) * l.tokens;
}

}  // namespace detail

// Head `head`'s class-token attention over the patches of image `image`, out(y, x) = probs[image, head, 0,
// 1 + y * grid + x]: a (grid, grid) tensor. probs is one block's (B, H, N, N) attention probabilities.
template <class T>
Tensor<T> cls_attention_map(const Tensor<T>& probs, int64_t head, int64_t image = 0) {
  const auto l = detail::attention_layout(probs, "cls_attention_map");
  detail::check_image_index(image, l.batch, "cls_attention_map");
  detail::check_head_index(head, l.heads, "cls_attention_map");
  Tensor<T> out(Shape{l.grid, l.grid});
  const T* row = detail::attention_row(probs, l, image, head, 0);
  std::copy(row + 1, row + l.tokens, out.data());
  return out;
}

// Every head's map at once: (H, grid, grid), out[h] = cls_attention_map(probs, h, image).
template <class T>
Tensor<T> cls_attention_maps(const Tensor<T>& probs, int64_t image = 0) {
  const auto l = detail::attention_layout(probs, "cls_attention_maps");
  detail::check_image_index(image, l.batch, "cls_attention_maps");
  Tensor<T> out(Shape{l.heads, l.grid, l.grid});
  const int64_t patches = l.grid * l.grid;
  for (int64_t h = 0; h < l.heads; ++h) {
    const T* row = detail::attention_row(probs, l, image, h, 0);
    std::copy(row + 1, row + l.tokens, out.data() + h * patches);
  }
  return out;
}

// The heads' maps fused into one (grid, grid) map: their mean (by default), max or min, element by element.
template <class T>
Tensor<T> fused_cls_attention_map(const Tensor<T>& probs, HeadFusion fusion = HeadFusion::mean, int64_t image = 0) {
  const auto l = detail::attention_layout(probs, "fused_cls_attention_map");
  detail::check_image_index(image, l.batch, "fused_cls_attention_map");
  Tensor<T> out(Shape{l.grid, l.grid});
  T* o = out.data();
  const int64_t patches = l.grid * l.grid;
  for (int64_t p = 0; p < patches; ++p) {
    double acc = static_cast<double>(detail::attention_row(probs, l, image, 0, 0)[1 + p]);
    for (int64_t h = 1; h < l.heads; ++h) {
      const double v = static_cast<double>(detail::attention_row(probs, l, image, h, 0)[1 + p]);
      acc = fusion == HeadFusion::mean ? acc + v : fusion == HeadFusion::max ? std::max(acc, v) : std::min(acc, v);
    }
    o[p] = static_cast<T>(fusion == HeadFusion::mean ? acc / static_cast<double>(l.heads) : acc);
  }
  return out;
}

// The mean over heads of the class-token maps, (grid, grid).
template <class T>
Tensor<T> mean_cls_attention_map(const Tensor<T>& probs, int64_t image = 0) {
  return fused_cls_attention_map(probs, HeadFusion::mean, image);
}

// The same, choosing block `layer` from the per-block probabilities a VisionTransformer keeps (attention_probs()).
template <class T>
Tensor<T> cls_attention_map(const std::vector<Tensor<T>>& probs, int64_t layer, int64_t head, int64_t image = 0) {
  return cls_attention_map(detail::layer_probs(probs, layer, "cls_attention_map"), head, image);
}
template <class T>
Tensor<T> cls_attention_maps(const std::vector<Tensor<T>>& probs, int64_t layer, int64_t image = 0) {
  return cls_attention_maps(detail::layer_probs(probs, layer, "cls_attention_maps"), image);
}
template <class T>
Tensor<T> mean_cls_attention_map(const std::vector<Tensor<T>>& probs, int64_t layer, int64_t image = 0) {
  return mean_cls_attention_map(detail::layer_probs(probs, layer, "mean_cls_attention_map"), image);
}

}  // namespace tessera::viz
