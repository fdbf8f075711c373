// Attention maps over the patches, (grid, grid), per head or fused over heads, read from one block's attention
// probabilities (B, H, N, N) with N = prefix tokens + grid * grid (the class token, if any, at index 0, then the
// patches row by row). Which query rows a map reads is an AttentionQuery: the class token's row (what a class-token
// head reads), or the mean of the patch tokens' rows (what an average-pooled head reads: the mean attention each
// patch receives). The cls_* functions are the class-token case under their old names.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::viz {

// How the heads of one block become one map: their mean, or their element-wise max or min.
enum class HeadFusion { mean, max, min };

// Which query rows of the attention a map reads.
enum class QueryRows {
  class_token,  // row 0, the class token's: what the head of a global_pool "token" model reads
  patch_mean,   // the mean of the patch tokens' rows (weighted by patch_weights when given): what the head of a
                // global_pool "avg" ("seqpool") model reads, so the map is the mean attention each patch receives
};

// The query of a map: the number of tokens before the patches and which rows are read. The map over the patches is
//   out(y, x) = Σ_q w_q · P[image, head, q, prefix_tokens + y * grid + x]
// with w = e_0 (class_token: the class token's row) or w_q = 1 / P on the P = grid² patch rows q (patch_mean: the
// column means over the patch rows; patch_weights w_q in place of 1 / P when given). A class-token map's values sum
// to 1 with the class token's attention to itself; a patch-mean map of a model without prefix tokens sums to 1.
struct AttentionQuery {
  int64_t prefix_tokens = 1;  // tokens before the patches: model.config().num_prefix_tokens() (1 = the class token)
  QueryRows rows = QueryRows::class_token;
  // patch_mean only, optional: the weight of each patch query, P values (for every image alike) or B * P values
  // (image by image), e.g. the softmax weights of sequence pooling; empty means the plain mean, 1 / P each.
  std::vector<double> patch_weights;

  // The class token's row (the default): what the cls_* functions read.
  static AttentionQuery class_token() { return {}; }
  // The mean over the patch rows, after `prefix_tokens` prefix tokens (0 for a model without a class token).
  static AttentionQuery patch_mean(int64_t prefix_tokens = 0, std::vector<double> patch_weights = {}) {
    return {prefix_tokens, QueryRows::patch_mean, std::move(patch_weights)};
  }
};

// What a map of `query` shows, in words (for printouts and captions).
inline std::string describe(const AttentionQuery& query) {
  if (query.rows == QueryRows::class_token) return "the class token's attention to each patch";
  return query.patch_weights.empty()
             ? "the mean attention each patch receives from all patches (what average pooling reads)"
             : "the attention each patch receives from all patches, weighted as the pooling weights the patches";
}

namespace detail {

// The sizes of one block's attention probabilities, checked: probs is (B, H, N, N), N = prefix + grid * grid.
struct AttentionLayout {
  int64_t batch = 0;
  int64_t heads = 0;
  int64_t tokens = 0;  // N
  int64_t grid = 0;    // patches per side
  int64_t prefix = 1;  // tokens before the patches
};

// The side of a square grid of `patches` patches; throws naming `op` when `patches` is not a positive square.
inline int64_t square_grid_side(int64_t patches, const char* op, int64_t prefix = 1) {
  TESSERA_CHECK(patches > 0, op, ": the attention has no patch tokens (", patches, " tokens after the ", prefix,
                " prefix token", prefix == 1 ? "" : "s", ")");
  int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(patches))));
  while (side * side > patches) --side;
  while ((side + 1) * (side + 1) <= patches) ++side;
  TESSERA_CHECK(side * side == patches, op, ": ", patches, " patch tokens do not form a square grid (tokens = ", prefix,
                prefix == 1 ? " class token" : " prefix tokens", " + grid * grid)");
  return side;
}

template <class T>
AttentionLayout attention_layout(const Tensor<T>& probs, const char* op, int64_t prefix = 1) {
  TESSERA_CHECK(probs.defined(), op, ": the attention probabilities are an undefined tensor (was the model run with "
                "set_keep_attention(true)?)");
  const Shape& s = probs.shape();
  TESSERA_CHECK(s.rank() == 4 && s[2] == s[3], op,
                ": attention probabilities must be (batch, heads, tokens, tokens), got shape ", s);
  TESSERA_CHECK(s[0] > 0 && s[1] > 0, op, ": attention probabilities of shape ", s, " are empty");
  TESSERA_CHECK(prefix >= 0, op, ": the number of prefix tokens must be non-negative, got ", prefix);
  return {s[0], s[1], s[2], square_grid_side(s[2] - prefix, op, prefix), prefix};
}

