// The readers against hostile input, without libFuzzer: every fuzz target's seeds are accepted and every kept crash
// input (tests/fuzz/regressions) ends in a tessera::Error, through the same entry functions the fuzz targets call;
// then the limits and messages each fix added (docs/reliability.md).
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "fuzz/fuzz_entries.hpp"
#include "test_helpers.hpp"

namespace fs = std::filesystem;
using namespace tessera;

namespace {

const fs::path kFuzzDir = fs::path(TESSERA_FIXTURES_DIR).parent_path() / "fuzz";

// The bytes of an input file; of a `.hex` file (the inputs that start like images are kept as hex text, so that the
// repository holds no image files), the bytes its hex digits spell.
std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.is_open(), path.string());
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (path.extension() != ".hex") return bytes;
  std::string digits;
  for (const uint8_t c : bytes)
    if (!std::isspace(c)) digits += static_cast<char>(c);
  REQUIRE_MESSAGE(digits.size() % 2 == 0, path.string() << ": an odd number of hex digits");
  std::vector<uint8_t> decoded(digits.size() / 2);
  for (size_t i = 0; i < decoded.size(); ++i) {
    size_t used = 0;
    decoded[i] = static_cast<uint8_t>(std::stoul(digits.substr(2 * i, 2), &used, 16));
    REQUIRE_MESSAGE(used == 2, path.string() << ": '" << digits.substr(2 * i, 2) << "' is no hex byte");
  }
  return decoded;
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  if (fs::is_directory(dir))
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

