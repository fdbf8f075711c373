// Image (uint8, height x width x channels, interleaved HWC), FloatImage (float, planar CHW), and decode_image,
// which reads JPEG through libjpeg where tessera is built with it (TESSERA_HAVE_LIBJPEG), and PNG, BMP (and JPEG
// otherwise) through stb_image after checking what stb does not (a pixel cap, JPEG Huffman tables, PNG chunks).
#pragma once

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/libjpeg.hpp"
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

// The most pixels (width x height) decode_image accepts unless told otherwise: 4096 x 4096, 16.8 megapixels, which
// holds a 12-megapixel phone photo and caps one decoded RGBA image at 64 MB. A file declaring more is refused before
// anything is decoded, so a 1-KB file cannot make the decoder allocate gigabytes (docs/reliability.md).
inline constexpr int64_t kDefaultMaxImagePixels = int64_t{4096} * 4096;

struct DecodeOptions {
  // Channels of the decoded image: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (converted as stb_image converts).
  int channels = 3;
  // The largest width x height accepted; raise it for large photos (memory: width x height x channels bytes,
  // plus the decoder's working buffers).
  int64_t max_pixels = kDefaultMaxImagePixels;
};

namespace detail {

// Checks every Huffman table (DHT segment) of a JPEG before stb_image reads it: stb 2.27 writes past its tables when
// a table declares more than 256 codes. Walks the markers as stb does — segments by their length, entropy-coded
// data up to the next marker, single bytes between segments skipped — so it sees every DHT that stb would. Each
// table (class 0 or 1, id 0 to 3) must declare at most 256 codes in its 16 counts and fit inside its segment, and
// the segment inside the file. Returns an empty string when the tables are sound, else what is wrong.
inline std::string check_jpeg_huffman_tables(const uint8_t* bytes, size_t size) {
  // stb takes the file as a JPEG when it opens with 0xFF, any fill bytes 0xFF, then 0xD8 (SOI).
  size_t pos = 0;
  if (size < 2 || bytes[pos++] != 0xFF) return {};
  while (pos < size && bytes[pos] == 0xFF) ++pos;
  if (pos >= size || bytes[pos++] != 0xD8) return {};
  bool in_scan = false;  // after an SOS segment, until the next marker that is not a restart marker
  while (pos < size) {
    if (in_scan) {  // entropy-coded bytes: 0xFF 0x00 is a stuffed 0xFF, 0xFF 0xD0..0xD7 a restart marker
      if (bytes[pos] != 0xFF) {
        ++pos;
        continue;
      }
      size_t next = pos + 1;
      while (next < size && bytes[next] == 0xFF) ++next;  // fill bytes
      if (next >= size) return {};
      const uint8_t code = bytes[next];
      if (code == 0x00 || (code >= 0xD0 && code <= 0xD7)) {
        pos = next + 1;
        continue;
      }
      in_scan = false;
      pos = next;  // at the marker code
    } else {  // between segments: skip to a 0xFF, then past fill bytes to the marker code
      if (bytes[pos] != 0xFF) {
        ++pos;
        continue;
      }
      while (pos < size && bytes[pos] == 0xFF) ++pos;
      if (pos >= size) return {};
    }
    const uint8_t code = bytes[pos++];
    if (code == 0xD9) return {};                                                  // EOI
    if (code == 0xD8 || code == 0x01 || (code >= 0xD0 && code <= 0xD7)) continue;  // no length
    if (pos + 2 > size) return {};
    const size_t length = (size_t{bytes[pos]} << 8) | bytes[pos + 1];
    if (code == 0xC4) {  // DHT: tables of 1 class/id byte, 16 counts, then the values
      if (length < 2 || pos + length > size)
        return "a Huffman table segment (DHT) declares " + std::to_string(length) + " bytes, which the file does not hold";
      size_t at = pos + 2;
      const size_t end = pos + length;
      while (at < end) {
        if (end - at < 17) return "a Huffman table segment (DHT) ends inside a table header";
        const uint8_t table_class = bytes[at] >> 4, table_id = bytes[at] & 15;
        if (table_class > 1 || table_id > 3)
          return "a Huffman table (DHT) has class " + std::to_string(table_class) + " and id " +
                 std::to_string(table_id) + " (expected class 0 or 1, id 0 to 3)";
        size_t codes = 0;
        for (size_t i = 1; i <= 16; ++i) codes += bytes[at + i];
        if (codes > 256)
          return "a Huffman table (DHT) declares " + std::to_string(codes) + " codes, more than the 256 allowed";
        if (end - at - 17 < codes)
          return "a Huffman table (DHT) declares " + std::to_string(codes) + " codes but its segment holds " +
                 std::to_string(end - at - 17) + " values";
        at += 17 + codes;
      }
    }
    pos += length;
    if (code == 0xDA) in_scan = true;  // SOS: its header, then entropy-coded data
  }
  return {};
}

// Checks the chunk structure of a PNG before stb_image reads it: stb 2.27 allocates an IDAT chunk's declared length
// (up to 2 GB) before it finds that the file is shorter. Every chunk up to IEND must fit in the file, and the first
// IDAT chunk must not be empty (stb 2.27 copies its zero bytes into a buffer it has not allocated yet: a memcpy from
// a null pointer). Returns an empty string when all is well (or the bytes are no PNG), else what is wrong.
inline std::string check_png_chunks(const uint8_t* bytes, size_t size) {
  static constexpr uint8_t signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (size < 8 || std::memcmp(bytes, signature, 8) != 0) return {};
  size_t pos = 8;
  bool seen_image_data = false;
  while (size - pos >= 8) {  // length (4 bytes, big-endian) and type (4 bytes); then the data and a 4-byte CRC
    const uint64_t length = (uint64_t{bytes[pos]} << 24) | (uint64_t{bytes[pos + 1]} << 16) |
                            (uint64_t{bytes[pos + 2]} << 8) | uint64_t{bytes[pos + 3]};
    const std::string type(reinterpret_cast<const char*>(bytes + pos + 4), 4);
    const bool printable = std::all_of(type.begin(), type.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
    if (length > size - pos - 8)
      return "its chunk " + (printable ? "'" + type + "' " : std::string()) + "at byte " + std::to_string(pos) +
             " declares " + std::to_string(length) + " bytes, more than the " + std::to_string(size - pos - 8) +
             " left in the file";
    if (type == "IEND") return {};
    if (type == "IDAT") {
      if (length == 0 && !seen_image_data)
        return "its first IDAT chunk (at byte " + std::to_string(pos) + ") is empty";
      seen_image_data = true;
    }
    pos += 12 + static_cast<size_t>(length);
    if (pos > size) return {};  // the CRC of the last chunk is cut off: stb does not read it
  }
  return {};
}

// Checks that an uncompressed BMP holds the pixel rows it declares: stb_image reads missing bytes as zeros, so an
// 81-byte file declaring 12 megapixels decodes into 36 MB. Returns an empty string when the rows fit (or the bytes
// are no BMP stb reads), else what is wrong.
inline std::string check_bmp_size(const uint8_t* bytes, size_t size) {
  if (size < 30 || bytes[0] != 'B' || bytes[1] != 'M') return {};
  const auto u16 = [&](size_t at) { return uint32_t{bytes[at]} | (uint32_t{bytes[at + 1]} << 8); };
  const auto u32 = [&](size_t at) { return u16(at) | (u16(at + 2) << 16); };
  const uint32_t header_size = u32(14);
  int64_t width = 0, height = 0, bits = 0;
  if (header_size == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    width = u16(18);
    height = u16(20);
    bits = u16(24);
  } else {
    width = static_cast<int32_t>(u32(18));
    height = static_cast<int32_t>(u32(22));
    bits = u16(28);
  }
  if (width <= 0 || height == 0 || bits <= 0 || bits > 32) return {};  // stb refuses these itself
  const int64_t rows = height < 0 ? -height : height;
  const int64_t row_bytes = (width * bits + 31) / 32 * 4;  // at most 2^34: no overflow
  // row_bytes * rows <= size, without the product (up to 2^65, found by fuzz_image_decode).
  if (row_bytes <= static_cast<int64_t>(std::min<uint64_t>(size, INT64_MAX)) / rows) return {};
  const std::string need =
      row_bytes <= std::numeric_limits<int64_t>::max() / rows ? std::to_string(row_bytes * rows) : "more than 2^63";
  return "its " + std::to_string(width) + "x" + std::to_string(rows) + " pixels of " + std::to_string(bits) +
         " bits need " + need + " bytes of rows, but the file has " + std::to_string(size);
}

// Whether stb_image would take the bytes for a JPEG: 0xFF, any number of fill bytes 0xFF, then 0xD8 (SOI). Where
// tessera has libjpeg, every such file goes to libjpeg, so stb never decodes a JPEG (libjpeg itself requires 0xFF
// 0xD8 at the start and refuses the fill bytes).
inline bool stb_reads_as_jpeg(const uint8_t* bytes, size_t size) {
  size_t pos = 0;
  if (size == 0 || bytes[pos++] != 0xFF) return false;
  while (pos < size && bytes[pos] == 0xFF) ++pos;
  return pos < size && bytes[pos] == 0xD8;
}

}  // namespace detail

// Decodes an encoded PNG, JPEG or BMP held in memory. `name` (usually the file) goes into error messages. A JPEG's
// Huffman tables are checked first (detail::check_jpeg_huffman_tables). Where tessera is built with libjpeg
// (TESSERA_HAVE_LIBJPEG), a JPEG is then decoded by libjpeg (data/libjpeg.hpp: the same pixel cap, checked on the
// declared size before decoding; corrupt data refused). Otherwise, and for PNG and BMP, a PNG's chunk lengths and a
// BMP's row bytes are checked (detail::check_*) before stb_image sees the bytes; before it decodes, the declared size
// is checked against options.max_pixels; while it decodes, its allocations are zeroed and bounded by what the
// declared size needs (data/stb.hpp, docs/reliability.md).
inline Image decode_image(const uint8_t* bytes, size_t size, const std::string& name, const DecodeOptions& options) {
  TESSERA_CHECK(options.channels >= 1 && options.channels <= 4, "decode_image: channels must be 1 to 4, got ",
                options.channels, " (decoding '", name, "')");
  TESSERA_CHECK(options.max_pixels > 0, "decode_image: max_pixels must be positive, got ", options.max_pixels);
  TESSERA_CHECK(size > 0, "decode_image: '", name, "' is empty");
  TESSERA_CHECK(size <= static_cast<size_t>(INT_MAX), "decode_image: '", name, "' is too large (", size,
                " bytes)");
  // The Huffman tables first: stbi_info_from_memory already reads them (they may come before the frame header).
  // libjpeg refuses such tables too; checking them for it as well keeps one message for one fault.
  const std::string bad_tables = detail::check_jpeg_huffman_tables(bytes, size);
  TESSERA_CHECK(bad_tables.empty(), "decode_image: '", name, "' is a corrupt JPEG: ", bad_tables);
#ifdef TESSERA_HAVE_LIBJPEG
  // stb 2.27's JPEG decoder has an open finding (an undefined shift on corrupt data, docs/reliability.md).
  if (detail::stb_reads_as_jpeg(bytes, size)) {
    detail::DecodedJpeg jpeg =
        detail::decode_jpeg_with_libjpeg(bytes, size, name, options.channels, options.max_pixels);
    Image image;
    image.height = jpeg.height;
    image.width = jpeg.width;
    image.channels = options.channels;
    image.pixels = std::move(jpeg.pixels);
    return image;
  }
#endif
  const std::string bad_chunks = detail::check_png_chunks(bytes, size);
  TESSERA_CHECK(bad_chunks.empty(), "decode_image: '", name, "' is a corrupt PNG: ", bad_chunks);
  const std::string short_rows = detail::check_bmp_size(bytes, size);
  TESSERA_CHECK(short_rows.empty(), "decode_image: '", name, "' is a truncated BMP: ", short_rows);
  int width = 0, height = 0, file_channels = 0;
  {
    const detail::StbiAllocationLimit limit(size_t{1} << 20);  // reading headers needs a few kilobytes
    TESSERA_CHECK(stbi_info_from_memory(bytes, static_cast<int>(size), &width, &height, &file_channels) != 0,
                  "decode_image: cannot decode '", name, "' as PNG, JPEG or BMP (stb_image: ", stbi_failure_reason(),
                  ")");
  }
  TESSERA_CHECK(width > 0 && height > 0 && int64_t{width} * height <= options.max_pixels, "decode_image: '", name,
                "' declares ", width, "x", height, " pixels, more than the limit of ", options.max_pixels,
                " (DecodeOptions::max_pixels raises it)");
  // No block stb allocates may exceed 16 bytes per pixel of the declared size padded by 32 on each side (16-bit RGBA
  // is 8; JPEG blocks and MCUs pad the size, progressive coefficients take 2 bytes per sample), plus twice the file
  // (compressed data gathered from its chunks) and 1 MB.
  const size_t allocation_limit = 16 * (static_cast<size_t>(width) + 32) * (static_cast<size_t>(height) + 32) +
                                  2 * size + (size_t{1} << 20);
  stbi_uc* decoded = nullptr;
  bool refused = false;
  {
    const detail::StbiAllocationLimit limit(allocation_limit);
    decoded = stbi_load_from_memory(bytes, static_cast<int>(size), &width, &height, &file_channels, options.channels);
    refused = detail::stbi_allocation_refused;
  }
  TESSERA_CHECK(decoded != nullptr || !refused, "decode_image: '", name, "' would need a block of more than ",
                allocation_limit, " bytes to decode ", width, "x", height,
                " pixels: the file is corrupt (for example compressed data that inflates without end)");
  TESSERA_CHECK(decoded != nullptr, "decode_image: cannot decode '", name, "' as PNG, JPEG or BMP (stb_image: ",
                stbi_failure_reason(), ")");
  // stb read the size again while decoding; the cap holds for what it actually produced too.
  if (!(width > 0 && height > 0 && int64_t{width} * height <= options.max_pixels)) {
    stbi_image_free(decoded);
    ::tessera::detail::fail("decode_image: '", name, "' decoded to ", width, "x", height,
                            " pixels, more than the limit of ", options.max_pixels);
  }
  Image image;
  image.height = height;
  image.width = width;
  image.channels = options.channels;
  image.pixels.assign(decoded, decoded + static_cast<size_t>(image.numel()));
  stbi_image_free(decoded);
  return image;
}

inline Image decode_image(const uint8_t* bytes, size_t size, const std::string& name, int channels = 3) {
  return decode_image(bytes, size, name, DecodeOptions{.channels = channels});
}

// Reads and decodes an image file; errors name the file.
inline Image decode_image(const std::filesystem::path& path, const DecodeOptions& options) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "decode_image");
  return decode_image(bytes.data(), bytes.size(), path.string(), options);
}

inline Image decode_image(const std::filesystem::path& path, int channels = 3) {
  return decode_image(path, DecodeOptions{.channels = channels});
}

}  // namespace tessera::data
