// Deterministic uint8 image operations with torchvision's tensor semantics, the ops behind TrivialAugment and
// RandAugment (data/auto_augment.hpp): autocontrast, equalize, solarize, posterize, brightness / saturation /
// contrast / sharpness adjustment, and affine warps (rotate, shear, translate) with nearest or bilinear sampling.
//
// Images are uint8 HWC (data/image.hpp) with 1 or 3 channels (the colour ops need RGB to differ from grey). Arithmetic
// follows torchvision's uint8 tensor path: blends in float32, each product rounded, clamped to [0, 255] and
// truncated; the blurred image of sharpness and the warps round to nearest (ties to even). The colour ops give
// torchvision's values exactly (tests/fixtures/make_torchvision_augment_fixture.py); the warps may pick the other
// pixel at near-ties (see warp_affine). Per-image tables of products and lookups keep each op at a pass or two over
// the pixels.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/image.hpp"

namespace tessera::data {

namespace detail {

inline void check_colour_image(const Image& image, const char* op) {
  TESSERA_CHECK(image.channels == 1 || image.channels == 3, op, ": expects a 1- or 3-channel image, got ",
                image.size_string());
}

// a * b rounded to float32 by itself. torchvision rounds every product (its mul and add are separate kernels); a
// compiler allowed to contract (GCC's default -ffp-contract=fast, with FMA under -march=native) would fuse a * b + c
// into one rounding, so the products below go through memory: the ops add looked-up products and never multiply.
inline float rounded_product(float a, float b) {
  volatile float product = a * b;
  return product;
}

// factor * v for every uint8 v, each rounded to float32.
inline std::array<float, 256> product_table(float factor) {
  std::array<float, 256> table{};
  for (int v = 0; v < 256; ++v) table[static_cast<size_t>(v)] = rounded_product(factor, static_cast<float>(v));
  return table;
}

// trunc(clamp(v, 0, 255)) as torchvision's `.clamp(0, 255).to(torch.uint8)`.
inline uint8_t to_uint8_truncated(float v) {
  return static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f));
}

// Applies a 256-entry table to every channel value.
inline Image apply_lut(const Image& image, const std::array<uint8_t, 256>& lut) {
  Image out(image.height, image.width, image.channels);
  const uint8_t* in = image.data();
  uint8_t* o = out.data();
  const int64_t n = image.numel();
  for (int64_t i = 0; i < n; ++i) o[i] = lut[in[i]];
  return out;
}

// Applies one table per channel.
inline Image apply_channel_luts(const Image& image, const std::vector<std::array<uint8_t, 256>>& luts) {
  Image out(image.height, image.width, image.channels);
  const int64_t C = image.channels, P = image.height * image.width;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t c = 0; c < C; ++c)
      out.data()[p * C + c] = luts[static_cast<size_t>(c)][image.data()[p * C + c]];
  return out;
}

// torchvision's _blend of uint8 images in float32, out = trunc(clamp(ratio * a + (1 - ratio) * b)), with the two
// products looked up: a = ratio * a, b = (1 - ratio) * b for uint8 a and b.
struct Blend {
  std::array<float, 256> a, b;
  explicit Blend(double ratio)
      : a(product_table(static_cast<float>(ratio))), b(product_table(static_cast<float>(1.0 - ratio))) {}
  uint8_t operator()(uint8_t first, uint8_t second) const { return to_uint8_truncated(a[first] + b[second]); }
};

// The products of torchvision's rgb_to_grayscale weights with every uint8 value.
struct GreyTables {
  std::array<float, 256> red = product_table(0.2989f), green = product_table(0.587f), blue = product_table(0.114f);
  uint8_t operator()(uint8_t r, uint8_t g, uint8_t b) const {
    return static_cast<uint8_t>(red[r] + green[g] + blue[b]);
  }
};

inline const GreyTables& grey_tables() {
  static const GreyTables tables;
  return tables;
}

}  // namespace detail

// Grey level of an RGB pixel as torchvision's rgb_to_grayscale on uint8 tensors: trunc(0.2989 r + 0.587 g + 0.114 b),
// in float32.
inline uint8_t grey_level(uint8_t r, uint8_t g, uint8_t b) { return detail::grey_tables()(r, g, b); }

