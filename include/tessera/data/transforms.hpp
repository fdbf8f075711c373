// Image transforms with torchvision's semantics: geometric ones on uint8 HWC Images (RandomCrop, RandomHorizontalFlip,
// RandomResizedCrop, Resize, CenterCrop), ToTensor to a float CHW FloatImage in [0, 1], Normalize on that, and Compose.
//
// Design: a pipeline is "uint8 HWC steps, then ToTensor, then float CHW steps", as torchvision's on PIL images.
// Random steps draw from the Generator they are given; DataLoader gives each sample one derived from
// (seed, epoch, sample index), so the augmentation of a sample never depends on worker count or timing.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/data/image.hpp"

namespace tessera::data {

// A height x width pair; Size2(n) is square.
struct Size2 {
  int64_t height = 0;
  int64_t width = 0;
  Size2(int64_t square) : height(square), width(square) {}  // NOLINT: implicit, so RandomCrop(32) reads naturally
  Size2(int64_t height_, int64_t width_) : height(height_), width(width_) {}
  std::string str() const { return std::to_string(height) + "x" + std::to_string(width); }
};

// ---- deterministic building blocks -------------------------------------------------------------------------------

// The height x width window whose top-left corner is at (top, left) in image coordinates; pixels of the window
// that fall outside the image are 0 (zero padding). top and left may be negative.
inline Image crop(const Image& image, int64_t top, int64_t left, int64_t height, int64_t width) {
  TESSERA_CHECK(height > 0 && width > 0, "crop: window must be at least 1x1, got ", height, "x", width);
  Image out(height, width, image.channels, 0);
  const int64_t C = image.channels;
  const int64_t y_begin = std::max<int64_t>(0, -top), y_end = std::min<int64_t>(height, image.height - top);
  const int64_t x_begin = std::max<int64_t>(0, -left), x_end = std::min<int64_t>(width, image.width - left);
  if (x_begin >= x_end) return out;
  for (int64_t y = y_begin; y < y_end; ++y)
    std::memcpy(out.data() + (y * width + x_begin) * C, image.data() + ((y + top) * image.width + x_begin + left) * C,
                static_cast<size_t>((x_end - x_begin) * C));
  return out;
}

// out(y, x) = in(y, width - 1 - x).
inline Image horizontal_flip(const Image& image) {
  Image out(image.height, image.width, image.channels);
  const int64_t C = image.channels, W = image.width;
  for (int64_t y = 0; y < image.height; ++y) {
    const uint8_t* row = image.data() + y * W * C;
    uint8_t* out_row = out.data() + y * W * C;
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < C; ++c) out_row[x * C + c] = row[(W - 1 - x) * C + c];
  }
  return out;
}

// Bilinear resize as PyTorch's interpolate(mode="bilinear", align_corners=False, antialias=False), which
// torchvision's Resize(antialias=False) calls: output pixel d samples source coordinate s = (d + 0.5) * in/out - 0.5,
// clamped below at 0; with i = floor(s), l = s - i, it blends pixels i and min(i + 1, in - 1) with weights 1 - l
// and l, rows then columns. Computed in float and rounded to the nearest uint8 (ties to even), as torchvision
// does for uint8 tensors.
inline Image resize_bilinear(const Image& image, int64_t height, int64_t width) {
  TESSERA_CHECK(height > 0 && width > 0, "resize_bilinear: output size must be at least 1x1, got ", height, "x",
                width);
  TESSERA_CHECK(image.height > 0 && image.width > 0, "resize_bilinear: input image is empty (",
                image.size_string(), ")");
  struct Tap {
    int64_t i0, i1;
    float w0, w1;
  };
  auto taps = [](int64_t in, int64_t out) {
    std::vector<Tap> result(static_cast<size_t>(out));
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    for (int64_t d = 0; d < out; ++d) {
      float s = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
      if (s < 0.0f) s = 0.0f;
      const int64_t i0 = static_cast<int64_t>(s);
      const int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
      const float l = s - static_cast<float>(i0);
      result[static_cast<size_t>(d)] = {i0, i1, 1.0f - l, l};
    }
    return result;
  };
  const std::vector<Tap> ys = taps(image.height, height), xs = taps(image.width, width);
  const int64_t C = image.channels;
  Image out(height, width, C);
  for (int64_t y = 0; y < height; ++y) {
    const Tap ty = ys[static_cast<size_t>(y)];
    const uint8_t* row0 = image.data() + ty.i0 * image.width * C;
    const uint8_t* row1 = image.data() + ty.i1 * image.width * C;
    for (int64_t x = 0; x < width; ++x) {
      const Tap tx = xs[static_cast<size_t>(x)];
      for (int64_t c = 0; c < C; ++c) {
        const float top = tx.w0 * row0[tx.i0 * C + c] + tx.w1 * row0[tx.i1 * C + c];
        const float bottom = tx.w0 * row1[tx.i0 * C + c] + tx.w1 * row1[tx.i1 * C + c];
        const float value = std::nearbyint(ty.w0 * top + ty.w1 * bottom);
        out.data()[(y * width + x) * C + c] = static_cast<uint8_t>(std::clamp(value, 0.0f, 255.0f));
      }
    }
  }
  return out;
}

