// Position embeddings: the fixed 2D sin-cos table (big_vision's posemb_sincos_2d); resample_abs_pos_embed, a learned
// position embedding moved to another patch grid as timm does (PyTorch's bicubic interpolate, align_corners=False);
// and the state-dict step that fits a checkpoint's pos_embed to a model's grid.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/config.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

// A patch grid: `height` rows of `width` patches.
struct GridSize {
  int64_t height = 0;
  int64_t width = 0;
  friend bool operator==(const GridSize&, const GridSize&) = default;
};

namespace detail {

// One output index's taps along one axis: out = sum_j weight[j] * in[index[j]].
struct ResampleTaps {
  std::vector<int64_t> index;
  std::vector<double> weight;
};

// PyTorch's interpolate(mode="bicubic", align_corners=False, antialias=False) along one axis of `in` samples into
// `out` (aten upsample_bicubic2d, whose index math runs in float for a float tensor, as timm's always is):
//   scale = in / out;  s = scale * (d + 0.5) - 0.5  (not clamped);  i = min(floor(s), in - 1);
//   t = clamp(s - i, 0, 1);  taps i-1, i, i+1, i+2, each index clamped to [0, in - 1], with the cubic convolution
//   weights of Keys (a = -0.75): W(t + 1), W(t), W(1 - t), W(2 - t), where
//   W(x) = ((a + 2) x - (a + 3)) x² + 1 for |x| <= 1 and ((a x - 5a) x + 8a) x - 4a for 1 < |x| < 2.
inline std::vector<ResampleTaps> bicubic_taps(int64_t in, int64_t out) {
  constexpr float a = -0.75f;
  auto near = [](float x) { return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f; };
  auto far = [](float x) { return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a; };
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  std::vector<ResampleTaps> taps(static_cast<size_t>(out));
  for (int64_t d = 0; d < out; ++d) {
    const float s = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
    const int64_t i = std::min(static_cast<int64_t>(std::floor(s)), in - 1);
    const float t = std::min(std::max(s - static_cast<float>(i), 0.0f), 1.0f);
    const float w[4] = {far(t + 1.0f), near(t), near(1.0f - t), far(2.0f - t)};
    ResampleTaps& tap = taps[static_cast<size_t>(d)];
    for (int64_t j = 0; j < 4; ++j) {
      tap.index.push_back(std::clamp<int64_t>(i + j - 1, 0, in - 1));
      tap.weight.push_back(static_cast<double>(w[j]));
    }
  }
  return taps;
}

// The same with antialias=True (aten _upsample_bicubic2d_aa, as PIL): the cubic of Keys with a = -0.5, stretched by
// the scale when shrinking, evaluated in float with aten's float/double promotions. With scale = in / out,
// stretch = max(scale, 1), support = 2 * stretch and center = scale * (d + 0.5): taps x in
// [max(trunc(center - support + 0.5), 0), min(trunc(center + support + 0.5), in)) with weights
// W((x - center + 0.5) / stretch) divided by their sum.
inline std::vector<ResampleTaps> bicubic_antialias_taps(int64_t in, int64_t out) {
  auto keys = [](float x) {
    constexpr float a = -0.5f;
    x = std::abs(x);
    if (x < 1.0f) return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    if (x < 2.0f) return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
    return 0.0f;
  };
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float support = scale >= 1.0f ? 2.0f * scale : 2.0f;
  const float invscale = scale >= 1.0f ? static_cast<float>(1.0 / static_cast<double>(scale)) : 1.0f;
  std::vector<ResampleTaps> taps(static_cast<size_t>(out));
  for (int64_t d = 0; d < out; ++d) {
    const float center = static_cast<float>(static_cast<double>(scale) * (static_cast<double>(d) + 0.5));
    const int64_t first = std::max<int64_t>(static_cast<int64_t>(static_cast<double>(center - support) + 0.5), 0);
    const int64_t last = std::min<int64_t>(static_cast<int64_t>(static_cast<double>(center + support) + 0.5), in);
    std::vector<float> w;
    float total = 0.0f;
    for (int64_t x = first; x < last; ++x) {
      const float offset = static_cast<float>(x) - center;
      w.push_back(keys(static_cast<float>((static_cast<double>(offset) + 0.5) * static_cast<double>(invscale))));
      total += w.back();
    }
    ResampleTaps& tap = taps[static_cast<size_t>(d)];
    for (size_t j = 0; j < w.size(); ++j) {
      tap.index.push_back(first + static_cast<int64_t>(j));
      tap.weight.push_back(static_cast<double>(total != 0.0f ? w[j] / total : w[j]));
    }
  }
  return taps;
}

// in is (H, W, C) row-major, out is (rows.size(), cols.size(), C): out[y][x][c] = sum_i wy_i * (sum_j wx_j * in[iy_i][ix_j][c]) with the
// taps of each axis, summed in double — separable, columns within rows as aten's loops.
template <class T>
void resample_grid(const T* in, T* out, int64_t W, int64_t C, const std::vector<ResampleTaps>& rows,
                   const std::vector<ResampleTaps>& cols) {
  const int64_t out_w = static_cast<int64_t>(cols.size());
  std::vector<double> acc(static_cast<size_t>(C)), inner(static_cast<size_t>(C));
  for (size_t y = 0; y < rows.size(); ++y) {
    for (int64_t x = 0; x < out_w; ++x) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const ResampleTaps& ty = rows[y];
      const ResampleTaps& tx = cols[static_cast<size_t>(x)];
      for (size_t i = 0; i < ty.index.size(); ++i) {
        std::fill(inner.begin(), inner.end(), 0.0);
        for (size_t j = 0; j < tx.index.size(); ++j) {
          const T* p = in + (ty.index[i] * W + tx.index[j]) * C;
          for (int64_t c = 0; c < C; ++c) inner[static_cast<size_t>(c)] += tx.weight[j] * static_cast<double>(p[c]);
        }
        for (int64_t c = 0; c < C; ++c) acc[static_cast<size_t>(c)] += ty.weight[i] * inner[static_cast<size_t>(c)];
      }
      T* o = out + (static_cast<int64_t>(y) * out_w + x) * C;
      for (int64_t c = 0; c < C; ++c) o[c] = static_cast<T>(acc[static_cast<size_t>(c)]);
    }
  }
}