// The message of the tessera::Error that running `entry` on the file throws ("" when it throws none).
std::string error_of(fuzz::Entry entry, const fs::path& path) {
  const std::vector<uint8_t> bytes = read_bytes(path);
  try {
    entry(bytes.data(), bytes.size());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

using test::TempDir;

}  // namespace

TEST_CASE("every seed of every fuzz target is accepted by its entry function") {
  for (const auto& target : fuzz::kTargets) {
    const std::vector<fs::path> seeds = files_in(kFuzzDir / "corpus" / target.name);
    CHECK_MESSAGE(seeds.size() >= 2, target.name);
    for (const auto& seed : seeds) {
      const std::string name = seed.string();
      CHECK_MESSAGE(error_of(target.entry, seed) == "", name);
    }
  }
}

TEST_CASE("every kept crash input ends in a tessera::Error") {
  size_t total = 0;
  for (const auto& target : fuzz::kTargets) {
    for (const auto& input : files_in(kFuzzDir / "regressions" / target.name)) {
#ifndef TESSERA_HAVE_LIBJPEG
      // stb 2.27's open JPEG finding (docs/reliability.md): without libjpeg, stb decodes this input with an undefined
      // shift, which the sanitizer build reports. Only a build with libjpeg refuses it cleanly.
      if (input.filename() == "jpeg_stb_shift.jpg.hex") continue;
#endif
      const std::string name = input.string();
      const std::string message = error_of(target.entry, input);
      CHECK_MESSAGE(message != "", name);
      CHECK_MESSAGE(message.size() < 600, name << ": a message of " << message.size() << " characters");
      ++total;
    }
  }
  CHECK(total >= 32);
}

TEST_CASE("each regression input fails for the reason it was kept") {
  const auto check = [](fuzz::Entry entry, const char* target, const char* file, const std::string& expected) {
    const std::string message = error_of(entry, kFuzzDir / "regressions" / target / file);
    CHECK_MESSAGE(message.find(expected) != std::string::npos, file << ": '" << expected << "' not in: " << message);
  };
  check(fuzz::safetensors, "safetensors", "shape_overflow_with_zero.safetensors", "more than 2^63 - 1 elements");
  check(fuzz::safetensors, "safetensors", "shape_overflow_zero_first.safetensors", "more than 2^63 - 1 elements");
  check(fuzz::safetensors, "safetensors", "nested_100000_levels.safetensors", "more than 64 levels deep");
  check(fuzz::safetensors, "safetensors", "nested_metadata.safetensors", "more than 64 levels deep");
  check(fuzz::safetensors, "safetensors", "jpeg.safetensors.hex",
        "not a safetensors file (it starts like a JPEG image)");
  check(fuzz::safetensors, "safetensors", "png.safetensors.hex", "not a safetensors file (it starts like a PNG image)");
  check(fuzz::vit_config, "vit_config", "depth_1e50.json", "'depth' is 1e+50, out of the range of a 64-bit integer");
  check(fuzz::vit_config, "vit_config", "depth_2e63.json", "out of the range of a 64-bit integer");
  check(fuzz::vit_config, "vit_config", "depth_minus_1e19.json", "out of the range of a 64-bit integer");
  check(fuzz::vit_config, "vit_config", "mlp_ratio_1e300.json", "mlp_ratio 1e+300 must be positive and make an MLP");
  check(fuzz::vit_config, "vit_config", "img_size_grid_overflow.json", "img_size is 4611686018427387904, more than");
  check(fuzz::vit_config, "vit_config", "stem_100_stages.json", "stem_channels has 100 stages");
  check(fuzz::vit_config, "vit_config", "nested_100000_levels.json", "more than 64 levels deep");
  check(fuzz::vit_config, "vit_config", "nested_objects_1000_levels.json", "more than 64 levels deep");
  check(fuzz::checkpoint, "checkpoint", "config_depth_1e50.safetensors", "out of the range of a 64-bit integer");
  check(fuzz::checkpoint, "checkpoint", "config_mlp_ratio_1e300.safetensors", "mlp_ratio 1e+300");
  check(fuzz::checkpoint, "checkpoint", "config_img_size_2e63.safetensors", "out of the range of a 64-bit integer");
  check(fuzz::checkpoint, "checkpoint", "config_nested_100000_levels.safetensors", "more than 64 levels deep");
  check(fuzz::checkpoint, "checkpoint", "trainer_nested_100000_levels.safetensors", "\"trainer\" that nests");
  check(fuzz::checkpoint, "checkpoint", "step_inf.safetensors", "'step.head.bias' must be a positive integer step count");
  check(fuzz::checkpoint, "checkpoint", "step_1e30.safetensors", "got 1e+30");
  check(fuzz::checkpoint, "checkpoint", "step_nan.safetensors", "got nan");
  check(fuzz::checkpoint, "checkpoint", "epoch_1e30.safetensors", "expected a non-negative integer");
  check(fuzz::image_decode, "image_decode", "dht_overflow_9_bytes.jpg.hex",
        "corrupt JPEG: a Huffman table segment (DHT)");
  check(fuzz::image_decode, "image_decode", "dht_300_codes.jpg.hex", "declares 300 codes, more than the 256 allowed");
  check(fuzz::image_decode, "image_decode", "huge_64513x3616.jpg.hex",
        "declares 64513x3616 pixels, more than the limit");
  check(fuzz::image_decode, "image_decode", "huge_16384x16384.png.hex", "declares 16384x16384 pixels");
  check(fuzz::image_decode, "image_decode", "png_idat_2gb_length.png.hex",
        "corrupt PNG: its chunk 'IDAT' at byte 33 declares 2113929245 bytes, more than the 45 left in the file");
  check(fuzz::image_decode, "image_decode", "png_zlib_bomb.png.hex", "would need a block of more than");
  check(fuzz::image_decode, "image_decode", "png_empty_first_idat.png.hex",
        "corrupt PNG: its first IDAT chunk (at byte 33) is empty");
  check(fuzz::image_decode, "image_decode", "bmp_12_megapixels_in_81_bytes.bmp.hex",
        "truncated BMP: its 61x196608 pixels of 24 bits need 36175872 bytes of rows, but the file has 81");
  check(fuzz::image_decode, "image_decode", "bmp_rows_overflow.bmp.hex", "bytes of rows, but the file has 39");
#ifdef TESSERA_HAVE_LIBJPEG
  check(fuzz::image_decode, "image_decode", "jpeg_stb_shift.jpg.hex", "JPEG (libjpeg: ");
#endif
  check(fuzz::cifar10_batch, "cifar10_batch", "label_10.bin", "has label 10");
  check(fuzz::cifar10_batch, "cifar10_batch", "truncated.bin", "not a positive multiple of the 3073-byte record");
}

TEST_CASE("Shape: the product of the non-zero dimensions must fit int64, wherever a zero is") {
  const int64_t big = int64_t{1} << 32;
  test::check_error([&] { (void)Shape{big, big, 0}; }, {"Shape", "more than 2^63 - 1 elements"});
  test::check_error([&] { (void)Shape{0, big, big}; }, {"Shape", "more than 2^63 - 1 elements"});
  test::check_error([&] { (void)Shape{big, 0, big, 2}; }, {"Shape", "more than 2^63 - 1 elements"});
  const Shape empty{0, big, int64_t{1} << 30};  // 2^62 non-zero: fits
  CHECK(empty.numel() == 0);
  CHECK(empty.strides()[0] == (int64_t{1} << 62));
  CHECK(Shape{3, 0, 5}.numel() == 0);
  test::check_error([&] { (void)Shape{2, 2}.with_dim(0, int64_t{1} << 62); }, {"more than 2^63 - 1 elements"});
  CHECK(Shape{2, 2}.with_dim(0, int64_t{1} << 61).numel() == (int64_t{1} << 62));
}

TEST_CASE("JSON: nesting is limited to kMaxJsonDepth and messages hold excerpts, not whole values") {
  CHECK(kMaxJsonDepth == 64);
  const std::string at_limit = std::string(64, '[') + std::string(64, ']');
  CHECK(tessera::detail::parse_json(at_limit, "test").is_array());
  const std::string over = std::string(65, '[') + std::string(65, ']');
  test::check_error([&] { (void)tessera::detail::parse_json(over, "the value"); },
                    {"the value nests arrays and objects more than 64 levels deep"});
  // A one-megabyte string and a long list in a config: the message quotes a short excerpt.
  const std::string long_text = "{\"depth\":\"" + std::string(1'000'000, 'x') + "\"}";
  try {
    (void)nn::ViTConfig::from_json_string(long_text);
    FAIL("expected tessera::Error");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("'depth' must be an integer, got \"xxxx") != std::string::npos);
    CHECK(message.size() < 300);
  }
  std::string long_list = "{\"depth\":[";
  for (int i = 0; i < 100000; ++i) long_list += (i ? ",[1,[2,[3]]]" : "[1,[2,[3]]]");
  long_list += "]}";
  try {
    (void)nn::ViTConfig::from_json_string(long_list);
    FAIL("expected tessera::Error");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("got [[1,[...]],[1,[...]],") != std::string::npos);
    CHECK(message.size() < 300);
  }
  CHECK(tessera::detail::json_excerpt(nlohmann::json::parse(R"({"a":[1,2],"b":"c"})")) == R"({"a":[1,2],"b":"c"})");
}