// The grey levels of an image, one per pixel (the channel itself for a 1-channel image).
inline std::vector<uint8_t> grey_levels(const Image& image) {
  detail::check_colour_image(image, "grey_levels");
  const int64_t P = image.height * image.width;
  std::vector<uint8_t> grey(static_cast<size_t>(P));
  const uint8_t* px = image.data();
  if (image.channels == 1) return std::vector<uint8_t>(px, px + P);
  const detail::GreyTables& grey_of = detail::grey_tables();
  for (int64_t p = 0; p < P; ++p) grey[static_cast<size_t>(p)] = grey_of(px[3 * p], px[3 * p + 1], px[3 * p + 2]);
  return grey;
}

// Per channel: maps [min, max] of the channel linearly onto [0, 255], v -> trunc((v - min) * (1 / (max - min)) * 255)
// in float32; a constant channel is left as it is.
inline Image autocontrast(const Image& image) {
  detail::check_colour_image(image, "autocontrast");
  const int64_t C = image.channels, P = image.height * image.width;
  std::vector<std::array<uint8_t, 256>> luts(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    uint8_t lo = 255, hi = 0;
    for (int64_t p = 0; p < P; ++p) {
      const uint8_t v = image.data()[p * C + c];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    auto& lut = luts[static_cast<size_t>(c)];
    // torchvision's 255 / (max - min) on a tensor is reciprocal(max - min) * 255, in float32.
    const float scale = hi > lo ? (1.0f / static_cast<float>(hi - lo)) * 255.0f : 1.0f;
    const float offset = hi > lo ? static_cast<float>(lo) : 0.0f;
    for (int v = 0; v < 256; ++v)
      lut[static_cast<size_t>(v)] = detail::to_uint8_truncated((static_cast<float>(v) - offset) * scale);
  }
  return detail::apply_channel_luts(image, luts);
}

// Per-channel histogram equalisation as torchvision (and PIL): step = floor((pixels - count of the channel's largest
// value) / 255); if step is 0 the channel is kept, otherwise v -> min(255, floor((cdf(v - 1) + step / 2) / step))
// with cdf(-1) = 0, cdf(v) = number of pixels <= v.
inline Image equalize(const Image& image) {
  detail::check_colour_image(image, "equalize");
  const int64_t C = image.channels, P = image.height * image.width;
  std::vector<std::array<uint8_t, 256>> luts(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    std::array<int64_t, 256> histogram{};
    for (int64_t p = 0; p < P; ++p) ++histogram[image.data()[p * C + c]];
    int64_t last_count = 0;
    for (int v = 255; v >= 0; --v)
      if (histogram[static_cast<size_t>(v)] != 0) {
        last_count = histogram[static_cast<size_t>(v)];
        break;
      }
    const int64_t step = (P - last_count) / 255;
    auto& lut = luts[static_cast<size_t>(c)];
    if (step == 0) {
      for (int v = 0; v < 256; ++v) lut[static_cast<size_t>(v)] = static_cast<uint8_t>(v);
      continue;
    }
    int64_t cdf_before = 0;
    for (int v = 0; v < 256; ++v) {
      lut[static_cast<size_t>(v)] = static_cast<uint8_t>(std::min<int64_t>(255, (cdf_before + step / 2) / step));
      cdf_before += histogram[static_cast<size_t>(v)];
    }
  }
  return detail::apply_channel_luts(image, luts);
}

// v -> 255 - v where v >= threshold.
inline Image solarize(const Image& image, double threshold) {
  detail::check_colour_image(image, "solarize");
  TESSERA_CHECK(threshold <= 255.0, "solarize: threshold must be at most 255, got ", threshold);
  std::array<uint8_t, 256> lut{};
  for (int v = 0; v < 256; ++v)
    lut[static_cast<size_t>(v)] = static_cast<uint8_t>(static_cast<double>(v) >= threshold ? 255 - v : v);
  return detail::apply_lut(image, lut);
}

// Keeps the `bits` most significant bits of each value (0 to 8): v & ~(2^(8 - bits) - 1).
inline Image posterize(const Image& image, int bits) {
  detail::check_colour_image(image, "posterize");
  TESSERA_CHECK(bits >= 0 && bits <= 8, "posterize: bits must be in [0, 8], got ", bits);
  const auto mask = static_cast<uint8_t>(~((1u << (8 - bits)) - 1u) & 0xFFu);
  std::array<uint8_t, 256> lut{};
  for (int v = 0; v < 256; ++v) lut[static_cast<size_t>(v)] = static_cast<uint8_t>(v & mask);
  return detail::apply_lut(image, lut);
}

// Blend with black: v -> trunc(clamp(factor * v)). factor >= 0; 1 keeps the image.
inline Image adjust_brightness(const Image& image, double factor) {
  detail::check_colour_image(image, "adjust_brightness");
  TESSERA_CHECK(factor >= 0.0, "adjust_brightness: factor must be non-negative, got ", factor);
  const detail::Blend blend(factor);
  std::array<uint8_t, 256> lut{};
  for (int v = 0; v < 256; ++v) lut[static_cast<size_t>(v)] = blend(static_cast<uint8_t>(v), 0);
  return detail::apply_lut(image, lut);
}

// Blend with the grey image (grey_level of each pixel): v -> trunc(clamp(factor * v + (1 - factor) * grey)).
// 0 gives grey, 1 keeps the image; a 1-channel image is returned as it is.
inline Image adjust_saturation(const Image& image, double factor) {
  detail::check_colour_image(image, "adjust_saturation");
  TESSERA_CHECK(factor >= 0.0, "adjust_saturation: factor must be non-negative, got ", factor);
  if (image.channels == 1) return image;
  const detail::Blend blend(factor);
  Image out(image.height, image.width, 3);
  const int64_t P = image.height * image.width;
  const uint8_t* in = image.data();
  const detail::GreyTables& grey_of = detail::grey_tables();
  for (int64_t p = 0; p < P; ++p) {
    const uint8_t grey = grey_of(in[3 * p], in[3 * p + 1], in[3 * p + 2]);
    for (int64_t c = 0; c < 3; ++c) out.data()[3 * p + c] = blend(in[3 * p + c], grey);
  }
  return out;
}

// Blend with the mean grey level m of the whole image (float32): v -> trunc(clamp(factor * v + (1 - factor) * m)).
inline Image adjust_contrast(const Image& image, double factor) {
  detail::check_colour_image(image, "adjust_contrast");
  TESSERA_CHECK(factor >= 0.0, "adjust_contrast: factor must be non-negative, got ", factor);
  const std::vector<uint8_t> grey = grey_levels(image);
  int64_t sum = 0;
  for (uint8_t g : grey) sum += g;
  const float mean =
      grey.empty() ? 0.0f : static_cast<float>(sum) / static_cast<float>(static_cast<int64_t>(grey.size()));
  const std::array<float, 256> scaled = detail::product_table(static_cast<float>(factor));
  const float shift = detail::rounded_product(static_cast<float>(1.0 - factor), mean);
  std::array<uint8_t, 256> lut{};
  for (size_t v = 0; v < 256; ++v) lut[v] = detail::to_uint8_truncated(scaled[v] + shift);
  return detail::apply_lut(image, lut);
}

// Blend with a smoothed image: inside the 1-pixel border, the 3x3 filter [[1,1,1],[1,5,1],[1,1,1]] / 13 rounded to
// nearest (a sum s over 13 is never a tie: round(s / 13) = floor((2s + 13) / 26)); the border pixels are the image's.
// v -> trunc(clamp(factor * v + (1 - factor) * smoothed)); images of height or width 2 or less are returned as they
// are.
inline Image adjust_sharpness(const Image& image, double factor) {
  detail::check_colour_image(image, "adjust_sharpness");
  TESSERA_CHECK(factor >= 0.0, "adjust_sharpness: factor must be non-negative, got ", factor);
  if (image.height <= 2 || image.width <= 2) return image;
  const int64_t H = image.height, W = image.width, C = image.channels, row = W * C;
  const detail::Blend blend(factor);
  const uint8_t* in = image.data();
  Image out(H, W, C);
  uint8_t* o = out.data();
  // Border pixels blend with themselves (which can differ from v by the float rounding, as in torchvision).
  const auto keep = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) o[i] = blend(in[i], in[i]);
  };
  keep(0, row);
  for (int64_t y = 1; y < H - 1; ++y) {
    const int64_t start = y * row;
    keep(start, start + C);
    for (int64_t i = start + C; i < start + row - C; ++i) {
      const uint8_t* p = in + i;
      const int s = p[-row - C] + p[-row] + p[-row + C] + p[-C] + 5 * p[0] + p[C] + p[row - C] + p[row] + p[row + C];
      o[i] = blend(p[0], static_cast<uint8_t>((2 * s + 13) / 26));
    }
    keep(start + row - C, start + row);
  }
  keep((H - 1) * row, H * row);
  return out;
}

