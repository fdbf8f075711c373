// Heatmap pictures of attention maps: bilinear upsampling of a (h, w) map, a colour map, and a blend over the image
// (enlarged to a visible size) whose opacity follows the values, so that cold pixels keep the photo; one heatmap, or
// a grid with one panel per head; optionally annotated with a title, head numbers and a labelled colour bar; both as
// Images or PNG files.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
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
#include "tessera/viz/text.hpp"

namespace tessera::viz {

// How the colours are blended over the image. With t in [0, 1] a pixel's place in the value range [lo, hi]:
//   by_value: opacity a = alpha * t * contrast, contrast = (hi - lo) / hi when 0 <= lo < hi (else 1). A pixel at the
//             bottom of the range keeps the photo exactly, the hottest pixels get alpha * contrast, and a diffuse map
//             (its values all close to its maximum: contrast near 0) barely tints the picture.
//   uniform:  opacity a = alpha everywhere (the colour map's cold end darkens the whole photo).
// out = (1 - a) * image + a * colour(t), per channel.
enum class Overlay { by_value, uniform };

struct HeatmapOptions {
  Colormap colormap = Colormap::inferno;
  Overlay overlay = Overlay::by_value;
  double alpha = 0.7;        // the heatmap's largest opacity (Overlay), in [0, 1]; 0 draws the image alone
  int64_t min_size = 224;    // the image is enlarged (nearest neighbour) by the smallest whole factor that makes its
                             // shorter side at least this many pixels; the heatmap has that size
  std::optional<double> value_min;  // the value drawn with the cold end of the colour map; default: the map's minimum
  std::optional<double> value_max;  // the value drawn with the hot end; default: the map's maximum
  // Annotations. With any of them the picture gets a white margin (4 text pixels) around the heatmap.
  std::string title;         // lines ('\n' between them) drawn above the heatmap (above the whole grid in a head grid)
  bool colorbar = false;     // a colour bar right of the heatmap, hot end up, labelled with hi, (lo + hi) / 2 and lo
  int64_t text_scale = 0;    // screen pixels per font pixel (5x7 font); 0: max(1, (side + 64) / 128) for a heatmap
                             // whose shorter side is `side` pixels (1 up to 191, 2 up to 319...)
};

struct HeadGridOptions {
  HeatmapOptions heatmap;      // for every panel; heatmap.title is the title of the whole grid
  int64_t columns = 0;         // panels per row; 0 chooses ceil(sqrt(heads))
  int64_t gap = 4;             // background pixels between panels and around the grid (at least 4 text pixels when
                               // the grid is annotated)
  Rgb background = {255, 255, 255};
  bool shared_scale = false;   // true: one value range over all heads, so their strengths compare; false: each
                               // panel spans the full colour map (explicit value_min/value_max win in both cases)
  bool head_numbers = false;   // "head 0", "head 1"... above each panel
};

// The labels of a colour bar over [lo, hi], top to bottom: hi, (lo + hi) / 2, lo, each printed with %g at 3
// significant digits, or more (up to 6) until the three print differently (unless lo == hi).
inline std::array<std::string, 3> colorbar_labels(double lo, double hi) {
  auto format = [](double v, int digits) {
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "%.*g", digits, v == 0.0 ? 0.0 : v);  // no "-0"
    return std::string(buffer);
  };
  const double middle = 0.5 * (lo + hi);
  int digits = 3;
  while (digits < 6 && lo != hi &&
         (format(lo, digits) == format(middle, digits) || format(middle, digits) == format(hi, digits)))
    ++digits;
  return {format(hi, digits), format(middle, digits), format(lo, digits)};
}

