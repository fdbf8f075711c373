// Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): how much each input token
// flows into what the head reads — the class token, or the mean of the patch tokens of an average-pooled model —
// through every block, with the residual connections counted as attention to oneself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/viz/attention_maps.hpp"

namespace tessera::viz {

// The formulation, per block l (0 = first) of attention probabilities P_l (B, H, N, N), for one image:
//   A_l  = fusion over heads h of P_l[image, h]             (N, N; mean, max or min element by element)
//   A'_l = (1 - residual) * A_l + residual * I              (residual = 0.5 gives the usual 0.5 A + 0.5 I)
//   Â_l  = A'_l with each row divided by its sum            (rows sum to 1 again, also after max or min)
//   R    = Â_{L-1} · ... · Â_1 · Â_0                        (later blocks on the left: R[i, j] is the share of
//                                                            input token j in output token i)
// The rollout map is the query's row of R over the patches, Σ_q w_q R[q, prefix + y * grid + x] with w of
// AttentionQuery: the class-token row R[0, 1 + y * grid + x] (whose values with R[0, 0] sum to 1), or the mean of the
// patch rows (R's column means over the patch rows: how much each input patch flows into the average-pooled
// representation; without prefix tokens its values sum to 1).
struct RolloutOptions {
  HeadFusion head_fusion = HeadFusion::mean;
  double residual = 0.5;  // in [0, 1]
  // Whose row of R the map reads. Unset: the class token's (AttentionQuery::class_token()) in the functions on
  // probabilities, what the model's head reads (attention_query(config)) in those on a model (model_attention.hpp).
  std::optional<AttentionQuery> query = std::nullopt;
};

namespace detail {

template <class T>
AttentionLayout check_rollout_inputs(const std::vector<Tensor<T>>& probs, int64_t image, const RolloutOptions& options,
                                     const char* op) {
  TESSERA_CHECK(!probs.empty(), op, ": no attention layers were given");
  TESSERA_CHECK(options.residual >= 0.0 && options.residual <= 1.0, op, ": residual must be in [0, 1], got ",
                options.residual);
  const AttentionQuery query = options.query.value_or(AttentionQuery::class_token());
  const AttentionLayout first = attention_layout(probs[0], query, op);
  check_image_index(image, first.batch, op);
  for (size_t i = 1; i < probs.size(); ++i) {
    const AttentionLayout l = attention_layout(probs[i], op, query.prefix_tokens);
    TESSERA_CHECK(l.batch == first.batch && l.tokens == first.tokens, op, ": layer ", i, " has attention of shape ",
                  probs[i].shape(), " but layer 0 has ", probs[0].shape(), " (batch and tokens must agree)");
  }
  return first;
}

// Â_l for one image as a row-major (N, N) matrix in double (see RolloutOptions).
template <class T>
std::vector<double> rollout_layer_matrix(const Tensor<T>& probs, int64_t image, const RolloutOptions& options,
                                         const char* op) {
  const AttentionLayout l =
      attention_layout(probs, op, options.query.value_or(AttentionQuery::class_token()).prefix_tokens);
  const int64_t N = l.tokens;
  std::vector<double> a(static_cast<size_t>(N * N));
  const T* p0 = attention_row(probs, l, image, 0, 0);
  for (int64_t k = 0; k < N * N; ++k) a[static_cast<size_t>(k)] = static_cast<double>(p0[k]);
  for (int64_t h = 1; h < l.heads; ++h) {
    const T* ph = attention_row(probs, l, image, h, 0);
    for (int64_t k = 0; k < N * N; ++k) {
      double& acc = a[static_cast<size_t>(k)];
      const double v = static_cast<double>(ph[k]);
      acc = options.head_fusion == HeadFusion::mean  ? acc + v
            : options.head_fusion == HeadFusion::max ? std::max(acc, v)
                                                     : std::min(acc, v);
    }
  }
  const double head_scale = options.head_fusion == HeadFusion::mean ? 1.0 / static_cast<double>(l.heads) : 1.0;
  for (int64_t i = 0; i < N; ++i) {
    double* row = a.data() + i * N;
    double sum = 0.0;
    for (int64_t j = 0; j < N; ++j) {
      row[j] = (1.0 - options.residual) * head_scale * row[j] + (i == j ? options.residual : 0.0);
      sum += row[j];
    }
    TESSERA_CHECK(sum > 0.0 && std::isfinite(sum), op, ": row ", i, " of the fused attention sums to ", sum,
                  " and cannot be renormalised");
    for (int64_t j = 0; j < N; ++j) row[j] /= sum;
  }
  return a;
}

}  // namespace detail

// The joint attention R = Â_{L-1} · ... · Â_0 of image `image` over all the given blocks, (N, N); every row sums to 1.
// options.query matters only for its prefix_tokens, with which N must be prefix + grid * grid.
template <class T>
Tensor<T> attention_rollout_matrix(const std::vector<Tensor<T>>& probs, int64_t image = 0,
                                   const RolloutOptions& options = {}) {
  const char* op = "attention_rollout_matrix";
  const auto l = detail::check_rollout_inputs(probs, image, options, op);
  const int64_t N = l.tokens;
  std::vector<double> joint = detail::rollout_layer_matrix(probs[0], image, options, op);
  std::vector<double> next(joint.size());
  for (size_t layer = 1; layer < probs.size(); ++layer) {
    const std::vector<double> a = detail::rollout_layer_matrix(probs[layer], image, options, op);
    std::fill(next.begin(), next.end(), 0.0);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < N; ++k) {
        const double aik = a[static_cast<size_t>(i * N + k)];
        for (int64_t j = 0; j < N; ++j) next[static_cast<size_t>(i * N + j)] += aik * joint[static_cast<size_t>(k * N + j)];
      }
    joint.swap(next);
  }
  Tensor<T> out(Shape{N, N});
  for (int64_t k = 0; k < N * N; ++k) out.data()[k] = static_cast<T>(joint[static_cast<size_t>(k)]);
  return out;
}

// The rollout map of image `image`: the query's row of R over the patches (the class token's unless options.query
// says otherwise), (grid, grid). Computed as the row vector wᵀ Â_{L-1} (w = e_0 for the class token, 1 / P on the
// patches for their mean), then times Â_{L-2}, ..., Â_0 (N² work per block instead of N³).
template <class T>
Tensor<T> attention_rollout(const std::vector<Tensor<T>>& probs, int64_t image = 0, const RolloutOptions& options = {}) {
  const char* op = "attention_rollout";
  const auto l = detail::check_rollout_inputs(probs, image, options, op);
  const int64_t N = l.tokens;
  const AttentionQuery query = options.query.value_or(AttentionQuery::class_token());
  std::vector<double> row = detail::query_weights(query, l, image), next(static_cast<size_t>(N));
  for (size_t layer = probs.size(); layer-- > 0;) {
    const std::vector<double> a = detail::rollout_layer_matrix(probs[layer], image, options, op);
    std::fill(next.begin(), next.end(), 0.0);
    for (int64_t k = 0; k < N; ++k) {
      const double rk = row[static_cast<size_t>(k)];
      if (rk == 0.0) continue;
      for (int64_t j = 0; j < N; ++j) next[static_cast<size_t>(j)] += rk * a[static_cast<size_t>(k * N + j)];
    }
    row.swap(next);
  }
  Tensor<T> out(Shape{l.grid, l.grid});
  for (int64_t p = 0; p < l.grid * l.grid; ++p) out.data()[p] = static_cast<T>(row[static_cast<size_t>(l.prefix + p)]);
  return out;
}

}  // namespace tessera::viz
