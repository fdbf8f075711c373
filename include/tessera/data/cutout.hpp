// Cutout (DeVries & Taylor 2017): sets a size x size square of a float CHW image, centred on a uniformly drawn pixel
// and clipped at the borders, to one value. After Normalize, the default value 0 is the dataset's mean colour.
#pragma once

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/data/image.hpp"

namespace tessera::data {

// The rows [top, bottom) and columns [left, right) of a cut-out square.
struct CutoutBox {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
};

// A float step (put it after Normalize in a Compose). Draws, in order: when p < 1, one uniform (no cut when it is
// >= p); then the centre row cy ~ U{0..H-1} and column cx ~ U{0..W-1}. The square covers rows
// [cy - size/2, cy - size/2 + size) and the same for columns, clipped to the image, so it is smaller at the borders.
class Cutout {
 public:
  explicit Cutout(int64_t size, double p = 1.0, float value = 0.0f) : size_(size), p_(p), value_(value) {
    TESSERA_CHECK(size >= 1, "Cutout: size must be at least 1, got ", size);
    TESSERA_CHECK(p >= 0.0 && p <= 1.0, "Cutout: p must be in [0, 1], got ", p);
  }

  // The square to cut from a height x width image, or an empty box (top == bottom) when the p draw says no cut.
  CutoutBox sample_box(int64_t height, int64_t width, Generator& gen) const {
    TESSERA_CHECK(height >= 1 && width >= 1, "Cutout: image is empty (", height, "x", width, ")");
    if (p_ < 1.0 && !(gen.uniform() < p_)) return {};
    const auto cy = static_cast<int64_t>(gen.below(static_cast<uint64_t>(height)));
    const auto cx = static_cast<int64_t>(gen.below(static_cast<uint64_t>(width)));
    const int64_t top = cy - size_ / 2, left = cx - size_ / 2;
    return {std::clamp<int64_t>(top, 0, height), std::clamp<int64_t>(top + size_, 0, height),
            std::clamp<int64_t>(left, 0, width), std::clamp<int64_t>(left + size_, 0, width)};
  }

  void operator()(FloatImage& image, Generator& gen) const {
    const CutoutBox box = sample_box(image.height, image.width, gen);
    for (int64_t c = 0; c < image.channels; ++c)
      for (int64_t y = box.top; y < box.bottom; ++y) {
        float* row = image.data() + (c * image.height + y) * image.width;
        std::fill(row + box.left, row + box.right, value_);
      }
  }

  std::string describe() const {
    std::ostringstream s;
    s << "Cutout(size=" << size_ << ", p=" << p_ << ", value=" << value_ << ")";
    return s.str();
  }

 private:
  int64_t size_;
  double p_;
  float value_;
};

}  // namespace tessera::data
