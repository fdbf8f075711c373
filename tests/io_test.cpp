// Tests of io/safetensors.hpp: F16/BF16 conversions, round trips of every dtype, byte-identical re-saves, files
// written by the reference (Rust) writer, one test per malformed file, atomic writes, and an independent reader.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include <tessera/io/safetensors.hpp>
#include <tessera/tessera.hpp>

#include "test_helpers.hpp"

namespace fs = std::filesystem;
using tessera::Tensor;
using tessera::io::Dtype;
using tessera::io::IntegerDtypes;
using tessera::io::SafetensorsEntry;
using tessera::io::SafetensorsFile;
using tessera::io::TensorBytes;

namespace {

// A fresh folder under the system temp folder, removed with everything in it at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device entropy;
    path = fs::temp_directory_path() / ("tessera_io_test_" + std::to_string(entropy()) + std::to_string(entropy()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
};

std::vector<std::byte> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.is_open());
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  if (!chars.empty()) std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

void write_bytes(const fs::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

template <class V>
std::vector<std::byte> bytes_of(const std::vector<V>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(V));
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// A file from its parts: the 8-byte length (the header's size unless given), the header text, the data buffer.
std::vector<std::byte> file_bytes(const std::string& header, const std::vector<std::byte>& data = {},
                                  std::optional<uint64_t> length = std::nullopt) {
  const uint64_t n = length.value_or(header.size());
  std::vector<std::byte> bytes(8);
  std::memcpy(bytes.data(), &n, 8);
  for (char c : header) bytes.push_back(static_cast<std::byte>(c));
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

using test::check_error;

// Writes `bytes` as <dir>/<name> and checks that reading it fails naming the file and `problem`.
void check_malformed(const std::vector<std::byte>& bytes, const std::string& name, const std::string& problem) {
  TempDir dir;
  write_bytes(dir / name, bytes);
  check_error([&] { (void)SafetensorsFile::read(dir / name); }, {name, problem});
}

// A valid file with one F32 tensor "w" of shape (2,) whose entry text is `entry` and data 8 bytes.
std::vector<std::byte> one_tensor_file(const std::string& entry, size_t data_bytes = 8) {
  return file_bytes("{\"w\":" + entry + "}", std::vector<std::byte>(data_bytes));
}

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

}  // namespace

// ---- dtypes and 16-bit float conversions ---------------------------------------------------------------------

TEST_CASE("dtype names, sizes and parsing agree") {
  for (Dtype dtype : tessera::io::kAllDtypes) {
    CHECK(tessera::io::parse_dtype(tessera::io::dtype_name(dtype)) == dtype);
    CHECK(tessera::io::dtype_size(dtype) >= 1);
  }
  CHECK(tessera::io::dtype_size(Dtype::BF16) == 2);
  CHECK(tessera::io::dtype_size(Dtype::I64) == 8);
  CHECK(!tessera::io::parse_dtype("f32").has_value());
  CHECK(!tessera::io::parse_dtype("F8_E4M3").has_value());
  CHECK(tessera::io::is_floating(Dtype::BF16));
  CHECK(!tessera::io::is_floating(Dtype::U64));
}

TEST_CASE("F16 decoding matches the binary16 definition for all 65536 patterns and re-encodes exactly") {
  using tessera::io::detail::float_to_half;
  using tessera::io::detail::half_to_float;
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const int sign = (bits >> 15) ? -1 : 1;
    const int exponent = (bits >> 10) & 0x1F;
    const int mantissa = bits & 0x3FF;
    const float value = half_to_float(bits);
    if (exponent == 31) {
      CHECK((mantissa ? std::isnan(value) : std::isinf(value)));
      if (mantissa == 0) CHECK(float_to_half(value) == bits);
      else CHECK((float_to_half(value) & 0x7C00) == 0x7C00);
      continue;
    }
    const double expected = exponent == 0 ? sign * std::ldexp(double(mantissa), -24)
                                          : sign * std::ldexp(double(1024 + mantissa), exponent - 25);
    REQUIRE(double(value) == expected);
    CHECK(std::signbit(value) == (sign < 0));
    REQUIRE(float_to_half(value) == bits);
  }
}

TEST_CASE("F16 encoding rounds to nearest, ties to even, including subnormals and overflow") {
  using tessera::io::detail::float_to_half;
  using tessera::io::detail::half_to_float;
  // Between each pair of neighbouring positive finite halves: the midpoint goes to the even one, a hair off
  // the midpoint goes to the nearer one.
  for (uint16_t low = 0; low < 0x7BFF; ++low) {
    const auto high = static_cast<uint16_t>(low + 1);
    const float a = half_to_float(low), b = half_to_float(high);
    const float mid = static_cast<float>((double(a) + double(b)) / 2);  // exact: 12 significant bits
    REQUIRE(float_to_half(mid) == ((low & 1) ? high : low));
    REQUIRE(float_to_half(std::nextafter(mid, 0.0f)) == low);
    REQUIRE(float_to_half(std::nextafter(mid, INFINITY)) == high);
    REQUIRE(float_to_half(-mid) == (((low & 1) ? high : low) | 0x8000));
  }
  CHECK(float_to_half(std::nextafter(65520.0f, 0.0f)) == 0x7BFF);
  CHECK(float_to_half(65520.0f) == 0x7C00);  // the tie above the largest finite half rounds to inf
  CHECK(float_to_half(1e30f) == 0x7C00);
  CHECK(float_to_half(-1e30f) == 0xFC00);
  CHECK(float_to_half(0x1p-25f) == 0x0000);  // tie between 0 and 2^-24 goes to even (0)
  CHECK(float_to_half(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);
  CHECK(float_to_half(1e-30f) == 0x0000);
  CHECK(float_to_half(-1e-30f) == 0x8000);
  CHECK(float_to_half(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(float_to_half(std::numeric_limits<float>::quiet_NaN()) == 0x7E00);
}

TEST_CASE("BF16 decodes every pattern, re-encodes exactly and rounds to nearest even") {
  using tessera::io::detail::bfloat16_to_float;
  using tessera::io::detail::float_to_bfloat16;
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    const float value = bfloat16_to_float(bits);
    REQUIRE(std::bit_cast<uint32_t>(value) == (b << 16));
    if (std::isnan(value)) {
      CHECK(std::isnan(bfloat16_to_float(float_to_bfloat16(value))));
      continue;
    }
    REQUIRE(float_to_bfloat16(value) == bits);
    const uint32_t exponent_bits = (b >> 7) & 0xFF;
    if (exponent_bits == 0xFF || (b & 0x7FFF) == 0x7F7F) continue;  // inf, or no finite neighbour above
    const float next = bfloat16_to_float(static_cast<uint16_t>(b + 1));
    const float mid = static_cast<float>((double(value) + double(next)) / 2);  // exact: 9 significant bits
    const uint16_t even = (b & 1) ? static_cast<uint16_t>(b + 1) : bits;
    REQUIRE(float_to_bfloat16(mid) == even);
    REQUIRE(float_to_bfloat16(std::nextafter(mid, value)) == bits);
    REQUIRE(float_to_bfloat16(std::nextafter(mid, next)) == static_cast<uint16_t>(b + 1));
  }
  CHECK(float_to_bfloat16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds up to inf
  CHECK(float_to_bfloat16(std::bit_cast<float>(0x7F800001u)) == 0x7FC0);  // signalling NaN stays a NaN
}

// ---- reading known bytes ------------------------------------------------------------------------------------

TEST_CASE("hand-written F16 and BF16 bytes decode to the known values") {
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0x8000};
  const std::vector<float> f16_values = {1.0f, -2.0f, 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f, 65504.0f,
                                         INFINITY, -INFINITY, NAN, -0.0f};
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC040, 0x0001, 0x7F7F, 0x7F80, 0x7FC0, 0x3E80};
  const std::vector<float> bf16_values = {1.0f, -3.0f, 0x1p-133f, 0x1.FEp127f, INFINITY, NAN, 0.25f};
  auto data = bytes_of(f16);
  const auto bf16_bytes = bytes_of(bf16);
  data.insert(data.end(), bf16_bytes.begin(), bf16_bytes.end());
  const std::string header = R"({"h":{"dtype":"F16","shape":[2,5],"data_offsets":[0,20]},)"
                             R"("b":{"dtype":"BF16","shape":[7],"data_offsets":[20,34]}})";
  const auto file = SafetensorsFile::parse(file_bytes(header, data), "hand.safetensors");
  REQUIRE(file.size() == 2);
  CHECK(file.entries()[0].name == "h");
  CHECK(file.entries()[1].name == "b");

  const auto h = file.tensor<float>("h");
  CHECK(h.shape() == tessera::Shape{2, 5});
  for (size_t i = 0; i < f16.size(); ++i) {
    INFO("F16 element " << i);
    if (std::isnan(f16_values[i])) CHECK(std::isnan(h.data()[i]));
    else CHECK(same_bits(h.data()[i], f16_values[i]));
  }
  const auto b = file.tensor<double>("b");
  for (size_t i = 0; i < bf16.size(); ++i) {
    INFO("BF16 element " << i);
    if (std::isnan(bf16_values[i])) CHECK(std::isnan(b.data()[i]));
    else CHECK(b.data()[i] == double(bf16_values[i]));
  }
}

TEST_CASE("reads every dtype of a file written by the reference (Rust) writer and re-writes it byte for byte") {
  const fs::path path = fs::path(TESSERA_FIXTURES_DIR) / "io_reference.safetensors";
  const auto original = read_bytes(path);
  const auto file = SafetensorsFile::read(path);
  CHECK(file.metadata() == tessera::io::Metadata{{"format", "pt"}, {"source", "io_make_reference.py"}});
  CHECK(file.names() == std::vector<std::string>{"u64", "i64", "f64", "empty", "f32", "scalar", "u32", "i32", "bf16",
                                                 "f16", "u16", "i16", "i8", "u8", "bool"});

  CHECK(file.tensor<double>("f64").to_vector() == std::vector<double>{-1.0, -0.5, 0.0, 0.5, 1.0, 1e300});
  const auto f32 = file.tensor<float>("f32").to_vector();
  CHECK(f32[0] == 1.5f);
  CHECK(same_bits(f32[1], -0.0f));
  CHECK(f32[2] == std::numeric_limits<float>::max());
  CHECK(f32[3] == std::numeric_limits<float>::denorm_min());
  CHECK(file.tensor<float>("f16").to_vector() ==
        std::vector<float>{1.0f, -2.0f, 0x1p-24f, 1023 * 0x1p-24f, 65504.0f, -INFINITY});
  CHECK(file.tensor<float>("bf16").to_vector() == std::vector<float>{1.0f, -3.0f, 0x1p-133f, 0x1.FEp127f, INFINITY});
  CHECK(file.tensor<float>("scalar").rank() == 0);
  CHECK(file.tensor<float>("scalar").item() == 7.25f);
  CHECK(file.tensor<float>("empty").shape() == tessera::Shape{0, 4});

  CHECK(file.int64s("i64") == std::vector<int64_t>{-(int64_t{1} << 62), int64_t{1} << 40, -1});
  CHECK(file.int64s("u64") == std::vector<int64_t>{0, std::numeric_limits<int64_t>::max()});
  CHECK(file.int64s("i32") == std::vector<int64_t>{-7, 0, 2147483647});
  CHECK(file.entry("i32").data.shape() == std::vector<int64_t>{1, 3});
  CHECK(file.int64s("u32") == std::vector<int64_t>{4294967295});
  CHECK(file.int64s("i16") == std::vector<int64_t>{-32768, 32767});
  CHECK(file.int64s("u16") == std::vector<int64_t>{65535, 1});
  CHECK(file.int64s("i8") == std::vector<int64_t>{-128, 127, 3});
  CHECK(file.int64s("u8") == std::vector<int64_t>{0, 255, 17, 42});
  CHECK(file.int64s("bool") == std::vector<int64_t>{1, 0, 1});
  CHECK(file.tensor<double>("i8", IntegerDtypes::convert).to_vector() == std::vector<double>{-128, 127, 3});

  CHECK(tessera::io::serialize_safetensors(file.entries(), file.metadata()) == original);
}

TEST_CASE("reads the shared timm ViT fixture") {
  const fs::path path = fs::path(TESSERA_SHARED_DIR) / "fixtures" / "timm_vit_p4_d96.safetensors";
  if (!fs::exists(path)) {
    MESSAGE("skipped: " << path << " is not present");
    return;
  }
  const auto file = SafetensorsFile::read(path);
  for (const char* key : {"param.cls_token", "param.pos_embed", "param.blocks.2.attn.qkv.weight", "grad.head.bias",
                          "adamw3.patch_embed.proj.weight", "attn.0", "input", "labels", "logits", "loss"})
    CHECK_MESSAGE(file.contains(key), key);
  for (const char* key : {"config", "timm", "optimizer"}) CHECK_MESSAGE(file.metadata().count(key) == 1, key);
  const auto config = nlohmann::json::parse(file.metadata().at("config"));
  CHECK(config.at("embed_dim") == 96);
  CHECK(config.at("patch_size") == 4);

  CHECK(file.entry("param.cls_token").data.dtype() == Dtype::F32);
  CHECK(file.tensor<float>("param.cls_token").shape() == tessera::Shape{1, 1, 96});
  CHECK(file.tensor<float>("param.patch_embed.proj.weight").shape() == tessera::Shape{96, 3, 4, 4});
  CHECK(file.tensor<double>("logits").shape() == tessera::Shape{4, 10});
  CHECK(file.tensor<float>("attn.1").shape() == tessera::Shape{4, 3, 65, 65});
  // Attention rows are softmax outputs: each sums to 1.
  const auto attn = file.tensor<double>("attn.0");
  for (int64_t row = 0; row < 4 * 3 * 65; row += 97) {
    double sum = 0;
    for (int64_t j = 0; j < 65; ++j) sum += attn.data()[row * 65 + j];
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
  }
  const auto labels = file.int64s("labels");
  REQUIRE(labels.size() == 4);
  for (int64_t label : labels) CHECK((label >= 0 && label < 10));
  check_error([&] { (void)file.tensor<float>("labels"); }, {"labels", "IntegerDtypes::convert"});
  CHECK(file.tensor<float>("labels", IntegerDtypes::convert).to_vector() ==
        std::vector<float>(labels.begin(), labels.end()));

  // Its data buffer is laid out in the reference order, so tessera's writer reproduces it exactly.
  const auto original = read_bytes(path);
  const auto rewritten = tessera::io::serialize_safetensors(file.entries(), file.metadata());
  uint64_t original_header = 0, rewritten_header = 0;
  std::memcpy(&original_header, original.data(), 8);
  std::memcpy(&rewritten_header, rewritten.data(), 8);
  CHECK(std::equal(original.begin() + 8 + static_cast<std::ptrdiff_t>(original_header), original.end(),
                   rewritten.begin() + 8 + static_cast<std::ptrdiff_t>(rewritten_header), rewritten.end()));

  const auto all = tessera::io::load_safetensors<float>(path, IntegerDtypes::convert);
  CHECK(all.size() == file.size());
  CHECK(all.front().first == "labels");
}

// ---- writing --------------------------------------------------------------------------------------------------

TEST_CASE("every dtype round-trips through a file: raw bytes, scalars and empty tensors") {
  TempDir dir;
  std::mt19937 random(7);
  std::vector<SafetensorsEntry> entries;
  for (Dtype dtype : tessera::io::kAllDtypes) {
    const std::vector<int64_t> shape = {3, 5};
    std::vector<std::byte> bytes(15 * tessera::io::dtype_size(dtype));
    for (auto& b : bytes) b = static_cast<std::byte>(random());
    entries.push_back({"t_" + std::string(tessera::io::dtype_name(dtype)), TensorBytes(dtype, shape, bytes)});
  }
  entries.push_back({"scalar", TensorBytes(Dtype::F64, {}, bytes_of(std::vector<double>{2.5}))});
  entries.push_back({"empty", TensorBytes(Dtype::I32, {4, 0, 2}, std::vector<std::byte>{})});
  const tessera::io::Metadata metadata = {{"note", "every dtype"}, {"unicode", "\xC3\xA9t\xC3\xA9 \"quoted\"\n"}};
  tessera::io::save_safetensors(dir / "all.safetensors", entries, metadata);

  const auto file = SafetensorsFile::read(dir / "all.safetensors");
  CHECK(file.metadata() == metadata);
  REQUIRE(file.size() == entries.size());
  for (const auto& written : entries) {
    INFO("tensor " << written.name);
    const auto& read = file.entry(written.name).data;
    CHECK(read.dtype() == written.data.dtype());
    CHECK(read.shape() == written.data.shape());
    CHECK(std::equal(read.bytes().begin(), read.bytes().end(), written.data.bytes().begin(), written.data.bytes().end()));
  }
  CHECK(file.tensor<double>("scalar").item() == 2.5);
  CHECK(file.int64s("empty").empty());
}

TEST_CASE("tensors and integer vectors round-trip with the dtype they are stored as") {
  TempDir dir;
  tessera::Generator gen(3);
  auto f = Tensor<float>::normal({3, 7}, 0.0f, 10.0f, gen);
  f.data()[0] = 0x1p-20f;  // subnormal in F16
  f.data()[1] = 1e6f;      // overflows F16
  auto d = Tensor<double>::normal({2, 1, 3}, 0.0, 1.0, gen);
  const std::vector<int64_t> i64 = {-5, 0, int64_t{1} << 53, std::numeric_limits<int64_t>::min()};
  const std::vector<int32_t> i32 = {-1, 2, 3, 4, 5, 6};
  const std::vector<uint8_t> u8 = {0, 128, 255};
  tessera::io::save_safetensors(dir / "t.safetensors",
                                {{"f32", f},
                                 {"f64", d},
                                 {"f_as_f64", TensorBytes(f, Dtype::F64)},
                                 {"f_as_f16", TensorBytes(f, Dtype::F16)},
                                 {"f_as_bf16", TensorBytes(f, Dtype::BF16)},
                                 {"d_as_f32", TensorBytes(d, Dtype::F32)},
                                 {"i64", i64},
                                 {"i32", TensorBytes(i32, {2, 3})},
                                 {"u8", u8}},
                                {{"epoch", "3"}});
  const auto file = SafetensorsFile::read(dir / "t.safetensors");
  CHECK(file.metadata().at("epoch") == "3");
  CHECK(file.entry("f32").data.dtype() == Dtype::F32);
  CHECK(file.tensor<float>("f32").to_vector() == f.to_vector());
  CHECK(file.tensor<float>("f32").shape() == f.shape());
  CHECK(file.tensor<double>("f64").to_vector() == d.to_vector());
  CHECK(file.tensor<double>("f64").shape() == d.shape());
  CHECK(file.tensor<float>("f_as_f64").to_vector() == f.to_vector());
  CHECK(file.entry("f_as_f16").data.dtype() == Dtype::F16);
  const auto halves = file.tensor<float>("f_as_f16");
  const auto bfloats = file.tensor<float>("f_as_bf16");
  const auto singles = file.tensor<double>("d_as_f32");
  for (int64_t i = 0; i < f.numel(); ++i) {
    const float v = f.data()[i];
    CHECK(same_bits(halves.data()[i], tessera::io::detail::half_to_float(tessera::io::detail::float_to_half(v))));
    CHECK(same_bits(bfloats.data()[i], tessera::io::detail::bfloat16_to_float(tessera::io::detail::float_to_bfloat16(v))));
    CHECK(std::abs(bfloats.data()[i] - v) <= std::abs(v) * 0x1p-8f);
  }
  CHECK(halves.data()[0] == 0x1p-20f);
  CHECK(halves.data()[1] == INFINITY);
  for (int64_t i = 0; i < d.numel(); ++i) CHECK(singles.data()[i] == double(static_cast<float>(d.data()[i])));
  CHECK(file.int64s("i64") == i64);
  CHECK(file.entry("i32").data.shape() == std::vector<int64_t>{2, 3});
  CHECK(file.int64s("i32") == std::vector<int64_t>(i32.begin(), i32.end()));
  CHECK(file.int64s("u8") == std::vector<int64_t>{0, 128, 255});
  CHECK(file.tensor<float>("u8", IntegerDtypes::convert).to_vector() == std::vector<float>{0, 128, 255});

  check_error([&] { (void)TensorBytes(d, Dtype::F16); }, {"Tensor<double>", "F16"});
  check_error([&] { (void)TensorBytes(f, Dtype::I32); }, {"Tensor<float>", "I32"});
  check_error([&] { (void)TensorBytes(i32, {4, 2}); }, {"need 32 bytes", "got 24"});
}

TEST_CASE("save, load, save gives identical bytes, whatever order the entries come in") {
  TempDir dir;
  tessera::Generator gen(11);
  std::vector<std::pair<std::string, Tensor<float>>> params = {
      {"patch_embed.proj.weight", Tensor<float>::normal({4, 3, 2, 2}, 0.0f, 1.0f, gen)},
      {"blocks.10.norm1.bias", Tensor<float>::normal({4}, 0.0f, 1.0f, gen)},
      {"blocks.2.norm1.bias", Tensor<float>::normal({4}, 0.0f, 1.0f, gen)},
      {"cls_token", Tensor<float>::normal({1, 1, 4}, 0.0f, 1.0f, gen)},
      {"head.weight", Tensor<float>::normal({3, 4}, 0.0f, 1.0f, gen)},
  };
  tessera::io::save_safetensors(dir / "a.safetensors", params, {{"step", "100"}, {"arch", "vit"}});
  const auto loaded = tessera::io::load_safetensors<float>(dir / "a.safetensors");
  REQUIRE(loaded.size() == params.size());
  CHECK(loaded[0].first == "blocks.10.norm1.bias");  // reference order: dtype, then name
  for (const auto& param : params) {
    const auto match = std::find_if(loaded.begin(), loaded.end(), [&](const auto& p) { return p.first == param.first; });
    REQUIRE(match != loaded.end());
    CHECK(match->second.shape() == param.second.shape());
    CHECK(match->second.to_vector() == param.second.to_vector());
  }
  tessera::io::save_safetensors(dir / "b.safetensors", loaded, {{"arch", "vit"}, {"step", "100"}});
  CHECK(read_bytes(dir / "a.safetensors") == read_bytes(dir / "b.safetensors"));

  // Mixed dtypes through the raw layer: file entries can be saved again as they are.
  std::vector<SafetensorsEntry> mixed = {{"z_u8", std::vector<uint8_t>{1, 2, 3}},
                                         {"a_f16", TensorBytes(params[1].second, Dtype::F16)},
                                         {"m_i64", std::vector<int64_t>{7}},
                                         {"b_f64", TensorBytes(params[4].second, Dtype::F64)},
                                         {"c_f32", params[3].second}};
  const auto first = tessera::io::serialize_safetensors(mixed, {{"k", "v"}});
  std::reverse(mixed.begin(), mixed.end());
  CHECK(tessera::io::serialize_safetensors(mixed, {{"k", "v"}}) == first);
  const auto reread = SafetensorsFile::parse(first, "mixed");
  CHECK(reread.names() == std::vector<std::string>{"m_i64", "b_f64", "c_f32", "a_f16", "z_u8"});
  CHECK(tessera::io::serialize_safetensors(reread.entries(), reread.metadata()) == first);
  tessera::io::save_safetensors(dir / "c.safetensors", reread.entries(), reread.metadata());
  CHECK(read_bytes(dir / "c.safetensors") == first);
}

TEST_CASE("the header is compact JSON in reference order, padded with spaces so the data is 8-byte aligned") {
  const auto bytes = tessera::io::serialize_safetensors(
      {{"b", std::vector<uint8_t>{9}}, {"a", Tensor<float>::full({2}, 1.0f)}, {"c", std::vector<int64_t>{5}}},
      {{"z", "1"}, {"m", "2"}});
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  CHECK(length % 8 == 0);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, length);
  // The same text the Rust safetensors writer produces for these tensors.
  const std::string expected = R"({"__metadata__":{"m":"2","z":"1"},)"
                               R"("c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
                               R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                               R"("b":{"dtype":"U8","shape":[1],"data_offsets":[16,17]}})";
  CHECK(header.substr(0, expected.size()) == expected);
  CHECK(header.size() - expected.size() < 8);
  CHECK(header.find_first_not_of(' ', expected.size()) == std::string::npos);
  CHECK(bytes.size() == 8 + length + 17);
}

TEST_CASE("writing rejects bad entries and never leaves a half-written file") {
  TempDir dir;
  const fs::path target = dir / "model.safetensors";
  tessera::io::save_safetensors(target, {{"w", std::vector<int64_t>{1, 2}}});
  const auto before = read_bytes(target);

  check_error([&] { tessera::io::save_safetensors(target, {{"w", std::vector<int64_t>{1}}, {"w", std::vector<int64_t>{2}}}); },
              {"model.safetensors", "duplicate", "'w'"});
  check_error([&] { tessera::io::save_safetensors(target, {{"__metadata__", std::vector<int64_t>{1}}}); },
              {"model.safetensors", "reserved"});
  check_error([&] { tessera::io::save_safetensors(target, {{"bad\xFF", std::vector<int64_t>{1}}}); }, {"UTF-8"});
  check_error([&] { tessera::io::save_safetensors(target, {{"w", std::vector<int64_t>{1}}}, {{"k", "\xC3"}}); },
              {"metadata", "UTF-8"});
  check_error([&] { tessera::io::save_safetensors(dir / "missing" / "x.safetensors", {{"w", std::vector<int64_t>{1}}}); },
              {"x.safetensors", "does not exist"});
  check_error([&] { tessera::io::save_safetensors(dir.path, {{"w", std::vector<int64_t>{1}}}); }, {"directory"});
  std::vector<std::pair<std::string, Tensor<float>>> undefined = {{"u", Tensor<float>()}};
  check_error([&] { tessera::io::save_safetensors(target, undefined); }, {"'u'", "undefined"});

  CHECK(read_bytes(target) == before);
  size_t files = 0;
  for ([[maybe_unused]] const auto& item : fs::directory_iterator(dir.path)) ++files;
  CHECK(files == 1);  // no temporary left behind

  tessera::io::save_safetensors(target, {{"v", Tensor<double>::ones({2})}});  // replacing works
  CHECK(SafetensorsFile::read(target).names() == std::vector<std::string>{"v"});
  files = 0;
  for ([[maybe_unused]] const auto& item : fs::directory_iterator(dir.path)) ++files;
  CHECK(files == 1);
}

TEST_CASE("tensor-level reads fail clearly where a conversion is impossible") {
  const std::vector<int64_t> seven_dims = {1, 1, 1, 1, 1, 1, 2};
  const auto bytes = tessera::io::serialize_safetensors(
      {{"ids", std::vector<int64_t>{3, 4}},
       {"big", TensorBytes(Dtype::U64, {1}, bytes_of(std::vector<uint64_t>{uint64_t{1} << 63}))},
       {"deep", TensorBytes(Dtype::F32, seven_dims, bytes_of(std::vector<float>{1, 2}))},
       {"w", Tensor<float>::full({2, 2}, 0.5f)}});
  const auto file = SafetensorsFile::parse(bytes, "conv.safetensors");
  check_error([&] { (void)file.tensor<float>("ids"); }, {"conv.safetensors", "'ids'", "integer dtype I64"});
  CHECK(file.tensor<float>("ids", IntegerDtypes::convert).to_vector() == std::vector<float>{3, 4});
  check_error([&] { (void)file.int64s("w"); }, {"conv.safetensors", "'w'", "floating dtype F32"});
  check_error([&] { (void)file.int64s("big"); }, {"'big'", "does not fit in int64"});
  check_error([&] { (void)file.tensor<float>("deep"); }, {"'deep'", "rank 7"});
  CHECK(file.entry("deep").data.shape() == seven_dims);  // the raw layer still reads it
  check_error([&] { (void)file.entry("nope"); }, {"conv.safetensors", "no tensor named 'nope'"});
  CHECK(!file.contains("nope"));

  auto destination = Tensor<double>::zeros({2, 2});
  file.read_into("w", destination);
  CHECK(destination.to_vector() == std::vector<double>{0.5, 0.5, 0.5, 0.5});
  auto wrong = Tensor<float>::zeros({4});
  check_error([&] { file.read_into("w", wrong); }, {"'w'", "(2, 2)", "(4)"});
  check_error([&] { (void)tessera::io::to_tensor<float>(file.entry("ids").data); }, {"to_tensor", "I64"});
  CHECK(tessera::io::to_int64s(file.entry("ids").data) == std::vector<int64_t>{3, 4});
}

// ---- malformed files: each names the file and the problem -----------------------------------------------------

TEST_CASE("malformed: missing file") {
  TempDir dir;
  check_error([&] { (void)SafetensorsFile::read(dir / "absent.safetensors"); }, {"absent.safetensors", "does not exist"});
  check_error([&] { (void)SafetensorsFile::read(dir.path); }, {"directory"});
  check_error([&] { (void)tessera::io::load_safetensors<float>(dir / "absent.safetensors"); }, {"absent.safetensors"});
}

TEST_CASE("malformed: file shorter than the 8-byte length") {
  check_malformed(std::vector<std::byte>(5), "short.safetensors", "shorter than the 8-byte");
  check_malformed({}, "empty.safetensors", "shorter than the 8-byte");
}

TEST_CASE("malformed: header length past the end of the file") {
  check_malformed(file_bytes("{}", {}, 3), "past.safetensors", "past the end");
  check_malformed(file_bytes("", {}, 1000), "past2.safetensors", "past the end");
}

TEST_CASE("malformed: huge header length") {
  check_malformed(file_bytes("{}", {}, 200'000'000), "huge.safetensors", "exceeds the limit");
  check_malformed(file_bytes("{}", {}, std::numeric_limits<uint64_t>::max()), "huge2.safetensors", "exceeds the limit");
}

TEST_CASE("malformed: header is not valid JSON") {
  check_malformed(file_bytes("{\"w\":"), "trunc.safetensors", "not valid JSON");
  check_malformed(file_bytes("not json"), "text.safetensors", "not valid JSON");
  check_malformed(file_bytes("{\"a\":\"\xFF\"}"), "utf8.safetensors", "not valid JSON");
}

TEST_CASE("malformed: header is not an object") {
  check_malformed(file_bytes("[1, 2]"), "array.safetensors", "not a JSON object");
  check_malformed(file_bytes("42"), "number.safetensors", "not a JSON object");
}

TEST_CASE("malformed: duplicate key") {
  check_malformed(file_bytes(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                             R"("w":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"),
                  "dup.safetensors", "duplicate");
  check_malformed(one_tensor_file(R"({"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})"), "dup2.safetensors",
                  "duplicate");
}