// A vertical colour bar of `height` x `width` pixels (RGB), the hot end on top: row r has the colour of
// t = 1 - r / (height - 1) (t = 1 for a single row), the same across the row.
inline data::Image colorbar_image(Colormap map, int64_t height, int64_t width) {
  TESSERA_CHECK(height > 0 && width > 0, "colorbar_image: the size must be positive, got ", height, "x", width);
  data::Image bar(height, width, 3);
  for (int64_t r = 0; r < height; ++r) {
    const double t = height > 1 ? 1.0 - static_cast<double>(r) / static_cast<double>(height - 1) : 1.0;
    const Rgb c = colormap_color(map, t);
    for (int64_t x = 0; x < width; ++x) {
      uint8_t* p = bar.data() + (r * width + x) * 3;
      p[0] = c.r;
      p[1] = c.g;
      p[2] = c.b;
    }
  }
  return bar;
}

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
  TESSERA_CHECK(o.text_scale >= 0 && o.text_scale <= 64, op, ": text_scale must be 0 (automatic) to 64, got ",
                o.text_scale);
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

// The contrast of a value range for Overlay::by_value: (hi - lo) / hi for 0 <= lo < hi, else 1.
inline double overlay_contrast(double lo, double hi) { return lo >= 0.0 && hi > lo ? (hi - lo) / hi : 1.0; }

// Paints the heatmap of `map` over `image` enlarged by `factor` into out (RGB, height*factor x width*factor) at
// (top, left), blended as options.overlay says. The image is read as grey (1 or 2 channels: the first) or RGB (3 or 4
// channels: the first three).
template <class T>
void paint_heatmap(data::Image& out, int64_t top, int64_t left, const Tensor<T>& map, const data::Image& image,
                   int64_t factor, double lo, double hi, const HeatmapOptions& o) {
  const int64_t H = image.height * factor, W = image.width * factor;
  const Tensor<double> up = upsample_bilinear(map, H, W);
  const double* u = up.data();
  const double span = hi - lo;
  const double contrast = overlay_contrast(lo, hi);
  const bool rgb = image.channels >= 3;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const double t = span > 0.0 ? std::clamp((u[y * W + x] - lo) / span, 0.0, 1.0) : 0.0;
      const Rgb c = colormap_color(o.colormap, t);
      const double a = o.overlay == Overlay::uniform ? o.alpha : o.alpha * t * contrast;
      const uint8_t* p = image.data() + ((y / factor) * image.width + x / factor) * image.channels;
      const double base[3] = {static_cast<double>(p[0]), static_cast<double>(p[rgb ? 1 : 0]),
                               static_cast<double>(p[rgb ? 2 : 0])};
      const double colour[3] = {static_cast<double>(c.r), static_cast<double>(c.g), static_cast<double>(c.b)};
      uint8_t* q = out.data() + ((top + y) * out.width + left + x) * 3;
      for (int k = 0; k < 3; ++k)
        q[k] = static_cast<uint8_t>(std::lround(std::clamp((1.0 - a) * base[k] + a * colour[k], 0.0, 255.0)));
    }
}

// ---- annotations: text scale s, title lines 10 s apart, the colour bar block ----

// The text scale for a heatmap whose shorter side is `side` pixels (HeatmapOptions::text_scale).
inline int64_t text_scale_for(int64_t side, int64_t requested) {
  return requested > 0 ? requested : std::max<int64_t>(1, (side + 64) / 128);
}

// Black text on a light background, white on a dark one.
inline Rgb ink_on(Rgb background) {
  return 299 * background.r + 587 * background.g + 114 * background.b < 128 * 1000 ? Rgb{255, 255, 255} : Rgb{0, 0, 0};
}