// uint8 HWC -> float CHW with out(c, y, x) = in(y, x, c) / 255 (torchvision's ToTensor).
inline FloatImage to_float_chw(const Image& image) {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int v = 0; v < 256; ++v) t[static_cast<size_t>(v)] = static_cast<float>(v) / 255.0f;
    return t;
  }();
  FloatImage out(image.channels, image.height, image.width);
  const int64_t C = image.channels, HW = image.height * image.width;
  for (int64_t p = 0; p < HW; ++p)
    for (int64_t c = 0; c < C; ++c) out.data()[c * HW + p] = table[image.data()[p * C + c]];
  return out;
}

// ---- transforms ------------------------------------------------------------------------------------------------

// Zero-pads each side by `padding`, then takes a `size` window at a uniformly drawn position: top in
// [0, H + 2p - h], then left in [0, W + 2p - w] (two draws, always). RandomCrop(32, 4) is square; a rectangle is
// RandomCrop(Size2{h, w}, padding) (RandomCrop({h, w}) does not compile: it could also mean size h, padding w).
class RandomCrop {
 public:
  RandomCrop(Size2 size, int64_t padding = 0) : size_(size), padding_(padding) {
    TESSERA_CHECK(size.height > 0 && size.width > 0, "RandomCrop: size must be positive, got ", size.str());
    TESSERA_CHECK(padding >= 0, "RandomCrop: padding must be non-negative, got ", padding);
  }
  Image operator()(const Image& image, Generator& gen) const {
    const int64_t padded_height = image.height + 2 * padding_, padded_width = image.width + 2 * padding_;
    TESSERA_CHECK(padded_height >= size_.height && padded_width >= size_.width, "RandomCrop: image ",
                  image.size_string(), " padded by ", padding_, " is ", padded_height, "x", padded_width,
                  ", smaller than the crop ", size_.str());
    const auto top = static_cast<int64_t>(gen.below(static_cast<uint64_t>(padded_height - size_.height + 1)));
    const auto left = static_cast<int64_t>(gen.below(static_cast<uint64_t>(padded_width - size_.width + 1)));
    return crop(image, top - padding_, left - padding_, size_.height, size_.width);
  }
  std::string describe() const {
    return "RandomCrop(size=" + size_.str() + ", padding=" + std::to_string(padding_) + ")";
  }

 private:
  Size2 size_;
  int64_t padding_;
};

// Mirrors left-right when one uniform draw is below p.
class RandomHorizontalFlip {
 public:
  explicit RandomHorizontalFlip(double p = 0.5) : p_(p) {
    TESSERA_CHECK(p >= 0.0 && p <= 1.0, "RandomHorizontalFlip: p must be in [0, 1], got ", p);
  }
  Image operator()(const Image& image, Generator& gen) const {
    return gen.uniform() < p_ ? horizontal_flip(image) : image;
  }
  std::string describe() const {
    std::ostringstream s;
    s << "RandomHorizontalFlip(p=" << p_ << ")";
    return s.str();
  }

 private:
  double p_;
};