TEST_CASE("malformed: entry missing dtype, shape or data_offsets") {
  check_malformed(one_tensor_file(R"({"shape":[2],"data_offsets":[0,8]})"), "nodtype.safetensors", "missing its 'dtype'");
  check_malformed(one_tensor_file(R"({"dtype":"F32","data_offsets":[0,8]})"), "noshape.safetensors", "missing its 'shape'");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2]})"), "nooffsets.safetensors",
                  "missing its 'data_offsets'");
  check_malformed(one_tensor_file(R"([1, 2])"), "notobject.safetensors", "not an object");
}

TEST_CASE("malformed: entry fields of the wrong type") {
  check_malformed(one_tensor_file(R"({"dtype":7,"shape":[2],"data_offsets":[0,8]})"), "dtypeint.safetensors",
                  "'dtype' is a JSON number");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})"), "shapestr.safetensors",
                  "'shape' is a JSON string");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), "shapeneg.safetensors",
                  "non-negative integers");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), "shapefloat.safetensors",
                  "non-negative integers");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), "offsets3.safetensors",
                  "[begin, end]");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2],"data_offsets":{"a":0}})"), "offsetsobj.safetensors",
                  "[begin, end]");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2],"data_offsets":[0,"8"]})"), "offsetsstr.safetensors",
                  "non-negative integers");
}