TEST_CASE("decode_image: the pixel cap is checked before decoding and can be raised") {
  CHECK(data::kDefaultMaxImagePixels == 4096 * 4096);
  const std::vector<uint8_t> jpeg =
      read_bytes(kFuzzDir / "corpus" / "image_decode" / "rgb_16x8_progressive.jpg.hex");
  test::check_error([&] { (void)data::decode_image(jpeg.data(), jpeg.size(), "p.jpg", {.max_pixels = 127}); },
                    {"p.jpg", "declares 16x8 pixels, more than the limit of 127", "DecodeOptions::max_pixels"});
  const data::Image image = data::decode_image(jpeg.data(), jpeg.size(), "p.jpg", {.max_pixels = 128});
  CHECK(image.width == 16);
  CHECK(image.height == 8);
  // The cap applies to image folders too.
  TempDir dir;
  fs::create_directories(dir.path / "cat");
  std::ofstream(dir.path / "cat" / "a.jpg", std::ios::binary)
      .write(reinterpret_cast<const char*>(jpeg.data()), static_cast<std::streamsize>(jpeg.size()));
  data::ImageFolderOptions options;
  options.max_image_pixels = 100;
  test::check_error([&] { (void)data::ImageFolder(dir.path, options); }, {"a.jpg", "more than the limit of 100"});
  options.max_image_pixels = 128;
  CHECK(data::ImageFolder(dir.path, options).size() == 1);
}