// ---- affine warps ------------------------------------------------------------------------------------------------

enum class Interpolation { nearest, bilinear };

inline const char* interpolation_name(Interpolation interpolation) {
  return interpolation == Interpolation::nearest ? "nearest" : "bilinear";
}

// Where output pixel (x, y) samples the input, in pixel-index coordinates (pixel centres at integers):
// source x = xx * x + xy * y + x0, source y = yx * x + yy * y + y0.
struct AffineMap {
  double xx = 1.0, xy = 0.0, x0 = 0.0;
  double yx = 0.0, yy = 1.0, y0 = 0.0;
};

// The output (same size as the input) samples the input at map(x, y): nearest takes the pixel at the rounded position
// (ties to even), bilinear blends the four around it and rounds; positions outside the image take `fill` (one value
// for every channel, or one per channel), as torchvision's affine with grid_sample(align_corners=False). Positions are
// computed in float32 directly in pixel coordinates, where torchvision goes through a normalised grid: at positions
// within rounding of a tie the two can pick different pixels (measured: 0.03% of the values of rotations and shears
// over every TrivialAugment bin; bilinear values differ by at most 1). With bilinear sampling and a non-zero fill,
// torchvision blends mask * (zero-padded sample) + (1 - mask) * fill, scaling the covered part by the coverage once
// more; here the uncovered taps simply take the fill colour (the two agree for fill 0, torchvision's default).
inline Image warp_affine(const Image& image, const AffineMap& map, Interpolation interpolation,
                         const std::vector<uint8_t>& fill = {0}) {
  const int64_t H = image.height, W = image.width, C = image.channels;
  TESSERA_CHECK(fill.size() == 1 || static_cast<int64_t>(fill.size()) == C, "warp_affine: fill has ", fill.size(),
                " values for a ", C, "-channel image (give 1 or ", C, ")");
  TESSERA_CHECK(C >= 1 && C <= 4, "warp_affine: expects 1 to 4 channels, got ", image.size_string());
  std::array<uint8_t, 4> fill_c{};
  for (int64_t c = 0; c < C; ++c) fill_c[static_cast<size_t>(c)] = fill[fill.size() == 1 ? 0 : static_cast<size_t>(c)];
  Image out(H, W, C);
  const uint8_t* in = image.data();
  uint8_t* o = out.data();
  const auto xx = static_cast<float>(map.xx), xy = static_cast<float>(map.xy), x0 = static_cast<float>(map.x0);
  const auto yx = static_cast<float>(map.yx), yy = static_cast<float>(map.yy), y0 = static_cast<float>(map.y0);
  for (int64_t y = 0; y < H; ++y) {
    const auto fy = static_cast<float>(y);
    for (int64_t x = 0; x < W; ++x) {
      const auto fx = static_cast<float>(x);
      const float sx = xx * fx + xy * fy + x0, sy = yx * fx + yy * fy + y0;
      uint8_t* dst = o + (y * W + x) * C;
      if (interpolation == Interpolation::nearest) {
        const float rx = std::nearbyint(sx), ry = std::nearbyint(sy);
        if (rx >= 0.0f && rx < static_cast<float>(W) && ry >= 0.0f && ry < static_cast<float>(H)) {
          const uint8_t* src = in + (static_cast<int64_t>(ry) * W + static_cast<int64_t>(rx)) * C;
          for (int64_t c = 0; c < C; ++c) dst[c] = src[c];
        } else {
          for (int64_t c = 0; c < C; ++c) dst[c] = fill_c[static_cast<size_t>(c)];
        }
        continue;
      }
      const float fx0 = std::floor(sx), fy0 = std::floor(sy);
      const float wx = sx - fx0, wy = sy - fy0;
      const auto ix = static_cast<int64_t>(fx0), iy = static_cast<int64_t>(fy0);
      // Only positions within a pixel of the image can touch it; far ones are all fill.
      if (fx0 < -1.0f || fx0 > static_cast<float>(W) || fy0 < -1.0f || fy0 > static_cast<float>(H)) {
        for (int64_t c = 0; c < C; ++c) dst[c] = fill_c[static_cast<size_t>(c)];
        continue;
      }
      const float weights[4] = {(1.0f - wx) * (1.0f - wy), wx * (1.0f - wy), (1.0f - wx) * wy, wx * wy};
      const int64_t tap_x[4] = {ix, ix + 1, ix, ix + 1}, tap_y[4] = {iy, iy, iy + 1, iy + 1};
      for (int64_t c = 0; c < C; ++c) {
        float value = 0.0f;
        for (int t = 0; t < 4; ++t) {
          const bool inside = tap_x[t] >= 0 && tap_x[t] < W && tap_y[t] >= 0 && tap_y[t] < H;
          const uint8_t v = inside ? in[(tap_y[t] * W + tap_x[t]) * C + c] : fill_c[static_cast<size_t>(c)];
          value += weights[t] * static_cast<float>(v);
        }
        dst[c] = static_cast<uint8_t>(std::clamp(std::nearbyint(value), 0.0f, 255.0f));
      }
    }
  }
  return out;
}