TEST_CASE("malformed: unknown or unsupported dtype") {
  check_malformed(one_tensor_file(R"({"dtype":"F31","shape":[2],"data_offsets":[0,8]})"), "unknown.safetensors",
                  "unknown dtype 'F31'");
  check_malformed(one_tensor_file(R"({"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]})"), "fp8.safetensors",
                  "F8_E4M3, which tessera does not support");
}

TEST_CASE("malformed: offsets outside the data buffer") {
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2],"data_offsets":[4,12]})"), "outside.safetensors",
                  "outside the data buffer");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]})"),
                  "outside2.safetensors", "outside the data buffer");
}

TEST_CASE("malformed: begin after end") {
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), "reversed.safetensors",
                  "reversed (begin > end)");
}

TEST_CASE("malformed: overlapping tensors") {
  check_malformed(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                             std::vector<std::byte>(12)),
                  "overlap.safetensors", "overlaps");
  check_malformed(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                             std::vector<std::byte>(8)),
                  "same.safetensors", "overlaps");
}

TEST_CASE("malformed: gap between tensors") {
  check_malformed(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                             std::vector<std::byte>(12)),
                  "gap.safetensors", "gap of 4 bytes");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), "gapfront.safetensors",
                  "gap of 4 bytes");
}

TEST_CASE("malformed: unused bytes after the last tensor") {
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 9), "tail.safetensors",
                  "1 unused bytes");
  check_malformed(file_bytes("{}", std::vector<std::byte>(3)), "tailonly.safetensors", "3 unused bytes");
}

