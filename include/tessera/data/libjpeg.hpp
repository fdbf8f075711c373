// Detail header: decode_image's JPEG decoder where tessera is built with libjpeg (libjpeg-turbo; CMake defines
// TESSERA_HAVE_LIBJPEG): a JPEG in memory decoded through the libjpeg API, the pixel cap checked before anything the
// size of the image is allocated, and libjpeg's corrupt-data warnings refused (docs/reliability.md).
#pragma once

#ifdef TESSERA_HAVE_LIBJPEG

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>  // before jpeglib.h, which uses FILE and size_t without including their headers
#include <string>
#include <utility>
#include <vector>

#include <jpeglib.h>
// After jpeglib.h, which it needs: the message codes (J_MESSAGE_CODE).
#include <jerror.h>

#include "tessera/core/error.hpp"

namespace tessera::data::detail {

// The most scans a progressive JPEG may have. libjpeg passes over the whole image for each scan, so a small file of
// many tiny scans costs minutes of CPU; encoders write about 10. 500 is the limit libjpeg-turbo's own fuzz targets
// set (TJPARAM_SCANLIMIT).
inline constexpr int kMaxJpegScans = 500;

enum class JpegFailure { error, corrupt_data, too_many_scans };

// libjpeg's error manager plus where to jump back to and why. libjpeg is C: an error cannot be a C++ exception
// thrown through its frames, so error_exit longjmps to run_libjpeg, which returns, and the caller throws.
struct JpegErrorManager {
  jpeg_error_mgr base;  // first member: libjpeg's pointer to it points to the whole (standard layout)
  std::jmp_buf jump;
  JpegFailure failure;
  char message[JMSG_LENGTH_MAX];
};

inline JpegErrorManager& jpeg_errors_of(j_common_ptr info) { return *reinterpret_cast<JpegErrorManager*>(info->err); }

// libjpeg's fatal errors (a bad marker, an unsupported colour conversion, an image over 65500 pixels a side...).
[[noreturn]] inline void jpeg_error_exit(j_common_ptr info) {
  JpegErrorManager& errors = jpeg_errors_of(info);
  errors.failure = JpegFailure::error;
  (*info->err->format_message)(info, errors.message);
  std::longjmp(errors.jump, 1);
}

// libjpeg's messages. Level -1 is a warning about corrupt data (data cut short, a bad Huffman code, bytes between
// segments, a missing end marker), after which libjpeg would go on and return the unreadable part as grey: tessera
// refuses the file instead of returning a picture that is partly made up. The one warning that says nothing of the
// pixels, an unknown JFIF revision number (JWRN_JFIF_MAJOR, from the APP0 segment), is let pass, as stb_image passes
// it. Other levels are traces: dropped.
inline void jpeg_emit_message(j_common_ptr info, int level) {
  if (level >= 0 || info->err->msg_code == JWRN_JFIF_MAJOR) return;
  JpegErrorManager& errors = jpeg_errors_of(info);
  errors.failure = JpegFailure::corrupt_data;
  (*info->err->format_message)(info, errors.message);
  std::longjmp(errors.jump, 1);
}

// libjpeg's progress hook, called as it reads each row of blocks and each marker: ends the decode at scan
// kMaxJpegScans + 1.
inline void jpeg_limit_scans(j_common_ptr info) {
  if (!info->is_decompressor || reinterpret_cast<j_decompress_ptr>(info)->input_scan_number <= kMaxJpegScans) return;
  JpegErrorManager& errors = jpeg_errors_of(info);
  errors.failure = JpegFailure::too_many_scans;
  std::snprintf(errors.message, sizeof errors.message, "more than %d scans", kMaxJpegScans);
  std::longjmp(errors.jump, 1);
}

// What libjpeg should decode into: grey, RGB or CMYK (1, 3 or 4 samples a pixel); convert_jpeg_row makes the
// requested channels from that. A colour (YCbCr) JPEG wanted in grey is decoded to its luma, as stb_image does.
// Other colour spaces (JCS_UNKNOWN: 2 components, or more than 4) get RGB, which libjpeg refuses with an error.
inline J_COLOR_SPACE jpeg_decode_space(J_COLOR_SPACE file_space, int channels) {
  switch (file_space) {
    case JCS_GRAYSCALE:
      return JCS_GRAYSCALE;
    case JCS_YCbCr:
      return channels <= 2 ? JCS_GRAYSCALE : JCS_RGB;
    case JCS_CMYK:
    case JCS_YCCK:
      return JCS_CMYK;  // libjpeg turns YCCK into (Adobe-inverted) CMYK
    default:
      return JCS_RGB;
  }
}

// One row of `width` pixels as libjpeg decoded it (`components` = 1 grey, 3 RGB, 4 Adobe CMYK, whose samples are
// stored inverted) into `channels` samples a pixel, with stb_image's conversions: RGB = each of C, M, Y times K / 255;
// grey from RGB by the integer weights 77, 150, 29 (/256); alpha 255.
inline void convert_jpeg_row(const uint8_t* row, int components, size_t width, uint8_t* out, int channels) {
  const auto times_k = [](unsigned x, unsigned k) {  // x * k / 255, rounded
    const unsigned t = x * k + 128;
    return static_cast<uint8_t>((t + (t >> 8)) >> 8);
  };
  for (size_t x = 0; x < width; ++x, row += components, out += channels) {
    uint8_t r = row[0], g = row[0], b = row[0];
    if (components == 3) {
      g = row[1];
      b = row[2];
    } else if (components == 4) {
      r = times_k(row[0], row[3]);
      g = times_k(row[1], row[3]);
      b = times_k(row[2], row[3]);
    }
    if (channels <= 2) {
      out[0] = components == 1 ? row[0] : static_cast<uint8_t>((r * 77 + g * 150 + b * 29) >> 8);
    } else {
      out[0] = r;
      out[1] = g;
      out[2] = b;
    }
    if (channels == 2 || channels == 4) out[channels - 1] = 255;
  }
}

// One decode: its inputs, libjpeg's state and the result, in one object that the caller owns. run_libjpeg, the
// function that calls setjmp, then holds nothing of its own that a longjmp could leave stale, and libjpeg's memory is
// released however the decode ends (jpeg_destroy_decompress is safe on the zeroed struct too).
struct JpegDecode {
  const uint8_t* bytes = nullptr;
  size_t size = 0;
  int channels = 3;
  int64_t max_pixels = 0;