// Rotation by `degrees` counter-clockwise about the image centre ((W - 1) / 2, (H - 1) / 2), as torchvision's
// rotate: output (x, y) samples cx + cos(a) (x - cx) - sin(a) (y - cy), cy + sin(a) (x - cx) + cos(a) (y - cy).
inline Image rotate(const Image& image, double degrees, Interpolation interpolation = Interpolation::nearest,
                    const std::vector<uint8_t>& fill = {0}) {
  const double a = degrees * 3.14159265358979323846 / 180.0, cosine = std::cos(a), sine = std::sin(a);
  const double cx = 0.5 * static_cast<double>(image.width - 1), cy = 0.5 * static_cast<double>(image.height - 1);
  AffineMap map{cosine, -sine, cx - cosine * cx + sine * cy, sine, cosine, cy - sine * cx - cosine * cy};
  return warp_affine(image, map, interpolation, fill);
}

// Horizontal shear about the top edge, as torchvision's affine(shear=[atan(factor) in degrees, 0], center=[0, 0]):
// output (x, y) samples (x + factor * (y + 0.5), y).
inline Image shear_x(const Image& image, double factor, Interpolation interpolation = Interpolation::nearest,
                     const std::vector<uint8_t>& fill = {0}) {
  return warp_affine(image, AffineMap{1.0, factor, 0.5 * factor, 0.0, 1.0, 0.0}, interpolation, fill);
}