// The side of the square grid holding `patches` patches, or 0 when there is none.
inline int64_t square_side(int64_t patches) {
  if (patches <= 0) return 0;
  int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(patches))));
  while (side * side > patches) --side;
  while ((side + 1) * (side + 1) <= patches) ++side;
  return side * side == patches ? side : 0;
}

}  // namespace detail

// The fixed 2D sin-cos position embedding of "Better plain ViT baselines" (big_vision's posemb_sincos_2d), as
// (1, num_prefix_tokens + H * W, dim) with zero rows for the prefix tokens (the class token) first. With
// Q = dim / 4, omega_k = temperature^(-k / (Q - 1)) for k < Q, and the patch at row y, column x (row by row):
//   [sin(x omega_0..Q-1), cos(x omega_0..Q-1), sin(y omega_0..Q-1), cos(y omega_0..Q-1)],
// computed in double. dim must be a multiple of 4 from 8 up.
template <class T>
Tensor<T> posemb_sincos_2d(GridSize grid, int64_t dim, int64_t num_prefix_tokens = 0, double temperature = 10000.0) {
  TESSERA_CHECK(grid.height > 0 && grid.width > 0, "posemb_sincos_2d: the grid must be positive, got ", grid.height,
                "x", grid.width);
  TESSERA_CHECK(dim % 4 == 0 && dim >= 8, "posemb_sincos_2d: dim must be a multiple of 4 from 8 up, got ", dim);
  TESSERA_CHECK(num_prefix_tokens >= 0, "posemb_sincos_2d: num_prefix_tokens must be non-negative, got ",
                num_prefix_tokens);
  const int64_t Q = dim / 4;
  std::vector<double> omega(static_cast<size_t>(Q));
  for (int64_t k = 0; k < Q; ++k)
    omega[static_cast<size_t>(k)] = 1.0 / std::pow(temperature, static_cast<double>(k) / static_cast<double>(Q - 1));
  Tensor<T> out = Tensor<T>::zeros(Shape{1, num_prefix_tokens + grid.height * grid.width, dim});
  for (int64_t y = 0; y < grid.height; ++y)
    for (int64_t x = 0; x < grid.width; ++x) {
      T* row = out.data() + (num_prefix_tokens + y * grid.width + x) * dim;
      for (int64_t k = 0; k < Q; ++k) {
        const double ax = static_cast<double>(x) * omega[static_cast<size_t>(k)];
        const double ay = static_cast<double>(y) * omega[static_cast<size_t>(k)];
        row[k] = static_cast<T>(std::sin(ax));
        row[Q + k] = static_cast<T>(std::cos(ax));
        row[2 * Q + k] = static_cast<T>(std::sin(ay));
        row[3 * Q + k] = static_cast<T>(std::cos(ay));
      }
    }
  return out;
}

