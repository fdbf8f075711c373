// Image (uint8, height x width x channels, interleaved HWC), FloatImage (float, planar CHW), and decode_image,
// which reads PNG, JPEG and BMP through stb_image.
#pragma once

#include <cassert>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/stb.hpp"

namespace tessera::data {

// Decoded pixels. Channel c of the pixel at row y, column x is pixels[(y * width + x) * channels + c] (HWC).
struct Image {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int64_t height_, int64_t width_, int64_t channels_, uint8_t fill = 0)
      : height(height_), width(width_), channels(channels_) {
    TESSERA_CHECK(height_ >= 0 && width_ >= 0 && channels_ >= 0, "Image: negative size ", height_, "x", width_,
                  "x", channels_);
    pixels.assign(static_cast<size_t>(height_ * width_ * channels_), fill);
  }

  int64_t numel() const { return height * width * channels; }
  uint8_t* data() { return pixels.data(); }
  const uint8_t* data() const { return pixels.data(); }

  uint8_t& at(int64_t y, int64_t x, int64_t c) {
    assert(y >= 0 && y < height && x >= 0 && x < width && c >= 0 && c < channels);
    return pixels[static_cast<size_t>((y * width + x) * channels + c)];
  }
  uint8_t at(int64_t y, int64_t x, int64_t c) const {
    assert(y >= 0 && y < height && x >= 0 && x < width && c >= 0 && c < channels);
    return pixels[static_cast<size_t>((y * width + x) * channels + c)];
  }

  // "HxWxC", for messages.
  std::string size_string() const {
    return std::to_string(height) + "x" + std::to_string(width) + "x" + std::to_string(channels);
  }
};

// Float pixels, what ToTensor makes. Channel c at row y, column x is values[(c * height + y) * width + x] (CHW),
// the layout of one image in a (B, C, H, W) batch tensor.
struct FloatImage {
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<float> values;

  FloatImage() = default;
  FloatImage(int64_t channels_, int64_t height_, int64_t width_, float fill = 0.0f)
      : channels(channels_), height(height_), width(width_) {
    TESSERA_CHECK(height_ >= 0 && width_ >= 0 && channels_ >= 0, "FloatImage: negative size ", channels_, "x",
                  height_, "x", width_);
    values.assign(static_cast<size_t>(channels_ * height_ * width_), fill);
  }

  int64_t numel() const { return channels * height * width; }
  float* data() { return values.data(); }
  const float* data() const { return values.data(); }

  float& at(int64_t c, int64_t y, int64_t x) {
    assert(c >= 0 && c < channels && y >= 0 && y < height && x >= 0 && x < width);
    return values[static_cast<size_t>((c * height + y) * width + x)];
  }
  float at(int64_t c, int64_t y, int64_t x) const {
    assert(c >= 0 && c < channels && y >= 0 && y < height && x >= 0 && x < width);
    return values[static_cast<size_t>((c * height + y) * width + x)];
  }

  // "(C, H, W)", for messages.
  std::string size_string() const {
    std::string s = "(";
    s += std::to_string(channels) + ", " + std::to_string(height) + ", " + std::to_string(width) + ")";
    return s;
  }
};

// The whole content of a file; `op` names the caller in the error raised when the file is missing or unreadable.
inline std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path, const char* op) {
  std::error_code ec;
  const bool regular = std::filesystem::is_regular_file(path, ec);
  TESSERA_CHECK(regular, op, ": '", path.string(), "' ",
                std::filesystem::exists(path, ec) ? "is not a regular file" : "does not exist");
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  TESSERA_CHECK(file.good(), op, ": cannot open '", path.string(), "' for reading");
  const std::streamoff size = file.tellg();
  TESSERA_CHECK(size >= 0, op, ": cannot determine the size of '", path.string(), "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  file.seekg(0);
  if (size > 0) file.read(reinterpret_cast<char*>(bytes.data()), size);
  TESSERA_CHECK(file.good() && file.gcount() == size, op, ": read ", file.gcount(), " of ", size, " bytes of '",
                path.string(), "'");
  return bytes;
}

// Decodes an encoded PNG, JPEG or BMP held in memory into `channels` channels (1 grey, 2 grey+alpha, 3 RGB,
// 4 RGBA; stb_image converts). `name` (usually the file) goes into error messages.
inline Image decode_image(const uint8_t* bytes, size_t size, const std::string& name, int channels = 3) {
  TESSERA_CHECK(channels >= 1 && channels <= 4, "decode_image: channels must be 1 to 4, got ", channels,
                " (decoding '", name, "')");
  TESSERA_CHECK(size > 0, "decode_image: '", name, "' is empty");
  TESSERA_CHECK(size <= static_cast<size_t>(INT_MAX), "decode_image: '", name, "' is too large (", size,
                " bytes)");
  int width = 0, height = 0, file_channels = 0;
  stbi_uc* decoded = stbi_load_from_memory(bytes, static_cast<int>(size), &width, &height, &file_channels, channels);
  TESSERA_CHECK(decoded != nullptr, "decode_image: cannot decode '", name, "' as PNG, JPEG or BMP (stb_image: ",
                stbi_failure_reason(), ")");
  Image image;
  image.height = height;
  image.width = width;
  image.channels = channels;
  image.pixels.assign(decoded, decoded + static_cast<size_t>(image.numel()));
  stbi_image_free(decoded);
  return image;
}

// Reads and decodes an image file; errors name the file.
inline Image decode_image(const std::filesystem::path& path, int channels = 3) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "decode_image");
  return decode_image(bytes.data(), bytes.size(), path.string(), channels);
}

}  // namespace tessera::data