TEST_CASE("malformed: byte size differs from element count times dtype size") {
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), "size.safetensors",
                  "size mismatch");
  check_malformed(one_tensor_file(R"({"dtype":"F64","shape":[2],"data_offsets":[0,8]})"), "size2.safetensors",
                  "need 16 bytes");
  check_malformed(one_tensor_file(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"),
                  "overflow.safetensors", "too many elements");
}

TEST_CASE("malformed: metadata that is not a map of strings") {
  check_malformed(file_bytes(R"({"__metadata__":{"epoch":3}})"), "metanum.safetensors",
                  "metadata values must be strings");
  check_malformed(file_bytes(R"({"__metadata__":["a"]})"), "metaarray.safetensors", "'__metadata__' is a JSON array");
  const auto ok = SafetensorsFile::parse(file_bytes(R"({"__metadata__":null})"), "null-metadata");
  CHECK(ok.metadata().empty());
  CHECK(ok.size() == 0);
}

TEST_CASE("valid edge cases: empty file body, header padding and zero-size tensors") {
  const auto empty = SafetensorsFile::parse(file_bytes("{}"), "empty-header");
  CHECK(empty.size() == 0);
  const auto padded = SafetensorsFile::parse(file_bytes(R"({"z":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}   )"),
                                             "padded");
  REQUIRE(padded.size() == 1);
  CHECK(padded.entry("z").data.numel() == 0);
  CHECK(padded.int64s("z").empty());
}

