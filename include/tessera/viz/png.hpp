// encode_png and write_png: a uint8 HWC data::Image (1 grey, 2 grey+alpha, 3 RGB or 4 RGBA channels) to PNG bytes
// through stb_image_write, and to a file written atomically (a temporary beside it, then a rename).
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/image.hpp"
#include "tessera/io/detail/atomic_file.hpp"
#include "tessera/viz/detail/stb_image_write.hpp"

namespace tessera::viz {

namespace detail {

// Throws naming `op` unless `image` is a non-empty Image whose pixel buffer matches its size.
inline void check_encodable(const data::Image& image, const char* op) {
  TESSERA_CHECK(image.channels >= 1 && image.channels <= 4, op, ": an image needs 1 to 4 channels, got ",
                image.size_string());
  TESSERA_CHECK(image.height > 0 && image.width > 0, op, ": the image is empty (", image.size_string(), ")");
  TESSERA_CHECK(image.width <= INT_MAX / image.channels && image.height <= INT_MAX, op, ": the image ",
                image.size_string(), " is too large for PNG encoding");
  TESSERA_CHECK(static_cast<int64_t>(image.pixels.size()) == image.numel(), op, ": the image ", image.size_string(),
                " holds ", image.pixels.size(), " bytes, expected ", image.numel());
}

}  // namespace detail

// The PNG encoding of `image` (stb_image_write, zlib level 8, rows top to bottom).
inline std::vector<uint8_t> encode_png(const data::Image& image) {
  detail::check_encodable(image, "encode_png");
  struct Sink {
    std::vector<uint8_t> bytes;
    bool failed = false;
  } sink;
  auto append = [](void* context, void* data, int size) {
    auto& s = *static_cast<Sink*>(context);
    try {
      const auto* begin = static_cast<const uint8_t*>(data);
      s.bytes.insert(s.bytes.end(), begin, begin + size);
    } catch (...) {
      s.failed = true;
    }
  };
  const int row_bytes = static_cast<int>(image.width * image.channels);
  const int ok = stbi_write_png_to_func(append, &sink, static_cast<int>(image.width), static_cast<int>(image.height),
                                        static_cast<int>(image.channels), image.data(), row_bytes);
  TESSERA_CHECK(ok != 0 && !sink.failed, "encode_png: stb_image_write could not encode the ", image.size_string(),
                " image");
  return std::move(sink.bytes);
}

// Writes `image` as a PNG file at `path`: the file appears complete or not at all; errors name the file.
inline void write_png(const std::filesystem::path& path, const data::Image& image) {
  TESSERA_CHECK(!path.empty(), "write_png: the path is empty");
  detail::check_encodable(image, "write_png");
  const std::vector<uint8_t> bytes = encode_png(image);
  const std::span<const std::byte> chunk(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  io::detail::write_file_atomically(path, {chunk}, "write_png");
}

}  // namespace tessera::viz