// The layout for `query`, whose fields are checked against it: a class-token query needs a prefix token, and
// patch_weights hold P or B * P finite values.
template <class T>
AttentionLayout attention_layout(const Tensor<T>& probs, const AttentionQuery& query, const char* op) {
  TESSERA_CHECK(query.rows != QueryRows::class_token || query.prefix_tokens >= 1, op,
                ": a class-token query needs the class token among the prefix tokens, got prefix_tokens = ",
                query.prefix_tokens, " (use AttentionQuery::patch_mean for a model without a class token)");
  const AttentionLayout l = attention_layout(probs, op, query.prefix_tokens);
  if (query.rows == QueryRows::patch_mean && !query.patch_weights.empty()) {
    const auto n = static_cast<int64_t>(query.patch_weights.size()), patches = l.grid * l.grid;
    TESSERA_CHECK(n == patches || n == l.batch * patches, op, ": patch_weights hold ", n, " values; attention of shape ",
                  probs.shape(), " with ", l.prefix, " prefix tokens needs ", patches, " (one per patch) or ",
                  l.batch * patches, " (batch * patches)");
    for (double w : query.patch_weights)
      TESSERA_CHECK(std::isfinite(w), op, ": patch_weights must be finite, got ", w);
  }
  return l;
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

// The query weights w over all N tokens for image `image` (see AttentionQuery): e_0, or the patch weights.
inline std::vector<double> query_weights(const AttentionQuery& query, const AttentionLayout& l, int64_t image) {
  std::vector<double> w(static_cast<size_t>(l.tokens), 0.0);
  if (query.rows == QueryRows::class_token) {
    w[0] = 1.0;
    return w;
  }
  const int64_t patches = l.grid * l.grid;
  const bool per_image = static_cast<int64_t>(query.patch_weights.size()) == l.batch * patches && l.batch > 1;
  for (int64_t q = 0; q < patches; ++q)
    w[static_cast<size_t>(l.prefix + q)] =
        query.patch_weights.empty()
            ? 1.0 / static_cast<double>(patches)
            : query.patch_weights[static_cast<size_t>((per_image ? image * patches : 0) + q)];
  return w;
}

// Σ_q w_q · row q of head `head` of image `image`, over all N key tokens, in double. For the class token this is
// row 0 itself, exactly.
template <class T>
std::vector<double> query_row(const Tensor<T>& probs, const AttentionLayout& l, const AttentionQuery& query,
                              int64_t image, int64_t head) {
  std::vector<double> out(static_cast<size_t>(l.tokens), 0.0);
  if (query.rows == QueryRows::class_token) {
    const T* row = attention_row(probs, l, image, head, 0);
    for (int64_t j = 0; j < l.tokens; ++j) out[static_cast<size_t>(j)] = static_cast<double>(row[j]);
    return out;
  }
  const std::vector<double> w = query_weights(query, l, image);
  for (int64_t q = l.prefix; q < l.tokens; ++q) {
    const double wq = w[static_cast<size_t>(q)];
    const T* row = attention_row(probs, l, image, head, q);
    for (int64_t j = 0; j < l.tokens; ++j) out[static_cast<size_t>(j)] += wq * static_cast<double>(row[j]);
  }
  return out;
}

}  // namespace detail

// Head `head`'s map over the patches of image `image` for `query`, out(y, x) = Σ_q w_q · probs[image, head, q,
// prefix + y * grid + x] (AttentionQuery): a (grid, grid) tensor. probs is one block's (B, H, N, N) attention
// probabilities.
template <class T>
Tensor<T> attention_map(const Tensor<T>& probs, int64_t head, int64_t image = 0, const AttentionQuery& query = {}) {
  const auto l = detail::attention_layout(probs, query, "attention_map");
  detail::check_image_index(image, l.batch, "attention_map");
  detail::check_head_index(head, l.heads, "attention_map");
  const std::vector<double> row = detail::query_row(probs, l, query, image, head);
  Tensor<T> out(Shape{l.grid, l.grid});
  for (int64_t p = 0; p < l.grid * l.grid; ++p) out.data()[p] = static_cast<T>(row[static_cast<size_t>(l.prefix + p)]);
  return out;
}

