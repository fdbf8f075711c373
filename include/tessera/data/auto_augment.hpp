// TrivialAugmentWide (Müller & Hutter 2021) and RandAugment (Cubuk et al. 2020) on uint8 images, with torchvision's
// op list, magnitude bins and ranges, over the ops of data/image_ops.hpp.
//
// TrivialAugmentWide draws, per image, one op uniformly from the 14 below, then (for ops with a magnitude) a bin
// uniformly from num_magnitude_bins, then (for signed ops) a sign with probability 1/2. RandAugment applies num_ops
// ops, each drawn uniformly, all at the one fixed magnitude bin, each with a random sign where signed.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/data/image.hpp"
#include "tessera/data/image_ops.hpp"

namespace tessera::data {

// torchvision's order of the augmentation space (the draw picks by this index).
enum class AugmentOp {
  identity,
  shear_x,
  shear_y,
  translate_x,
  translate_y,
  rotate,
  brightness,
  color,
  contrast,
  sharpness,
  posterize,
  solarize,
  autocontrast,
  equalize,
};
inline constexpr int kNumAugmentOps = 14;

inline const char* augment_op_name(AugmentOp op) {
  static constexpr std::array<const char*, kNumAugmentOps> names = {
      "Identity",   "ShearX", "ShearY",   "TranslateX", "TranslateY", "Rotate",       "Brightness",
      "Color",      "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"};
  return names[static_cast<size_t>(op)];
}

// Applies one op with torchvision's meaning of `magnitude`: shear factor (tan of the shear angle) for ShearX/Y,
// pixels (truncated toward zero) for TranslateX/Y, degrees counter-clockwise for Rotate, factor 1 + magnitude for
// Brightness/Color(saturation)/Contrast/Sharpness, bits (truncated) for Posterize, threshold for Solarize; the others
// ignore it. Geometric ops sample with `interpolation` and fill uncovered pixels with `fill`.
inline Image apply_augment_op(const Image& image, AugmentOp op, double magnitude,
                              Interpolation interpolation = Interpolation::nearest,
                              const std::vector<uint8_t>& fill = {0}) {
  switch (op) {
    case AugmentOp::identity:
      return image;
    case AugmentOp::shear_x:
      return shear_x(image, magnitude, interpolation, fill);
    case AugmentOp::shear_y:
      return shear_y(image, magnitude, interpolation, fill);
    case AugmentOp::translate_x:
      return translate(image, static_cast<int64_t>(magnitude), 0, fill);
    case AugmentOp::translate_y:
      return translate(image, 0, static_cast<int64_t>(magnitude), fill);
    case AugmentOp::rotate:
      return rotate(image, magnitude, interpolation, fill);
    case AugmentOp::brightness:
      return adjust_brightness(image, 1.0 + magnitude);
    case AugmentOp::color:
      return adjust_saturation(image, 1.0 + magnitude);
    case AugmentOp::contrast:
      return adjust_contrast(image, 1.0 + magnitude);
    case AugmentOp::sharpness:
      return adjust_sharpness(image, 1.0 + magnitude);
    case AugmentOp::posterize:
      return posterize(image, static_cast<int>(magnitude));
    case AugmentOp::solarize:
      return solarize(image, magnitude);
    case AugmentOp::autocontrast:
      return autocontrast(image);
    case AugmentOp::equalize:
      return equalize(image);
  }
  return image;
}

// The magnitude ranges of torchvision's two augmentation spaces.
enum class AugmentSpace {
  wide,      // TrivialAugmentWide: shear 0.99, translate 32 px, rotate 135°, enhance 0.99, posterize 8..2 bits
  standard,  // RandAugment: shear 0.3, translate 150/331 of the side, rotate 30°, enhance 0.9, posterize 8..4 bits
};

// Whether an op draws a magnitude bin, and whether it draws a sign.
inline bool augment_op_has_magnitude(AugmentOp op) {
  return op != AugmentOp::identity && op != AugmentOp::autocontrast && op != AugmentOp::equalize;
}
inline bool augment_op_is_signed(AugmentOp op) {
  return augment_op_has_magnitude(op) && op != AugmentOp::posterize && op != AugmentOp::solarize;
}

// The unsigned magnitude of bin `bin` (of num_bins) for `op` on a height x width image, as torchvision's
// _augmentation_space: max * bin / (num_bins - 1) for the signed ops, 8 - round(bin / ((num_bins - 1) / d)) bits for
// Posterize (d = 6 wide, 4 standard), 255 - 255 * bin / (num_bins - 1) for Solarize, 0 for the ops without magnitude.
// (torchvision's float32 linspace can be an ulp off these values; TranslateX/Y truncate the magnitude, so at bin 15
// of 31 torchvision moves by 15 pixels where 32 * 15 / 30 = 16 moves by 16.)
inline double augment_magnitude(AugmentSpace space, AugmentOp op, int64_t bin, int64_t num_bins, int64_t height,
                                int64_t width) {
  TESSERA_CHECK(num_bins >= 2, "augment_magnitude: num_bins must be at least 2, got ", num_bins);
  TESSERA_CHECK(bin >= 0 && bin < num_bins, "augment_magnitude: bin ", bin, " is outside [0, ", num_bins, ")");
  const bool wide = space == AugmentSpace::wide;
  // max * bin / (num_bins - 1): exact whenever the true value is a double (32 * 15 / 30 = 16, 255 * 10 / 30 = 85).
  const auto range = [&](double max) {
    return max * static_cast<double>(bin) / static_cast<double>(num_bins - 1);
  };
  switch (op) {
    case AugmentOp::shear_x:
    case AugmentOp::shear_y:
      return range(wide ? 0.99 : 0.3);
    case AugmentOp::translate_x:
      return range(wide ? 32.0 : 150.0 / 331.0 * static_cast<double>(width));
    case AugmentOp::translate_y:
      return range(wide ? 32.0 : 150.0 / 331.0 * static_cast<double>(height));
    case AugmentOp::rotate:
      return range(wide ? 135.0 : 30.0);
    case AugmentOp::brightness:
    case AugmentOp::color:
    case AugmentOp::contrast:
    case AugmentOp::sharpness:
      return range(wide ? 0.99 : 0.9);
    case AugmentOp::posterize: {
      const float divisor = static_cast<float>(static_cast<double>(num_bins - 1) / (wide ? 6.0 : 4.0));
      return 8.0 - static_cast<double>(std::nearbyint(static_cast<float>(bin) / divisor));
    }
    case AugmentOp::solarize:
      return 255.0 - range(255.0);
    default:
      return 0.0;
  }
}

// One drawn augmentation: the op and its signed magnitude.
struct AugmentChoice {
  AugmentOp op = AugmentOp::identity;
  double magnitude = 0.0;
};

namespace detail {

inline std::string fill_string(const std::vector<uint8_t>& fill) {
  std::string s = "[";
  for (size_t i = 0; i < fill.size(); ++i) s += (i ? ", " : "") + std::to_string(fill[i]);
  return s + "]";
}

inline void check_fill(const std::vector<uint8_t>& fill, const char* op) {
  TESSERA_CHECK(!fill.empty() && fill.size() <= 4, op, ": fill must have 1 value or one per channel, got ",
                fill.size());
}

}  // namespace detail

// TrivialAugmentWide: one op per image with a random magnitude (see the top of this file).
class TrivialAugmentWide {
 public:
  explicit TrivialAugmentWide(int64_t num_magnitude_bins = 31, Interpolation interpolation = Interpolation::nearest,
                              std::vector<uint8_t> fill = {0})
      : num_bins_(num_magnitude_bins), interpolation_(interpolation), fill_(std::move(fill)) {
    TESSERA_CHECK(num_magnitude_bins >= 2, "TrivialAugmentWide: num_magnitude_bins must be at least 2, got ",
                  num_magnitude_bins);
    detail::check_fill(fill_, "TrivialAugmentWide");
  }