TEST_CASE("check_jpeg_huffman_tables passes every seed JPEG and names what is wrong in a bad one") {
  for (const auto& path : files_in(kFuzzDir / "corpus" / "image_decode")) {
    const std::vector<uint8_t> bytes = read_bytes(path);
    const std::string name = path.string();
    CHECK_MESSAGE(data::detail::check_jpeg_huffman_tables(bytes.data(), bytes.size()) == "", name);
  }
  // SOI, then a DHT of class 2: stb accepts only classes 0 and 1.
  const std::vector<uint8_t> bad_class = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x13, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0,    0,    0,    0,    0,    0,    0,    0xFF, 0xD9};
  CHECK(data::detail::check_jpeg_huffman_tables(bad_class.data(), bad_class.size()).find("class 2") !=
        std::string::npos);
  // A table declaring 2 codes in a segment that holds 1 value.
  const std::vector<uint8_t> short_values = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x14, 0x00, 2, 0, 0, 0, 0, 0, 0, 0, 0,
                                             0,    0,    0,    0,    0,    0,    0,    7, 0xFF, 0xD9};
  CHECK(data::detail::check_jpeg_huffman_tables(short_values.data(), short_values.size())
            .find("declares 2 codes but its segment holds 1 values") != std::string::npos);
  // A DHT after a scan (as progressive JPEGs have): found behind entropy-coded bytes, stuffing and a restart marker.
  const std::vector<uint8_t> after_scan = {0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0,
                                           0x56, 0xFF, 0xFF, 0xC4, 0x00, 0x13, 0x00, 200,  200,  0,    0,    0,
                                           0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0xFF};
  CHECK(data::detail::check_jpeg_huffman_tables(after_scan.data(), after_scan.size()).find("declares 400 codes") !=
        std::string::npos);
}

#ifdef TESSERA_HAVE_LIBJPEG
namespace {

// Offset of the first segment with marker `code` (0xFF `code`, length, data) in a JPEG, walking its segments by their
// lengths up to the first scan, as tests/fuzz/make_image_inputs.py does.
size_t jpeg_segment(const std::vector<uint8_t>& jpeg, uint8_t code) {
  size_t pos = 2;
  while (pos + 4 <= jpeg.size() && jpeg[pos] == 0xFF) {
    if (jpeg[pos + 1] == code) return pos;
    if (jpeg[pos + 1] == 0xDA) break;
    pos += 2 + ((size_t{jpeg[pos + 2]} << 8) | jpeg[pos + 3]);
  }
  FAIL("the JPEG has no segment with the marker asked for");
  return 0;
}

// A copy of a JPEG whose frame header (`frame_marker`: 0xC0 baseline, 0xC2 progressive) declares `height` x `width`.
std::vector<uint8_t> with_declared_size(std::vector<uint8_t> jpeg, uint8_t frame_marker, uint16_t height,
                                        uint16_t width) {
  const size_t sof = jpeg_segment(jpeg, frame_marker);  // 0xFF, marker, length (2), precision, height (2), width (2)
  jpeg[sof + 5] = static_cast<uint8_t>(height >> 8);
  jpeg[sof + 6] = static_cast<uint8_t>(height & 0xFF);
  jpeg[sof + 7] = static_cast<uint8_t>(width >> 8);
  jpeg[sof + 8] = static_cast<uint8_t>(width & 0xFF);
  return jpeg;
}

void decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& name) {
  (void)data::decode_image(bytes.data(), bytes.size(), name);
}