// A window covering a random fraction of the area (in `scale`) with a random aspect ratio width/height (log-uniform
// in `ratio`), resized bilinearly to `size`. The window is drawn as torchvision's RandomResizedCrop.get_params.
class RandomResizedCrop {
 public:
  struct Window {
    int64_t top, left, height, width;
  };

  RandomResizedCrop(Size2 size, std::pair<double, double> scale = {0.08, 1.0},
                    std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0})
      : size_(size), scale_(scale), ratio_(ratio) {
    TESSERA_CHECK(size.height > 0 && size.width > 0, "RandomResizedCrop: size must be positive, got ", size.str());
    TESSERA_CHECK(scale.first > 0.0 && scale.first <= scale.second, "RandomResizedCrop: scale must satisfy ",
                  "0 < min <= max, got (", scale.first, ", ", scale.second, ")");
    TESSERA_CHECK(ratio.first > 0.0 && ratio.first <= ratio.second, "RandomResizedCrop: ratio must satisfy ",
                  "0 < min <= max, got (", ratio.first, ", ", ratio.second, ")");
  }

  // Up to 10 attempts: area = H*W*U(scale), aspect = exp(U(log ratio)), w = round(sqrt(area*aspect)),
  // h = round(sqrt(area/aspect)) (ties to even, as Python's round); the first that fits gets top ~ U{0..H-h},
  // left ~ U{0..W-w}. Otherwise the central crop of the whole image clamped to the ratio range.
  Window sample_window(int64_t height, int64_t width, Generator& gen) const {
    const double area = static_cast<double>(height) * static_cast<double>(width);
    const double log_min = std::log(ratio_.first), log_max = std::log(ratio_.second);
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target_area = area * gen.uniform(scale_.first, scale_.second);
      const double aspect = std::exp(gen.uniform(log_min, log_max));
      const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area * aspect)));
      const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area / aspect)));
      if (0 < w && w <= width && 0 < h && h <= height) {
        const auto top = static_cast<int64_t>(gen.below(static_cast<uint64_t>(height - h + 1)));
        const auto left = static_cast<int64_t>(gen.below(static_cast<uint64_t>(width - w + 1)));
        return {top, left, h, w};
      }
    }
    const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
    int64_t w = width, h = height;
    if (in_ratio < ratio_.first) {
      h = static_cast<int64_t>(std::nearbyint(static_cast<double>(w) / ratio_.first));
    } else if (in_ratio > ratio_.second) {
      w = static_cast<int64_t>(std::nearbyint(static_cast<double>(h) * ratio_.second));
    }
    return {(height - h) / 2, (width - w) / 2, h, w};
  }

  Image operator()(const Image& image, Generator& gen) const {
    TESSERA_CHECK(image.height > 0 && image.width > 0, "RandomResizedCrop: input image is empty (",
                  image.size_string(), ")");
    const Window window = sample_window(image.height, image.width, gen);
    return resize_bilinear(crop(image, window.top, window.left, window.height, window.width), size_.height,
                           size_.width);
  }
  std::string describe() const {
    std::ostringstream s;
    s << "RandomResizedCrop(size=" << size_.str() << ", scale=(" << scale_.first << ", " << scale_.second
      << "), ratio=(" << ratio_.first << ", " << ratio_.second << "))";
    return s.str();
  }

 private:
  Size2 size_;
  std::pair<double, double> scale_, ratio_;
};

// Bilinear resize (resize_bilinear) to an exact size, or, given one number, of the shorter side to that number
// with the longer side scaled to keep the aspect ratio (truncated, as torchvision).
class Resize {
 public:
  explicit Resize(int64_t shorter_side) : shorter_side_(shorter_side), size_(0) {
    TESSERA_CHECK(shorter_side > 0, "Resize: size must be positive, got ", shorter_side);
  }
  Resize(int64_t height, int64_t width) : shorter_side_(0), size_(height, width) {
    TESSERA_CHECK(height > 0 && width > 0, "Resize: size must be positive, got ", size_.str());
  }
  Size2 output_size(int64_t height, int64_t width) const {
    if (shorter_side_ == 0) return size_;
    const auto scaled = [&](int64_t longer, int64_t shorter) {
      return static_cast<int64_t>(static_cast<double>(shorter_side_) * static_cast<double>(longer) /
                                  static_cast<double>(shorter));
    };
    return width <= height ? Size2(scaled(height, width), shorter_side_) : Size2(shorter_side_, scaled(width, height));
  }
  Image operator()(const Image& image) const {
    TESSERA_CHECK(image.height > 0 && image.width > 0, "Resize: input image is empty (", image.size_string(), ")");
    const Size2 out = output_size(image.height, image.width);
    return resize_bilinear(image, out.height, out.width);
  }
  std::string describe() const {
    return shorter_side_ ? "Resize(shorter_side=" + std::to_string(shorter_side_) + ")"
                         : "Resize(size=" + size_.str() + ")";
  }