  // op ~ U{0..13}; for ops with a magnitude, bin ~ U{0..num_bins-1}; for signed ops, negative when U{0, 1} is 1.
  AugmentChoice choose(int64_t height, int64_t width, Generator& gen) const {
    AugmentChoice choice;
    choice.op = static_cast<AugmentOp>(gen.below(kNumAugmentOps));
    if (augment_op_has_magnitude(choice.op)) {
      const auto bin = static_cast<int64_t>(gen.below(static_cast<uint64_t>(num_bins_)));
      choice.magnitude = augment_magnitude(AugmentSpace::wide, choice.op, bin, num_bins_, height, width);
      if (augment_op_is_signed(choice.op) && gen.below(2) == 1) choice.magnitude = -choice.magnitude;
    }
    return choice;
  }

  Image operator()(const Image& image, Generator& gen) const {
    const AugmentChoice choice = choose(image.height, image.width, gen);
    return apply_augment_op(image, choice.op, choice.magnitude, interpolation_, fill_);
  }

  std::string describe() const {
    return "TrivialAugmentWide(num_magnitude_bins=" + std::to_string(num_bins_) +
           ", interpolation=" + interpolation_name(interpolation_) + ", fill=" + detail::fill_string(fill_) + ")";
  }

 private:
  int64_t num_bins_;
  Interpolation interpolation_;
  std::vector<uint8_t> fill_;
};

// RandAugment: num_ops ops in sequence, each drawn uniformly from the 14, all at bin `magnitude` of num_magnitude_bins
// of the standard space, each negated with probability 1/2 where signed.
class RandAugment {
 public:
  explicit RandAugment(int num_ops = 2, int64_t magnitude = 9, int64_t num_magnitude_bins = 31,
                       Interpolation interpolation = Interpolation::nearest, std::vector<uint8_t> fill = {0})
      : num_ops_(num_ops),
        magnitude_(magnitude),
        num_bins_(num_magnitude_bins),
        interpolation_(interpolation),
        fill_(std::move(fill)) {
    TESSERA_CHECK(num_ops >= 0, "RandAugment: num_ops must be non-negative, got ", num_ops);
    TESSERA_CHECK(num_magnitude_bins >= 2, "RandAugment: num_magnitude_bins must be at least 2, got ",
                  num_magnitude_bins);
    TESSERA_CHECK(magnitude >= 0 && magnitude < num_magnitude_bins, "RandAugment: magnitude must be in [0, ",
                  num_magnitude_bins, "), got ", magnitude);
    detail::check_fill(fill_, "RandAugment");
  }