// A 16x16 grey progressive JPEG of `scans` scans (at most 704), written by libjpeg's encoder with a scan script of
// successive approximation: the DC coefficient in 11 scans (point transform 10 down to 0), then each AC coefficient
// k = 1, 2, ... alone in 11 scans, as far as `scans` reaches. Every scan is legal, so only the scan limit can refuse
// the file.
std::vector<uint8_t> progressive_jpeg(int scans) {
  jpeg_compress_struct info{};
  jpeg_error_mgr errors{};
  info.err = jpeg_std_error(&errors);
  jpeg_create_compress(&info);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&info, &buffer, &size);
  info.image_width = 16;
  info.image_height = 16;
  info.input_components = 1;
  info.in_color_space = JCS_GRAYSCALE;
  jpeg_set_defaults(&info);
  std::vector<jpeg_scan_info> script;
  const auto add_coefficient = [&](int k) {  // first scan at point transform 10, then refinements down to 0
    for (int al = 10; al >= 0 && static_cast<int>(script.size()) < scans; --al) {
      jpeg_scan_info scan{};
      scan.comps_in_scan = 1;
      scan.Ss = k;
      scan.Se = k;
      scan.Ah = al == 10 ? 0 : al + 1;
      scan.Al = al;
      script.push_back(scan);
    }
  };
  for (int k = 0; k <= 63 && static_cast<int>(script.size()) < scans; ++k) add_coefficient(k);
  REQUIRE(static_cast<int>(script.size()) == scans);
  info.scan_info = script.data();
  info.num_scans = scans;
  jpeg_start_compress(&info, TRUE);
  uint8_t row[16];
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 16; ++x) row[x] = static_cast<uint8_t>(x * 13 + y * 7);
    JSAMPROW rows[1] = {row};
    jpeg_write_scanlines(&info, rows, 1);
  }
  jpeg_finish_compress(&info);
  std::vector<uint8_t> jpeg(buffer, buffer + size);
  std::free(buffer);
  jpeg_destroy_compress(&info);
  return jpeg;
}

}  // namespace

// Two decoders derived from the IJG's: the integer IDCT, the chroma upsampling and the YCbCr conversion round
// differently, by a step or two of 255; a wrong channel order, conversion or row would differ by tens.
TEST_CASE("decode_image with libjpeg: the seed JPEGs decode to stb_image's pixels, within rounding, in 1-4 channels") {
  int compared = 0;
  for (const auto& path : files_in(kFuzzDir / "corpus" / "image_decode")) {
    const std::string name = path.filename().string();
    if (name.size() < 8 || name.substr(name.size() - 8) != ".jpg.hex") continue;
    const std::vector<uint8_t> bytes = read_bytes(path);
    for (int channels = 1; channels <= 4; ++channels) {
      CAPTURE(name);
      CAPTURE(channels);
      const data::Image ours = data::decode_image(bytes.data(), bytes.size(), name, channels);
      int width = 0, height = 0, file_channels = 0;
      stbi_uc* decoded = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height,
                                               &file_channels, channels);
      REQUIRE(decoded != nullptr);
      const std::vector<uint8_t> theirs(decoded, decoded + static_cast<size_t>(width) * height * channels);
      stbi_image_free(decoded);
      REQUIRE(ours.width == width);
      REQUIRE(ours.height == height);
      REQUIRE(ours.channels == channels);
      REQUIRE(ours.pixels.size() == theirs.size());
      int worst = 0;
      double total = 0;
      for (size_t i = 0; i < theirs.size(); ++i) {
        const int difference = std::abs(int{ours.pixels[i]} - int{theirs[i]});
        worst = std::max(worst, difference);
        total += difference;
      }
      CHECK(worst <= 4);
      CHECK(total / static_cast<double>(theirs.size()) <= 1.0);
      if (channels == 2 || channels == 4)
        for (size_t i = static_cast<size_t>(channels) - 1; i < ours.pixels.size(); i += static_cast<size_t>(channels))
          REQUIRE(ours.pixels[i] == 255);
      ++compared;
    }
  }
  CHECK(compared == 16);  // the four seed JPEGs (baseline, progressive, 4:4:4, grey) in four channel counts
}