 private:
  int64_t shorter_side_;
  Size2 size_;
};

// The central `size` window: top = round((H - h) / 2) (ties to even, as torchvision); a dimension smaller than the
// window is zero-padded by (h - H) / 2 before (rounded down) and the rest after.
class CenterCrop {
 public:
  CenterCrop(Size2 size) : size_(size) {  // NOLINT: implicit from an int like the other transforms
    TESSERA_CHECK(size.height > 0 && size.width > 0, "CenterCrop: size must be positive, got ", size.str());
  }
  Image operator()(const Image& image) const {
    const auto offset = [](int64_t in, int64_t out) {
      return in >= out ? static_cast<int64_t>(std::nearbyint(static_cast<double>(in - out) / 2.0)) : -((out - in) / 2);
    };
    return crop(image, offset(image.height, size_.height), offset(image.width, size_.width), size_.height,
                size_.width);
  }
  std::string describe() const { return "CenterCrop(size=" + size_.str() + ")"; }

 private:
  Size2 size_;
};

// uint8 HWC Image -> float CHW FloatImage in [0, 1] (to_float_chw). Inside Compose it marks where the pipeline
// switches from uint8 to float; Compose adds it at the switch when it is left out.
class ToTensor {
 public:
  FloatImage operator()(const Image& image) const { return to_float_chw(image); }
  std::string describe() const { return "ToTensor()"; }
};

// In place on a FloatImage: value(c, y, x) = (value(c, y, x) - mean[c]) / std[c].
class Normalize {
 public:
  Normalize(std::vector<float> mean, std::vector<float> std) : mean_(std::move(mean)), std_(std::move(std)) {
    TESSERA_CHECK(!mean_.empty() && mean_.size() == std_.size(), "Normalize: mean has ", mean_.size(),
                  " values and std ", std_.size(), "; they must have one per channel");
    for (float s : std_) TESSERA_CHECK(s > 0.0f, "Normalize: std values must be positive, got ", s);
  }
  void operator()(FloatImage& image) const {
    TESSERA_CHECK(image.channels == static_cast<int64_t>(mean_.size()), "Normalize: image has ", image.channels,
                  " channels but mean/std have ", mean_.size());
    const int64_t HW = image.height * image.width;
    for (int64_t c = 0; c < image.channels; ++c) {
      const float m = mean_[static_cast<size_t>(c)], s = std_[static_cast<size_t>(c)];
      float* plane = image.data() + c * HW;
      for (int64_t p = 0; p < HW; ++p) plane[p] = (plane[p] - m) / s;
    }
  }
  std::string describe() const {
    std::ostringstream s;
    s << "Normalize(mean=[";
    for (size_t i = 0; i < mean_.size(); ++i) s << (i ? ", " : "") << mean_[i];
    s << "], std=[";
    for (size_t i = 0; i < std_.size(); ++i) s << (i ? ", " : "") << std_[i];
    s << "])";
    return s.str();
  }

 private:
  std::vector<float> mean_, std_;
};

// A pipeline: uint8 steps, ToTensor, float steps, applied in order to produce a FloatImage. Steps are the
// transforms above or any class with a describe() and one of the call forms
//   Image (const Image&, Generator&) const   Image (const Image&) const
//   void (FloatImage&, Generator&) const     void (FloatImage&) const
// or a (name, std::function) pair. Steps must be safe to call from several threads at once (const, no state).
class Compose {
 public:
  using ImageFn = std::function<Image(const Image&, Generator&)>;
  using FloatFn = std::function<void(FloatImage&, Generator&)>;