// Vertical shear about the left edge: output (x, y) samples (x, y + factor * (x + 0.5)).
inline Image shear_y(const Image& image, double factor, Interpolation interpolation = Interpolation::nearest,
                     const std::vector<uint8_t>& fill = {0}) {
  return warp_affine(image, AffineMap{1.0, 0.0, 0.0, factor, 1.0, 0.5 * factor}, interpolation, fill);
}

// Moves the content by (dx, dy) pixels (right and down when positive): output (x, y) samples (x - dx, y - dy).
inline Image translate(const Image& image, int64_t dx, int64_t dy, const std::vector<uint8_t>& fill = {0}) {
  const int64_t H = image.height, W = image.width, C = image.channels;
  TESSERA_CHECK(fill.size() == 1 || static_cast<int64_t>(fill.size()) == C, "translate: fill has ", fill.size(),
                " values for a ", C, "-channel image (give 1 or ", C, ")");
  Image out(H, W, C);
  for (int64_t p = 0; p < H * W; ++p)
    for (int64_t c = 0; c < C; ++c) out.data()[p * C + c] = fill[fill.size() == 1 ? 0 : static_cast<size_t>(c)];
  const int64_t x_begin = std::clamp<int64_t>(dx, 0, W), x_end = std::clamp<int64_t>(W + dx, 0, W);
  for (int64_t y = std::max<int64_t>(0, dy); y < std::min<int64_t>(H, H + dy); ++y)
    if (x_end > x_begin)
      std::copy(image.data() + ((y - dy) * W + x_begin - dx) * C, image.data() + ((y - dy) * W + x_end - dx) * C,
                out.data() + (y * W + x_begin) * C);
  return out;
}

}  // namespace tessera::data