TEST_CASE("decode_image with libjpeg: corrupt, truncated and oversized JPEGs end in clear errors") {
  const std::vector<uint8_t> jpeg = read_bytes(kFuzzDir / "corpus" / "image_decode" / "rgb_8x8_baseline.jpg.hex");
  decode_jpeg(jpeg, "intact.jpg");  // the base of the cases below decodes

  // The 507-byte JPEG on which stb 2.27 shifts by 38 bits (docs/reliability.md): refused by libjpeg.
  const std::vector<uint8_t> shift = read_bytes(kFuzzDir / "regressions" / "image_decode" / "jpeg_stb_shift.jpg.hex");
  test::check_error([&] { decode_jpeg(shift, "shift.jpg"); }, {"decode_image", "'shift.jpg'", "JPEG (libjpeg: "});
  // The same behind a fill byte 0xFF, which stb would skip: it goes to libjpeg all the same, which wants 0xFF 0xD8.
  std::vector<uint8_t> filled = shift;
  filled.insert(filled.begin(), uint8_t{0xFF});
  test::check_error([&] { decode_jpeg(filled, "filled.jpg"); },
                    {"cannot decode 'filled.jpg' as JPEG (libjpeg: Not a JPEG file: starts with 0xff 0xff)"});

  // Cut in the middle of its entropy-coded data: libjpeg would fill the rest with grey after a warning.
  const size_t scan = jpeg_segment(jpeg, 0xDA);
  const auto middle_of_scan = static_cast<std::ptrdiff_t>(scan + (jpeg.size() - scan) / 2);
  const std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + middle_of_scan);
  test::check_error([&] { decode_jpeg(cut, "cut.jpg"); },
                    {"'cut.jpg' is a corrupt JPEG (libjpeg: Premature end of JPEG file)", "refused"});
  // Only the end marker missing: refused too (every pixel was there, but nothing says the file is whole).
  const std::vector<uint8_t> no_end(jpeg.begin(), jpeg.end() - 2);
  test::check_error([&] { decode_jpeg(no_end, "no_end.jpg"); }, {"'no_end.jpg' is a corrupt JPEG (libjpeg: "});

  // 64x64 declared, within the cap, but data for the original 8x8 pixels only: refused, not mostly grey pixels.
  test::check_error([&] { decode_jpeg(with_declared_size(jpeg, 0xC0, 64, 64), "short.jpg"); },
                    {"'short.jpg' is a corrupt JPEG (libjpeg: ", "refused"});
  // A progressive JPEG declaring a size over the cap: refused on the declared size. libjpeg reads a progressive file
  // whole in jpeg_start_decompress, into coefficient buffers of the declared size (gigabytes here), and its data stops
  // after 16x8 pixels; so this message, not an allocation failure or a corrupt-data error, shows that the cap was
  // checked before any of that.
  const std::vector<uint8_t> progressive =
      read_bytes(kFuzzDir / "corpus" / "image_decode" / "rgb_16x8_progressive.jpg.hex");
  test::check_error([&] { decode_jpeg(with_declared_size(progressive, 0xC2, 65500, 65500), "huge.jpg"); },
                    {"'huge.jpg' declares 65500x65500 pixels, more than the limit of 16777216",
                     "DecodeOptions::max_pixels"});
  // Within a raised cap the same file gets as far as libjpeg's decoding, which finds the data short.
  const std::vector<uint8_t> larger = with_declared_size(progressive, 0xC2, 64, 64);
  test::check_error([&] { (void)data::decode_image(larger.data(), larger.size(), "larger.jpg", {.max_pixels = 4096}); },
                    {"'larger.jpg' is a corrupt JPEG (libjpeg: "});
}