// ---- an independent reader ------------------------------------------------------------------------------------

TEST_CASE("an independent numpy reader agrees with what tessera wrote") {
  const char* configured = std::getenv("TESSERA_PYTHON");
  const std::string python = configured ? configured : "python3";
  if (std::system((python + " -c \"import numpy\" > /dev/null 2>&1").c_str()) != 0) {
    MESSAGE("skipped: '" << python << "' cannot import numpy (set TESSERA_PYTHON to an interpreter that can)");
    return;
  }
  TempDir dir;
  tessera::Generator gen(5);
  auto f = Tensor<float>::normal({2, 3, 5}, 0.0f, 3.0f, gen);
  f.data()[0] = INFINITY;
  f.data()[1] = -0.0f;
  f.data()[2] = 0x1p-140f;
  auto d = Tensor<double>::normal({7}, 0.0, 1.0, gen);
  const std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), -1, 0, std::numeric_limits<int64_t>::max()};
  const std::vector<int32_t> i32 = {-3, 1 << 30};
  const std::vector<uint8_t> u8 = {0, 7, 255};
  const std::vector<SafetensorsEntry> entries = {
      {"f32", f},      {"f64", d},       {"f16", TensorBytes(f, Dtype::F16)}, {"bf16", TensorBytes(f, Dtype::BF16)},
      {"labels", i64}, {"i32", TensorBytes(i32, {1, 2})}, {"u8", u8},         {"scalar", Tensor<float>::full({}, 1.5f)}};
  const tessera::io::Metadata metadata = {{"config", R"({"dim": 96})"}, {"name", "py check"}};
  const fs::path file = dir / "checked.safetensors";
  tessera::io::save_safetensors(file, entries, metadata);
  const fs::path script = fs::path(TESSERA_FIXTURES_DIR) / "read_safetensors.py";
  const fs::path output = dir / "out.json";
  const std::string command = python + " '" + script.string() + "' '" + file.string() + "' > '" + output.string() + "'";
  REQUIRE(std::system(command.c_str()) == 0);

  std::ifstream in(output);
  const auto report = nlohmann::json::parse(in);
  CHECK(report.at("metadata") == nlohmann::json(metadata));
  const auto read = SafetensorsFile::read(file);
  REQUIRE(report.at("tensors").size() == read.size());
  for (size_t t = 0; t < read.size(); ++t) {
    const auto& theirs = report.at("tensors")[t];
    const auto& ours = read.entries()[t];
    INFO("tensor " << ours.name);
    CHECK(theirs.at("name") == ours.name);
    CHECK(theirs.at("dtype") == std::string(tessera::io::dtype_name(ours.data.dtype())));
    CHECK(theirs.at("shape").get<std::vector<int64_t>>() == ours.data.shape());
    const auto& values = theirs.at("values");
    REQUIRE(static_cast<int64_t>(values.size()) == ours.data.numel());
    if (tessera::io::is_floating(ours.data.dtype())) {
      const auto mine = tessera::io::to_tensor<double>(ours.data);
      for (int64_t i = 0; i < mine.numel(); ++i) {
        const double v = mine.data()[i];
        if (std::isinf(v)) CHECK(values[static_cast<size_t>(i)] == (v > 0 ? "inf" : "-inf"));
        else CHECK(values[static_cast<size_t>(i)].get<double>() == v);
      }
    } else {
      CHECK(values.get<std::vector<int64_t>>() == tessera::io::to_int64s(ours.data));
    }
  }
}