  jpeg_decompress_struct info{};
  JpegErrorManager errors{};
  jpeg_progress_mgr progress{};

  int64_t width = 0;   // as declared, then as decoded
  int64_t height = 0;
  std::vector<uint8_t> pixels;  // height x width x channels (HWC)

  JpegDecode() = default;
  JpegDecode(const JpegDecode&) = delete;
  JpegDecode& operator=(const JpegDecode&) = delete;
  ~JpegDecode() { jpeg_destroy_decompress(&info); }
};

enum class JpegOutcome { decoded, over_pixel_cap, failed };

// The libjpeg calls, from the header to the end marker. After setjmp this frame reaches everything through `decode`,
// a volatile pointer (so no register copy of it can be stale after a jump, and GCC's -Wclobbered has nothing to
// warn of), holds no object with a destructor (a longjmp would skip it) and reads no local after a jump. Never
// inlined: the setjmp stays in this small frame.
[[gnu::noinline]] inline JpegOutcome run_libjpeg(JpegDecode& target) {
  JpegDecode* volatile const decode = &target;
  target.info.err = jpeg_std_error(&target.errors.base);
  target.errors.base.error_exit = jpeg_error_exit;
  target.errors.base.emit_message = jpeg_emit_message;
  target.progress.progress_monitor = jpeg_limit_scans;
  if (setjmp(target.errors.jump) != 0) return JpegOutcome::failed;

  j_decompress_ptr info = &decode->info;
  jpeg_create_decompress(info);
  info->progress = &decode->progress;
  jpeg_mem_src(info, decode->bytes, static_cast<unsigned long>(decode->size));
  jpeg_read_header(info, TRUE);  // a file without an image is an error (require_image)
  // The declared size, before libjpeg allocates anything that grows with it (jpeg_start_decompress).
  const int64_t declared_width = info->image_width, declared_height = info->image_height;
  decode->width = declared_width;
  decode->height = declared_height;
  if (!(declared_width > 0 && declared_height > 0 && declared_width * declared_height <= decode->max_pixels))
    return JpegOutcome::over_pixel_cap;

  info->out_color_space = jpeg_decode_space(info->jpeg_color_space, decode->channels);
  jpeg_start_decompress(info);  // a progressive JPEG is read whole here
  const int64_t width = info->output_width, height = info->output_height;  // the same at scale 1/1
  decode->width = width;
  decode->height = height;
  if (!(width > 0 && height > 0 && width * height <= decode->max_pixels)) return JpegOutcome::over_pixel_cap;
  const int components = info->output_components;
  const int channels = decode->channels;
  JSAMPARRAY row = (*info->mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(info), JPOOL_IMAGE,
                                              info->output_width * static_cast<JDIMENSION>(components), 1);
  const size_t row_bytes = static_cast<size_t>(width) * static_cast<size_t>(channels);
  decode->pixels.resize(row_bytes * static_cast<size_t>(height));
  uint8_t* const pixels = decode->pixels.data();
  while (info->output_scanline < info->output_height) {
    uint8_t* out = pixels + row_bytes * info->output_scanline;
    if (jpeg_read_scanlines(info, row, 1) != 1) {  // cannot happen with a memory source: it never suspends
      decode->errors.failure = JpegFailure::error;
      std::snprintf(decode->errors.message, sizeof decode->errors.message, "no scanline returned at row %u",
                    info->output_scanline);
      return JpegOutcome::failed;
    }
    convert_jpeg_row(row[0], components, static_cast<size_t>(width), out, channels);
  }
  // Reads on to the end marker: corrupt markers or data after the last scan end in an error or a warning too, and a
  // file without its end marker is refused ("Premature end of JPEG file").
  jpeg_finish_decompress(info);
  return JpegOutcome::decoded;
}

struct DecodedJpeg {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;  // height x width x channels (HWC)
};

// Decodes a JPEG held in memory into `channels` (1 to 4) samples a pixel, refusing a declared size over max_pixels
// before decoding; errors in decode_image's words, naming `name`.
inline DecodedJpeg decode_jpeg_with_libjpeg(const uint8_t* bytes, size_t size, const std::string& name, int channels,
                                            int64_t max_pixels) {
  JpegDecode decode;
  decode.bytes = bytes;
  decode.size = size;
  decode.channels = channels;
  decode.max_pixels = max_pixels;
  const JpegOutcome outcome = run_libjpeg(decode);
  TESSERA_CHECK(outcome != JpegOutcome::over_pixel_cap, "decode_image: '", name, "' declares ", decode.width, "x",
                decode.height, " pixels, more than the limit of ", max_pixels,
                " (DecodeOptions::max_pixels raises it)");
  if (outcome == JpegOutcome::failed) {
    const std::string libjpeg_says = decode.errors.message;
    TESSERA_CHECK(decode.errors.failure != JpegFailure::corrupt_data, "decode_image: '", name,
                  "' is a corrupt JPEG (libjpeg: ", libjpeg_says,
                  "): refused rather than decoded with the unreadable part filled in grey");
    TESSERA_CHECK(decode.errors.failure != JpegFailure::too_many_scans, "decode_image: '", name,
                  "' is a progressive JPEG of ", libjpeg_says, " (tessera's limit: each scan costs a pass over the "
                  "whole image)");
    ::tessera::detail::fail("decode_image: cannot decode '", name, "' as JPEG (libjpeg: ", libjpeg_says, ")");
  }
  return DecodedJpeg{decode.height, decode.width, std::move(decode.pixels)};
}

}  // namespace tessera::data::detail

#endif  // TESSERA_HAVE_LIBJPEG
