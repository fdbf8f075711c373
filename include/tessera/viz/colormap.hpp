// Colour maps for heatmaps: viridis and inferno (perceptually uniform, from 10 evenly spaced stops blended
// linearly) and jet (matplotlib's piecewise-linear definition), mapping a value in [0, 1] to an 8-bit RGB colour.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "tessera/core/error.hpp"

namespace tessera::viz {

enum class Colormap { viridis, inferno, jet };

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

inline std::string colormap_name(Colormap map) {
  switch (map) {
    case Colormap::viridis: return "viridis";
    case Colormap::inferno: return "inferno";
    case Colormap::jet: return "jet";
  }
  return "unknown";
}

namespace detail {

// Stops at t = 0, 1/9, ..., 1 of matplotlib's viridis and inferno (the familiar 10-colour palettes).
inline constexpr std::array<Rgb, 10> kViridisStops = {{{0x44, 0x01, 0x54}, {0x48, 0x28, 0x78}, {0x3e, 0x4a, 0x89},
                                                       {0x31, 0x68, 0x8e}, {0x26, 0x82, 0x8e}, {0x1f, 0x9e, 0x89},
                                                       {0x35, 0xb7, 0x79}, {0x6d, 0xcd, 0x59}, {0xb4, 0xde, 0x2c},
                                                       {0xfd, 0xe7, 0x25}}};
inline constexpr std::array<Rgb, 10> kInfernoStops = {{{0x00, 0x00, 0x04}, {0x1b, 0x0c, 0x42}, {0x4b, 0x0c, 0x6b},
                                                       {0x78, 0x1c, 0x6d}, {0xa5, 0x2c, 0x60}, {0xcf, 0x44, 0x46},
                                                       {0xed, 0x69, 0x25}, {0xfb, 0x9a, 0x06}, {0xf7, 0xd0, 0x3c},
                                                       {0xfc, 0xff, 0xa4}}};

inline uint8_t to_byte(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

// Linear blend between the two stops around t (t in [0, 1]).
template <size_t N>
Rgb blend_stops(const std::array<Rgb, N>& stops, double t) {
  const double position = t * static_cast<double>(N - 1);
  const size_t i = std::min(static_cast<size_t>(position), N - 2);
  const double f = position - static_cast<double>(i);
  auto mix = [f](uint8_t a, uint8_t b) { return to_byte(static_cast<double>(a) + f * (static_cast<double>(b) - a)); };
  return {mix(stops[i].r, stops[i + 1].r), mix(stops[i].g, stops[i + 1].g), mix(stops[i].b, stops[i + 1].b)};
}

// matplotlib's jet: each channel is piecewise linear through (t, value) knots.
inline Rgb jet(double t) {
  struct Knot {
    double t, v;
  };
  auto channel = [t](std::initializer_list<Knot> knots) {
    const Knot* k = knots.begin();
    if (t <= k[0].t) return k[0].v;
    for (size_t i = 1; i < knots.size(); ++i)
      if (t <= k[i].t) return k[i - 1].v + (t - k[i - 1].t) / (k[i].t - k[i - 1].t) * (k[i].v - k[i - 1].v);
    return k[knots.size() - 1].v;
  };
  const double r = channel({{0.0, 0.0}, {0.35, 0.0}, {0.66, 1.0}, {0.89, 1.0}, {1.0, 0.5}});
  const double g = channel({{0.0, 0.0}, {0.125, 0.0}, {0.375, 1.0}, {0.64, 1.0}, {0.91, 0.0}, {1.0, 0.0}});
  const double b = channel({{0.0, 0.5}, {0.11, 1.0}, {0.34, 1.0}, {0.65, 0.0}, {1.0, 0.0}});
  return {to_byte(255.0 * r), to_byte(255.0 * g), to_byte(255.0 * b)};
}

}  // namespace detail

// The colour of `t` in `map`; t is clamped to [0, 1] (0 is the cold end). NaN is an error.
inline Rgb colormap_color(Colormap map, double t) {
  TESSERA_CHECK(!std::isnan(t), "colormap_color: the value is NaN (colour map ", colormap_name(map), ")");
  t = std::clamp(t, 0.0, 1.0);
  switch (map) {
    case Colormap::viridis: return detail::blend_stops(detail::kViridisStops, t);
    case Colormap::inferno: return detail::blend_stops(detail::kInfernoStops, t);
    case Colormap::jet: return detail::jet(t);
  }
  ::tessera::detail::fail("colormap_color: unknown colour map ", static_cast<int>(map));
}

}  // namespace tessera::viz
