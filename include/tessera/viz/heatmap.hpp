// Heatmap pictures of attention maps: bilinear upsampling of a (h, w) map, a colour map, and alpha blending over the
// image (enlarged to a visible size); one heatmap, or a grid with one panel per head; both as Images or PNG files.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/data/image.hpp"
#include "tessera/viz/colormap.hpp"
#include "tessera/viz/png.hpp"

namespace tessera::viz {

struct HeatmapOptions {
  Colormap colormap = Colormap::inferno;
  double alpha = 0.5;        // out = (1 - alpha) * image + alpha * colour, per channel; in [0, 1]
  int64_t min_size = 224;    // the image is enlarged (nearest neighbour) by the smallest whole factor that makes its
                             // shorter side at least this many pixels; the picture has that size
  std::optional<double> value_min;  // the value drawn with the cold end of the colour map; default: the map's minimum
  std::optional<double> value_max;  // the value drawn with the hot end; default: the map's maximum
};

struct HeadGridOptions {
  HeatmapOptions heatmap;      // for every panel
  int64_t columns = 0;         // panels per row; 0 chooses ceil(sqrt(heads))
  int64_t gap = 4;             // background pixels between panels and around the grid
  Rgb background = {255, 255, 255};
  bool shared_scale = false;   // true: one value range over all heads, so their strengths compare; false: each
                               // panel spans the full colour map (explicit value_min/value_max win in both cases)
};

// Resizes a (h, w) map to (height, width) as PyTorch's interpolate(mode="bilinear", align_corners=False): output
// row d samples source row s = (d + 0.5) * h / height - 0.5 clamped below at 0; with i = floor(s) and f = s - i it
// blends rows i and min(i + 1, h - 1) with weights 1 - f and f; columns likewise. Computed in double.
template <class T>
Tensor<double> upsample_bilinear(const Tensor<T>& map, int64_t height, int64_t width) {
  TESSERA_CHECK(map.defined() && map.rank() == 2 && map.numel() > 0, "upsample_bilinear: the map must be a non-empty "
                "(height, width) tensor, got ", map.defined() ? map.shape().str() : std::string("undefined"));
  TESSERA_CHECK(height > 0 && width > 0, "upsample_bilinear: the output size must be positive, got ", height, "x",
                width);
  struct Tap {
    int64_t i0, i1;
    double f;
  };
  auto taps = [](int64_t in, int64_t out) {
    std::vector<Tap> t(static_cast<size_t>(out));
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    for (int64_t d = 0; d < out; ++d) {
      const double s = std::max(0.0, (static_cast<double>(d) + 0.5) * scale - 0.5);
      const int64_t i0 = std::min(static_cast<int64_t>(s), in - 1);
      t[static_cast<size_t>(d)] = {i0, std::min(i0 + 1, in - 1), s - static_cast<double>(i0)};
    }
    return t;
  };
  const int64_t h = map.size(0), w = map.size(1);
  const std::vector<Tap> ty = taps(h, height), tx = taps(w, width);
  Tensor<double> out(Shape{height, width});
  const T* m = map.data();
  double* o = out.data();
  for (int64_t y = 0; y < height; ++y) {
    const Tap& a = ty[static_cast<size_t>(y)];
    for (int64_t x = 0; x < width; ++x) {
      const Tap& b = tx[static_cast<size_t>(x)];
      auto at = [&](int64_t r, int64_t c) { return static_cast<double>(m[r * w + c]); };
      const double top = (1.0 - b.f) * at(a.i0, b.i0) + b.f * at(a.i0, b.i1);
      const double bottom = (1.0 - b.f) * at(a.i1, b.i0) + b.f * at(a.i1, b.i1);
      o[y * width + x] = (1.0 - a.f) * top + a.f * bottom;
    }
  }
  return out;
}

namespace detail {

// Largest picture side product accepted, so that a mistaken size fails clearly instead of exhausting memory.
inline constexpr int64_t kMaxPicturePixels = int64_t{1} << 28;

template <class T>
void check_map(const Tensor<T>& map, const char* op) {
  TESSERA_CHECK(map.defined(), op, ": the map is an undefined tensor");
  TESSERA_CHECK(map.rank() == 2 && map.numel() > 0, op, ": the map must be a non-empty (height, width) tensor, got shape ",
                map.shape());
  const T* v = map.data();
  for (int64_t i = 0; i < map.numel(); ++i)
    TESSERA_CHECK(std::isfinite(static_cast<double>(v[i])), op, ": the map holds a non-finite value (", v[i],
                  ") at flat index ", i);
}

inline void check_picture_image(const data::Image& image, const char* op) {
  TESSERA_CHECK(image.channels >= 1 && image.channels <= 4, op, ": the image needs 1 to 4 channels, got ",
                image.size_string());
  TESSERA_CHECK(image.height > 0 && image.width > 0, op, ": the image is empty (", image.size_string(), ")");
  TESSERA_CHECK(static_cast<int64_t>(image.pixels.size()) == image.numel(), op, ": the image ", image.size_string(),
                " holds ", image.pixels.size(), " bytes, expected ", image.numel());
}

inline void check_heatmap_options(const HeatmapOptions& o, const char* op) {
  TESSERA_CHECK(o.alpha >= 0.0 && o.alpha <= 1.0, op, ": alpha must be in [0, 1], got ", o.alpha);
  TESSERA_CHECK(o.min_size >= 1, op, ": min_size must be at least 1, got ", o.min_size);
  TESSERA_CHECK(!o.value_min || std::isfinite(*o.value_min), op, ": value_min is not finite");
  TESSERA_CHECK(!o.value_max || std::isfinite(*o.value_max), op, ": value_max is not finite");
  TESSERA_CHECK(!o.value_min || !o.value_max || *o.value_min < *o.value_max, op, ": value_min ", o.value_min.value_or(0),
                " must be below value_max ", o.value_max.value_or(0));
}

// The whole factor that enlarges the shorter side of a height x width image to at least min_size.
inline int64_t enlargement_factor(int64_t height, int64_t width, int64_t min_size) {
  const int64_t shorter = std::min(height, width);
  return std::max<int64_t>(1, min_size / shorter + (min_size % shorter != 0 ? 1 : 0));
}

// Throws naming `op` when a height x width picture enlarged by `factor` exceeds kMaxPicturePixels.
inline void check_picture_size(int64_t height, int64_t width, int64_t factor, const char* op) {
  const double pixels = static_cast<double>(height) * static_cast<double>(width) * static_cast<double>(factor) *
                        static_cast<double>(factor);
  TESSERA_CHECK(pixels <= static_cast<double>(kMaxPicturePixels), op, ": a picture of ", height, "x", width,
                " pixels enlarged ", factor, " times is too large (limit ", kMaxPicturePixels, " pixels)");
}

// The value range [lo, hi] drawn over the colour map: explicit bounds, else the map's own minimum and maximum.
template <class T>
std::pair<double, double> value_range(const Tensor<T>& map, const HeatmapOptions& o) {
  const T* v = map.data();
  const auto [mn, mx] = std::minmax_element(v, v + map.numel());
  return {o.value_min.value_or(static_cast<double>(*mn)), o.value_max.value_or(static_cast<double>(*mx))};
}

// Paints the heatmap of `map` over `image` enlarged by `factor` into out (RGB, height*factor x width*factor) at
// (top, left). The image is read as grey (1 or 2 channels: the first) or RGB (3 or 4 channels: the first three).
template <class T>
void paint_heatmap(data::Image& out, int64_t top, int64_t left, const Tensor<T>& map, const data::Image& image,
                   int64_t factor, double lo, double hi, const HeatmapOptions& o) {
  const int64_t H = image.height * factor, W = image.width * factor;
  const Tensor<double> up = upsample_bilinear(map, H, W);
  const double* u = up.data();
  const double span = hi - lo;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const double t = span > 0.0 ? (u[y * W + x] - lo) / span : 0.0;
      const Rgb c = colormap_color(o.colormap, t);
      const uint8_t* p = image.data() + ((y / factor) * image.width + x / factor) * image.channels;
      const bool rgb = image.channels >= 3;
      const double base[3] = {static_cast<double>(p[0]), static_cast<double>(p[rgb ? 1 : 0]),
                               static_cast<double>(p[rgb ? 2 : 0])};
      const double colour[3] = {static_cast<double>(c.r), static_cast<double>(c.g), static_cast<double>(c.b)};
      uint8_t* q = out.data() + ((top + y) * out.width + left + x) * 3;
      for (int k = 0; k < 3; ++k)
        q[k] = static_cast<uint8_t>(std::lround(std::clamp((1.0 - o.alpha) * base[k] + o.alpha * colour[k], 0.0, 255.0)));
    }
}

}  // namespace detail