  class Step {
   public:
    enum class Kind { image, to_tensor, floating };

    template <class T>
      requires(!std::same_as<std::remove_cvref_t<T>, Step>)
    Step(T transform) : name_(transform.describe()) {  // NOLINT: implicit, so Compose{RandomCrop(32, 4), ...} works
      if constexpr (std::same_as<T, ToTensor>) {
        kind_ = Kind::to_tensor;
      } else if constexpr (requires(const T& t, const Image& image, Generator& gen) {
                             { t(image, gen) } -> std::same_as<Image>;
                           }) {
        kind_ = Kind::image;
        image_fn_ = [t = std::move(transform)](const Image& image, Generator& gen) { return t(image, gen); };
      } else if constexpr (requires(const T& t, const Image& image) {
                             { t(image) } -> std::same_as<Image>;
                           }) {
        kind_ = Kind::image;
        image_fn_ = [t = std::move(transform)](const Image& image, Generator&) { return t(image); };
      } else if constexpr (requires(const T& t, FloatImage& image, Generator& gen) { t(image, gen); }) {
        kind_ = Kind::floating;
        float_fn_ = [t = std::move(transform)](FloatImage& image, Generator& gen) { t(image, gen); };
      } else if constexpr (requires(const T& t, FloatImage& image) { t(image); }) {
        kind_ = Kind::floating;
        float_fn_ = [t = std::move(transform)](FloatImage& image, Generator&) { t(image); };
      } else {
        static_assert(sizeof(T) == 0, "Compose::Step: the transform has none of the accepted call forms");
      }
    }
    Step(std::string name, ImageFn fn) : kind_(Kind::image), name_(std::move(name)), image_fn_(std::move(fn)) {
      TESSERA_CHECK(static_cast<bool>(image_fn_), "Compose::Step: empty function for step '", name_, "'");
    }
    Step(std::string name, FloatFn fn) : kind_(Kind::floating), name_(std::move(name)), float_fn_(std::move(fn)) {
      TESSERA_CHECK(static_cast<bool>(float_fn_), "Compose::Step: empty function for step '", name_, "'");
    }

    Kind kind() const { return kind_; }
    const std::string& name() const { return name_; }

   private:
    friend class Compose;
    Kind kind_ = Kind::image;
    std::string name_;
    ImageFn image_fn_;
    FloatFn float_fn_;
  };

  Compose() = default;
  Compose(std::initializer_list<Step> steps) {
    for (const Step& step : steps) then(step);
  }

  // Appends a step; throws if a uint8 step comes after the switch to float, or ToTensor comes twice.
  Compose& then(Step step) {
    const Step::Kind kind = step.kind_;
    if (kind != Step::Kind::floating)
      TESSERA_CHECK(!floating_, "Compose: ", step.name_, " works on uint8 HWC images but comes after the switch to ",
                    "float CHW (ToTensor or a float step) in ", describe());
    if (kind == Step::Kind::image) image_steps_.push_back(std::move(step));
    if (kind == Step::Kind::floating) float_steps_.push_back(std::move(step));
    if (kind != Step::Kind::image) floating_ = true;
    return *this;
  }

  FloatImage operator()(const Image& image, Generator& gen) const {
    const Image* current = &image;
    Image transformed;
    for (const Step& step : image_steps_) {
      transformed = step.image_fn_(*current, gen);
      current = &transformed;
    }
    FloatImage out = to_float_chw(*current);
    for (const Step& step : float_steps_) step.float_fn_(out, gen);
    return out;
  }

  // "Compose(RandomCrop(size=32x32, padding=4), ..., ToTensor(), Normalize(...))", for logs.
  std::string describe() const {
    std::string s = "Compose(";
    for (const Step& step : image_steps_) s += step.name_ + ", ";
    s += "ToTensor()";
    for (const Step& step : float_steps_) s += ", " + step.name_;
    return s + ")";
  }

 private:
  std::vector<Step> image_steps_;
  std::vector<Step> float_steps_;
  bool floating_ = false;
};

}  // namespace tessera::data