// pos_embed is (1, num_prefix_tokens + H * W, D): the prefix tokens' positions (the class token's) first, then the
// patch positions row by row over the old grid (H, W). Returns (1, num_prefix_tokens + H' * W', D) for new_grid
// (H', W'): the prefix rows copied unchanged, the grid resampled per channel as timm's
// resample_abs_pos_embed(pos_embed, new_size, old_size, num_prefix_tokens, interpolation="bicubic", antialias)
// — PyTorch's bicubic interpolate with align_corners=False (see detail::bicubic_taps and bicubic_antialias_taps;
// note timm's own default is antialias=True, which only matters much when shrinking). Grids need not be square.
// The result is a new tensor that does not require grad; a grid equal to the old one gives a copy.
template <class T>
Tensor<T> resample_abs_pos_embed(const Tensor<T>& pos_embed, GridSize new_grid, GridSize old_grid,
                                 int64_t num_prefix_tokens = 1, bool antialias = false) {
  const char* op = "resample_abs_pos_embed";
  TESSERA_CHECK(pos_embed.defined(), op, ": pos_embed is an undefined tensor");
  const Shape& s = pos_embed.shape();
  TESSERA_CHECK(s.rank() == 3 && s[0] == 1 && s[2] > 0, op, ": pos_embed must be (1, tokens, dim), got shape ", s);
  TESSERA_CHECK(num_prefix_tokens >= 0, op, ": num_prefix_tokens must be non-negative, got ", num_prefix_tokens);
  TESSERA_CHECK(old_grid.height > 0 && old_grid.width > 0 && new_grid.height > 0 && new_grid.width > 0, op,
                ": grids must be positive, got old ", old_grid.height, "x", old_grid.width, " and new ", new_grid.height,
                "x", new_grid.width);
  TESSERA_CHECK(s[1] == num_prefix_tokens + old_grid.height * old_grid.width, op, ": pos_embed of shape ", s,
                " does not hold ", num_prefix_tokens, " prefix tokens and an old grid of ", old_grid.height, "x",
                old_grid.width, " (", num_prefix_tokens + old_grid.height * old_grid.width, " tokens)");
  const int64_t D = s[2];
  Tensor<T> out(Shape{1, num_prefix_tokens + new_grid.height * new_grid.width, D});
  std::copy(pos_embed.data(), pos_embed.data() + num_prefix_tokens * D, out.data());
  const T* grid_in = pos_embed.data() + num_prefix_tokens * D;
  T* grid_out = out.data() + num_prefix_tokens * D;
  if (new_grid == old_grid) {
    std::copy(grid_in, grid_in + old_grid.height * old_grid.width * D, grid_out);
    return out;
  }
  const auto rows = antialias ? detail::bicubic_antialias_taps(old_grid.height, new_grid.height)
                              : detail::bicubic_taps(old_grid.height, new_grid.height);
  const auto cols = antialias ? detail::bicubic_antialias_taps(old_grid.width, new_grid.width)
                              : detail::bicubic_taps(old_grid.width, new_grid.width);
  detail::resample_grid(grid_in, grid_out, old_grid.width, D, rows, cols);
  return out;
}