inline std::vector<std::string> title_lines(const std::string& title) {
  std::vector<std::string> lines;
  if (title.empty()) return lines;
  size_t start = 0;
  for (size_t end; (end = title.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(title.substr(start, end - start));
  lines.push_back(title.substr(start));
  return lines;
}

// A line of text takes 7 s pixels and 3 s below it.
inline int64_t line_step(int64_t s) { return text_height(s) + 3 * s; }

inline int64_t title_width(const std::vector<std::string>& lines, int64_t s) {
  int64_t width = 0;
  for (const std::string& line : lines) width = std::max(width, text_width(line, s));
  return width;
}

inline void draw_lines(data::Image& out, int64_t top, int64_t left, const std::vector<std::string>& lines, int64_t s,
                       Rgb ink) {
  for (size_t i = 0; i < lines.size(); ++i)
    draw_text(out, top + static_cast<int64_t>(i) * line_step(s), left, lines[i], ink, s);
}

// The colour bar block right of a heatmap at text scale s: a gap of 3 s, the bar (8 s wide), tick marks (2 s), a
// gap of s, then the labels.
inline int64_t colorbar_block_width(const std::array<std::string, 3>& labels, int64_t s) {
  int64_t widest = 0;
  for (const std::string& label : labels) widest = std::max(widest, text_width(label, s));
  return 14 * s + widest;
}

// Paints the colour bar block (colorbar_block_width wide, `height` tall) with its top-left corner at (top, left):
// the bar beside a heatmap of the same height, ticks and labels at its top, middle and bottom rows (the middle
// label left out when the bar is too short for three, the bottom one too when it is too short for two).
inline void paint_colorbar(data::Image& out, int64_t top, int64_t left, int64_t height, int64_t s, Colormap map,
                           const std::array<std::string, 3>& labels, Rgb ink) {
  const int64_t bar_left = left + 3 * s, bar_width = 8 * s;
  const data::Image bar = colorbar_image(map, height, bar_width);
  for (int64_t r = 0; r < height; ++r)
    std::copy_n(bar.data() + r * bar_width * 3, bar_width * 3, out.data() + ((top + r) * out.width + bar_left) * 3);
  const int64_t line = text_height(s);
  const bool two = height >= 2 * line + s, three = height >= 3 * line + 2 * s;
  const int64_t rows[3] = {top, top + (height - 1) / 2, top + height - 1};
  const int64_t label_tops[3] = {top, top + (height - line) / 2, top + height - line};
  for (int i = 0; i < 3; ++i) {
    if ((i == 1 && !three) || (i == 2 && !two)) continue;
    const int64_t tick_top = std::clamp(rows[i] - (s - 1) / 2, top, std::max(top, top + height - s));
    for (int64_t r = tick_top; r < tick_top + s; ++r)
      for (int64_t x = bar_left + bar_width; x < bar_left + bar_width + 2 * s; ++x) {
        uint8_t* p = out.data() + (r * out.width + x) * 3;
        p[0] = ink.r;
        p[1] = ink.g;
        p[2] = ink.b;
      }
    draw_text(out, label_tops[i], bar_left + bar_width + 3 * s, labels[static_cast<size_t>(i)], ink, s);
  }
}

inline void fill(data::Image& out, Rgb colour) {
  for (int64_t p = 0; p < out.height * out.width; ++p) {
    out.pixels[static_cast<size_t>(3 * p)] = colour.r;
    out.pixels[static_cast<size_t>(3 * p + 1)] = colour.g;
    out.pixels[static_cast<size_t>(3 * p + 2)] = colour.b;
  }
}

}  // namespace detail

// The heatmap of `map` (any (h, w); usually a (grid, grid) attention map) over `image`: the image enlarged by the
// smallest whole factor k with min(H, W) * k >= min_size (nearest neighbour), the map upsampled bilinearly to the
// same size, values scaled to [0, 1] over [value_min, value_max] (a constant map is all cold), coloured and blended
// (Overlay). The result is RGB, (H * k) x (W * k); with a title or a colour bar, those on a white margin around it:
//   4 s margin, the title's lines (10 s each), the heatmap and right of it the colour bar block, 4 s margin,
// s the text scale.
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
  const int64_t ph = image.height * k, pw = image.width * k;
  const std::vector<std::string> lines = detail::title_lines(options.title);
  if (lines.empty() && !options.colorbar) {
    data::Image out(ph, pw, 3);
    detail::paint_heatmap(out, 0, 0, map, image, k, lo, hi, options);
    return out;
  }
  const int64_t s = detail::text_scale_for(std::min(ph, pw), options.text_scale);
  const int64_t margin = 4 * s, title_height = static_cast<int64_t>(lines.size()) * detail::line_step(s);
  const std::array<std::string, 3> labels = colorbar_labels(lo, hi);
  const int64_t bar_width = options.colorbar ? detail::colorbar_block_width(labels, s) : 0;
  const int64_t width = 2 * margin + std::max(pw + bar_width, detail::title_width(lines, s));
  const int64_t height = 2 * margin + title_height + ph;
  const double pixels = static_cast<double>(height) * static_cast<double>(width);
  TESSERA_CHECK(pixels <= static_cast<double>(detail::kMaxPicturePixels), op,
                ": the annotated picture of ", height, "x", width, " pixels is too large");
  const Rgb background{255, 255, 255}, ink = detail::ink_on(background);
  data::Image out(height, width, 3);
  detail::fill(out, background);
  detail::draw_lines(out, margin, margin, lines, s, ink);
  detail::paint_heatmap(out, margin + title_height, margin, map, image, k, lo, hi, options);
  if (options.colorbar)
    detail::paint_colorbar(out, margin + title_height, margin + pw, ph, s, options.colormap, labels, ink);
  return out;
}