TEST_CASE("decode_image with libjpeg: a progressive JPEG of 500 scans decodes, one of 501 is refused") {
  const std::vector<uint8_t> at_limit = progressive_jpeg(data::detail::kMaxJpegScans);
  const data::Image decoded = data::decode_image(at_limit.data(), at_limit.size(), "500_scans.jpg", 1);
  CHECK(decoded.width == 16);
  CHECK(decoded.height == 16);
  int width = 0, height = 0, file_channels = 0;  // stb_image, which has no scan limit, decodes the same pixels
  stbi_uc* theirs = stbi_load_from_memory(at_limit.data(), static_cast<int>(at_limit.size()), &width, &height,
                                          &file_channels, 1);
  REQUIRE(theirs != nullptr);
  REQUIRE(width * height == 256);
  int worst = 0;
  for (size_t i = 0; i < 256; ++i) worst = std::max(worst, std::abs(int{decoded.pixels[i]} - int{theirs[i]}));
  stbi_image_free(theirs);
  CHECK(worst <= 4);
  const std::vector<uint8_t> over = progressive_jpeg(data::detail::kMaxJpegScans + 1);
  test::check_error([&] { decode_jpeg(over, "501_scans.jpg"); },
                    {"'501_scans.jpg' is a progressive JPEG of more than 500 scans"});
}

TEST_CASE("decode_image with libjpeg: an unknown JFIF revision is let pass (it says nothing of the pixels)") {
  const std::vector<uint8_t> jpeg = read_bytes(kFuzzDir / "corpus" / "image_decode" / "rgb_8x8_baseline.jpg.hex");
  const data::Image intact = data::decode_image(jpeg.data(), jpeg.size(), "intact.jpg");
  // APP0: 0xFF 0xE0, length (2), "JFIF\0", major and minor version. Revision 2.01 only draws libjpeg's warning
  // "unknown JFIF revision number", which says nothing of the pixels.
  std::vector<uint8_t> revision_2 = jpeg;
  const size_t app0 = jpeg_segment(revision_2, 0xE0);
  REQUIRE(std::memcmp(&revision_2[app0 + 4], "JFIF", 5) == 0);
  revision_2[app0 + 9] = 2;
  const data::Image decoded = data::decode_image(revision_2.data(), revision_2.size(), "revision_2.jpg");
  CHECK(decoded.width == intact.width);
  CHECK(decoded.height == intact.height);
  CHECK(decoded.pixels == intact.pixels);
}
#endif  // TESSERA_HAVE_LIBJPEG

TEST_CASE("a file given where a data folder is expected: 'is a file, not a folder'") {
  TempDir dir;
  const fs::path file = dir.path / "hostname";
  std::ofstream(file) << "machine\n";
  test::check_error([&] { (void)data::open_cifar10(file, "train"); }, {file.string(), "is a file, not a folder"});
  test::check_error([&] { data::ImageFolder folder(file); }, {file.string(), "is a file, not a folder"});
}

TEST_CASE("safetensors: files of other formats are named, safetensors-like headers keep the precise message") {
  const auto parse = [](const std::string& text) {
    std::vector<std::byte> bytes(text.size());
    std::memcpy(bytes.data(), text.data(), text.size());
    (void)io::SafetensorsFile::parse(std::move(bytes), "x.safetensors");
  };
  test::check_error([&] { parse(std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10)); },
                    {"x.safetensors", "not a safetensors file (it starts like a ZIP archive"});
  test::check_error([&] { parse(std::string("\x80\x02\x7d\x71\x00\x28\x58\x01\x00\x00", 10)); },
                    {"it starts like a Python pickle"});
  test::check_error([&] { parse(std::string("BM\x36\x00\x0c\x00\x00\x00\x00\x00\x36\x00", 12)); },
                    {"it starts like a BMP image"});
  // A header length of 19778 ('B', 'M', then zeros) in a short file is a truncated safetensors file, not a BMP.
  test::check_error([&] { parse(std::string("BM\x00\x00\x00\x00\x00\x00{}", 10)); },
                    {"header length 19778 runs past the end of the file (10 bytes): truncated, or not a safetensors"});
}