// The same with a square old grid read from the token count (as timm does when old_size is not given).
template <class T>
Tensor<T> resample_abs_pos_embed(const Tensor<T>& pos_embed, GridSize new_grid, int64_t num_prefix_tokens = 1,
                                 bool antialias = false) {
  TESSERA_CHECK(pos_embed.defined() && pos_embed.rank() == 3, "resample_abs_pos_embed: pos_embed must be (1, tokens, "
                "dim), got ", pos_embed.defined() ? pos_embed.shape().str() : std::string("an undefined tensor"));
  const int64_t patches = pos_embed.size(1) - num_prefix_tokens;
  const int64_t side = detail::square_side(patches);
  TESSERA_CHECK(side > 0, "resample_abs_pos_embed: pos_embed of shape ", pos_embed.shape(), " with ", num_prefix_tokens,
                " prefix tokens leaves ", patches, " patch positions, not a square grid; give the old grid");
  return resample_abs_pos_embed(pos_embed, new_grid, GridSize{side, side}, num_prefix_tokens, antialias);
}

// For loading a checkpoint into a model of another grid (e.g. timm's 224/16 = 14x14 into 32/4 = 8x8, or 14x14 into
// 384/16 = 24x24): when `dict` holds a "pos_embed" whose patch grid differs from `config`'s, replaces it in place
// (same position in the dict) with resample_abs_pos_embed to config's grid, keeping the prefix tokens' positions
// (config.num_prefix_tokens(): the class token's, if any) — or, for config.pos_embed "sincos", with the fixed table
// of config's grid. The old grid is `old_grid` when given, else the square one its token count implies. Returns
// whether it replaced pos_embed. Throws when pos_embed is not (1, tokens, config.embed_dim) or its grid cannot be
// known. Other keys (e.g. a patch_embed.proj.weight of another patch size) are left for load_state_dict to report.
template <class T>
bool resample_pos_embed_in_state_dict(StateDict<T>& dict, const ViTConfig& config,
                                      std::optional<GridSize> old_grid = std::nullopt, bool antialias = false) {
  const char* op = "resample_pos_embed_in_state_dict";
  const Tensor<T> pos_embed = dict.find("pos_embed");
  if (!pos_embed.defined()) return false;
  const Shape& s = pos_embed.shape();
  const int64_t prefix = config.num_prefix_tokens();
  TESSERA_CHECK(s.rank() == 3 && s[0] == 1 && s[2] == config.embed_dim, op, ": the checkpoint's pos_embed has shape ",
                s, " but the model needs (1, tokens, ", config.embed_dim, ")");
  const GridSize new_grid{config.grid_size(), config.grid_size()};
  GridSize from;
  if (old_grid) {
    from = *old_grid;
  } else {
    const int64_t side = detail::square_side(s[1] - prefix);
    TESSERA_CHECK(side > 0, op, ": the checkpoint's pos_embed of shape ", s, " holds ", s[1] - prefix,
                  " patch positions after ", prefix, " prefix token(s), not a square grid; give old_grid");
    from = GridSize{side, side};
  }
  TESSERA_CHECK(s[1] == prefix + from.height * from.width, op, ": the checkpoint's pos_embed of shape ", s,
                " does not match the old grid ", from.height, "x", from.width, " and ", prefix, " prefix token(s)");
  if (from == new_grid) return false;
  dict.insert("pos_embed", config.pos_embed == "sincos"
                               ? posemb_sincos_2d<T>(new_grid, config.embed_dim, prefix)
                               : resample_abs_pos_embed(pos_embed, new_grid, from, prefix, antialias));
  return true;
}

}  // namespace tessera::nn