// One heatmap panel per head of `maps` (heads, h, w), e.g. cls_attention_maps(probs), laid out row by row in a grid
// of `columns` columns with `gap` background pixels between and around the panels. Each panel is the heatmap of its
// head over `image` (heatmap_image without a title). Annotated (a title in heatmap.title, head_numbers or
// heatmap.colorbar): the title's lines on top, then cells of "head i" above the panel and the panel's colour bar
// right of it (each panel's own range, or the shared one).
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

  std::vector<std::pair<double, double>> ranges;
  for (int64_t i = 0; i < heads; ++i) {
    ranges.push_back(detail::value_range(panels[static_cast<size_t>(i)], panel_options));
    TESSERA_CHECK(ranges.back().first <= ranges.back().second, op, ": the value range [", ranges.back().first, ", ",
                  ranges.back().second, "] of head ", i, " is empty");
  }
  const std::vector<std::string> lines = detail::title_lines(options.heatmap.title);
  const bool annotated = !lines.empty() || options.head_numbers || options.heatmap.colorbar;
  const int64_t s = detail::text_scale_for(std::min(ph, pw), options.heatmap.text_scale);
  const int64_t gap = annotated ? std::max(options.gap, 4 * s) : options.gap;
  int64_t bar_width = 0;
  if (options.heatmap.colorbar)
    for (const auto& [lo, hi] : ranges)
      bar_width = std::max(bar_width, detail::colorbar_block_width(colorbar_labels(lo, hi), s));
  const int64_t label_height = options.head_numbers ? detail::line_step(s) : 0;
  const int64_t title_height = static_cast<int64_t>(lines.size()) * detail::line_step(s);
  const int64_t cell_width = pw + bar_width, cell_height = label_height + ph;
  const int64_t width = std::max(columns * cell_width + (columns + 1) * gap, detail::title_width(lines, s) + 2 * gap);
  const int64_t height = title_height + rows * cell_height + (rows + 1) * gap;
  const double pixels = static_cast<double>(height) * static_cast<double>(width);
  TESSERA_CHECK(pixels <= static_cast<double>(detail::kMaxPicturePixels), op,
                ": the grid of ", height, "x", width, " pixels is too large");
  data::Image out(height, width, 3);
  detail::fill(out, options.background);
  const Rgb ink = detail::ink_on(options.background);
  detail::draw_lines(out, gap, gap, lines, s, ink);
  for (int64_t i = 0; i < heads; ++i) {
    const auto [lo, hi] = ranges[static_cast<size_t>(i)];
    const int64_t top = title_height + gap + (i / columns) * (cell_height + gap);
    const int64_t left = gap + (i % columns) * (cell_width + gap);
    if (options.head_numbers) draw_text(out, top, left, "head " + std::to_string(i), ink, s);
    detail::paint_heatmap(out, top + label_height, left, panels[static_cast<size_t>(i)], image, k, lo, hi,
                          panel_options);
    if (options.heatmap.colorbar)
      detail::paint_colorbar(out, top + label_height, left + pw, ph, s, panel_options.colormap, colorbar_labels(lo, hi),
                             ink);
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