  AugmentChoice choose(int64_t height, int64_t width, Generator& gen) const {
    AugmentChoice choice;
    choice.op = static_cast<AugmentOp>(gen.below(kNumAugmentOps));
    choice.magnitude = augment_magnitude(AugmentSpace::standard, choice.op, magnitude_, num_bins_, height, width);
    if (augment_op_is_signed(choice.op) && gen.below(2) == 1) choice.magnitude = -choice.magnitude;
    return choice;
  }

  Image operator()(const Image& image, Generator& gen) const {
    Image current = image;
    for (int i = 0; i < num_ops_; ++i) {
      const AugmentChoice choice = choose(current.height, current.width, gen);
      current = apply_augment_op(current, choice.op, choice.magnitude, interpolation_, fill_);
    }
    return current;
  }

  std::string describe() const {
    return "RandAugment(num_ops=" + std::to_string(num_ops_) + ", magnitude=" + std::to_string(magnitude_) +
           ", num_magnitude_bins=" + std::to_string(num_bins_) + ", interpolation=" +
           interpolation_name(interpolation_) + ", fill=" + detail::fill_string(fill_) + ")";
  }

 private:
  int num_ops_;
  int64_t magnitude_;
  int64_t num_bins_;
  Interpolation interpolation_;
  std::vector<uint8_t> fill_;
};

}  // namespace tessera::data