// Every head's map at once: (H, grid, grid), out[h] = attention_map(probs, h, image, query).
template <class T>
Tensor<T> attention_maps(const Tensor<T>& probs, int64_t image = 0, const AttentionQuery& query = {}) {
  const auto l = detail::attention_layout(probs, query, "attention_maps");
  detail::check_image_index(image, l.batch, "attention_maps");
  Tensor<T> out(Shape{l.heads, l.grid, l.grid});
  const int64_t patches = l.grid * l.grid;
  for (int64_t h = 0; h < l.heads; ++h) {
    const std::vector<double> row = detail::query_row(probs, l, query, image, h);
    for (int64_t p = 0; p < patches; ++p)
      out.data()[h * patches + p] = static_cast<T>(row[static_cast<size_t>(l.prefix + p)]);
  }
  return out;
}

// The heads' maps fused into one (grid, grid) map: their mean (by default), max or min, element by element.
template <class T>
Tensor<T> fused_attention_map(const Tensor<T>& probs, HeadFusion fusion = HeadFusion::mean, int64_t image = 0,
                              const AttentionQuery& query = {}) {
  const auto l = detail::attention_layout(probs, query, "fused_attention_map");
  detail::check_image_index(image, l.batch, "fused_attention_map");
  std::vector<double> acc = detail::query_row(probs, l, query, image, 0);
  for (int64_t h = 1; h < l.heads; ++h) {
    const std::vector<double> row = detail::query_row(probs, l, query, image, h);
    for (size_t j = 0; j < acc.size(); ++j)
      acc[j] = fusion == HeadFusion::mean ? acc[j] + row[j]
               : fusion == HeadFusion::max ? std::max(acc[j], row[j])
                                           : std::min(acc[j], row[j]);
  }
  Tensor<T> out(Shape{l.grid, l.grid});
  for (int64_t p = 0; p < l.grid * l.grid; ++p) {
    const double v = acc[static_cast<size_t>(l.prefix + p)];
    out.data()[p] = static_cast<T>(fusion == HeadFusion::mean ? v / static_cast<double>(l.heads) : v);
  }
  return out;
}

// The mean over heads of the maps, (grid, grid).
template <class T>
Tensor<T> mean_attention_map(const Tensor<T>& probs, int64_t image = 0, const AttentionQuery& query = {}) {
  return fused_attention_map(probs, HeadFusion::mean, image, query);
}

// The same, choosing block `layer` from the per-block probabilities a VisionTransformer keeps (attention_probs()).
template <class T>
Tensor<T> attention_map(const std::vector<Tensor<T>>& probs, int64_t layer, int64_t head, int64_t image = 0,
                        const AttentionQuery& query = {}) {
  return attention_map(detail::layer_probs(probs, layer, "attention_map"), head, image, query);
}
template <class T>
Tensor<T> attention_maps(const std::vector<Tensor<T>>& probs, int64_t layer, int64_t image = 0,
                         const AttentionQuery& query = {}) {
  return attention_maps(detail::layer_probs(probs, layer, "attention_maps"), image, query);
}
template <class T>
Tensor<T> mean_attention_map(const std::vector<Tensor<T>>& probs, int64_t layer, int64_t image = 0,
                             const AttentionQuery& query = {}) {
  return mean_attention_map(detail::layer_probs(probs, layer, "mean_attention_map"), image, query);
}

// The class-token maps under their old names: the functions above with AttentionQuery::class_token(), for
// probabilities with the class token at index 0 and the patches after it (N = 1 + grid * grid).
// cls_attention_map(probs, head, image)(y, x) = probs[image, head, 0, 1 + y * grid + x].
template <class T>
Tensor<T> cls_attention_map(const Tensor<T>& probs, int64_t head, int64_t image = 0) {
  const auto l = detail::attention_layout(probs, "cls_attention_map");
  detail::check_image_index(image, l.batch, "cls_attention_map");
  detail::check_head_index(head, l.heads, "cls_attention_map");
  return attention_map(probs, head, image);
}
template <class T>
Tensor<T> cls_attention_maps(const Tensor<T>& probs, int64_t image = 0) {
  const auto l = detail::attention_layout(probs, "cls_attention_maps");
  detail::check_image_index(image, l.batch, "cls_attention_maps");
  return attention_maps(probs, image);
}
template <class T>
Tensor<T> fused_cls_attention_map(const Tensor<T>& probs, HeadFusion fusion = HeadFusion::mean, int64_t image = 0) {
  const auto l = detail::attention_layout(probs, "fused_cls_attention_map");
  detail::check_image_index(image, l.batch, "fused_cls_attention_map");
  return fused_attention_map(probs, fusion, image);
}
template <class T>
Tensor<T> mean_cls_attention_map(const Tensor<T>& probs, int64_t image = 0) {
  return fused_cls_attention_map(probs, HeadFusion::mean, image);
}
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