// The heatmap of `map` (any (h, w); usually a (grid, grid) attention map) over `image`: the image enlarged by the
// smallest whole factor k with min(H, W) * k >= min_size (nearest neighbour), the map upsampled bilinearly to the
// same size, values scaled to [0, 1] over [value_min, value_max] (a constant map is all cold), coloured and blended.
// The result is RGB, (H * k) x (W * k).
template <class T>
data::Image heatmap_image(const Tensor<T>& map, const data::Image& image, const HeatmapOptions& options = {}) {
  const char* op = "heatmap_image";
  detail::check_map(map, op);
  detail::check_picture_image(image, op);
  detail::check_heatmap_options(options, op);
  const int64_t k = detail::enlargement_factor(image.height, image.width, options.min_size);
  detail::check_picture_size(image.height, image.width, k, op);
  const auto [lo, hi] = detail::value_range(map, options);
  TESSERA_CHECK(lo <= hi, op, ": the value range [", lo, ", ", hi, "] is empty");
  data::Image out(image.height * k, image.width * k, 3);
  detail::paint_heatmap(out, 0, 0, map, image, k, lo, hi, options);
  return out;
}

// One heatmap panel per head of `maps` (heads, h, w), e.g. cls_attention_maps(probs), laid out row by row in a grid
// of `columns` columns with `gap` background pixels between and around the panels. Each panel is heatmap_image of
// its head over `image`.
template <class T>
data::Image head_grid_image(const Tensor<T>& maps, const data::Image& image, const HeadGridOptions& options = {}) {
  const char* op = "head_grid_image";
  TESSERA_CHECK(maps.defined() && maps.rank() == 3 && maps.numel() > 0, op,
                ": the maps must be a non-empty (heads, height, width) tensor, got ",
                maps.defined() ? maps.shape().str() : std::string("undefined"));
  detail::check_picture_image(image, op);
  detail::check_heatmap_options(options.heatmap, op);
  TESSERA_CHECK(options.columns >= 0, op, ": columns must be 0 (automatic) or positive, got ", options.columns);
  TESSERA_CHECK(options.gap >= 0, op, ": gap must be non-negative, got ", options.gap);
  const int64_t heads = maps.size(0), h = maps.size(1), w = maps.size(2);
  std::vector<Tensor<T>> panels;
  for (int64_t i = 0; i < heads; ++i) {
    panels.push_back(maps.rows(i, 1).view(Shape{h, w}));
    detail::check_map(panels.back(), op);
  }
  HeatmapOptions panel_options = options.heatmap;
  if (options.shared_scale) {
    const auto [mn, mx] = std::minmax_element(maps.data(), maps.data() + maps.numel());
    if (!panel_options.value_min) panel_options.value_min = static_cast<double>(*mn);
    if (!panel_options.value_max) panel_options.value_max = static_cast<double>(*mx);
  }
  int64_t columns = options.columns;
  if (columns == 0) {
    columns = 1;
    while (columns * columns < heads) ++columns;
  }
  columns = std::min(columns, heads);
  const int64_t rows = (heads + columns - 1) / columns;
  const int64_t k = detail::enlargement_factor(image.height, image.width, panel_options.min_size);
  detail::check_picture_size(image.height * rows, image.width * columns, k, op);
  const int64_t ph = image.height * k, pw = image.width * k;
  const int64_t height = rows * ph + (rows + 1) * options.gap, width = columns * pw + (columns + 1) * options.gap;
  TESSERA_CHECK(height * width <= detail::kMaxPicturePixels, op, ": the grid of ", height, "x", width,
                " pixels is too large");
  data::Image out(height, width, 3);
  for (int64_t p = 0; p < height * width; ++p) {
    out.pixels[static_cast<size_t>(3 * p)] = options.background.r;
    out.pixels[static_cast<size_t>(3 * p + 1)] = options.background.g;
    out.pixels[static_cast<size_t>(3 * p + 2)] = options.background.b;
  }
  for (int64_t i = 0; i < heads; ++i) {
    auto [lo, hi] = detail::value_range(panels[static_cast<size_t>(i)], panel_options);
    TESSERA_CHECK(lo <= hi, op, ": the value range [", lo, ", ", hi, "] of head ", i, " is empty");
    const int64_t top = options.gap + (i / columns) * (ph + options.gap);
    const int64_t left = options.gap + (i % columns) * (pw + options.gap);
    detail::paint_heatmap(out, top, left, panels[static_cast<size_t>(i)], image, k, lo, hi, panel_options);
  }
  return out;
}

// heatmap_image written as a PNG file (atomically); errors name the file.
template <class T>
void write_heatmap_png(const std::filesystem::path& path, const Tensor<T>& map, const data::Image& image,
                       const HeatmapOptions& options = {}) {
  write_png(path, heatmap_image(map, image, options));
}

// head_grid_image written as a PNG file (atomically); errors name the file.
template <class T>
void write_head_grid_png(const std::filesystem::path& path, const Tensor<T>& maps, const data::Image& image,
                         const HeadGridOptions& options = {}) {
  write_png(path, head_grid_image(maps, image, options));
}

}  // namespace tessera::viz
