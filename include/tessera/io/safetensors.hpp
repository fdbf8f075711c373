// Safetensors files, the format timm and Hugging Face ship: a validating reader exposing each tensor's dtype, shape
// and bytes, conversions to Tensor<T>, and a deterministic writer that replaces files atomically.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <ostream>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/io/detail/atomic_file.hpp"
#include "tessera/io/detail/float16.hpp"
#include "tessera/nn/json.hpp"

namespace tessera::io {

static_assert(std::endian::native == std::endian::little,
              "tessera::io copies safetensors' little-endian bytes straight into memory; big-endian hosts are unsupported");

// File layout: 8 bytes N (little-endian u64) | N bytes of JSON header | data buffer. The header maps each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]} (byte offsets into the data buffer, which the tensors
// tile exactly) and may hold "__metadata__", a map of strings to strings.

// Element types tessera reads and writes, ranked as the reference (Rust) writer ranks them: it lays data out from
// the highest rank down, then by name, which keeps every tensor aligned to its element size.
enum class Dtype { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

inline constexpr std::array<Dtype, 13> kAllDtypes = {Dtype::BOOL, Dtype::U8,  Dtype::I8,  Dtype::I16, Dtype::U16,
                                                     Dtype::F16,  Dtype::BF16, Dtype::I32, Dtype::U32, Dtype::F32,
                                                     Dtype::F64,  Dtype::I64, Dtype::U64};

// Headers larger than this are rejected, as the reference reader does.
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

using Metadata = std::map<std::string, std::string>;

// Whether reading an integer (or BOOL) tensor as floating point is allowed.
enum class IntegerDtypes { reject, convert };

inline std::string_view dtype_name(Dtype dtype) {
  switch (dtype) {
    case Dtype::BOOL: return "BOOL";
    case Dtype::U8: return "U8";
    case Dtype::I8: return "I8";
    case Dtype::I16: return "I16";
    case Dtype::U16: return "U16";
    case Dtype::F16: return "F16";
    case Dtype::BF16: return "BF16";
    case Dtype::I32: return "I32";
    case Dtype::U32: return "U32";
    case Dtype::F32: return "F32";
    case Dtype::F64: return "F64";
    case Dtype::I64: return "I64";
    case Dtype::U64: return "U64";
  }
  return "?";
}

inline size_t dtype_size(Dtype dtype) {
  switch (dtype) {
    case Dtype::BOOL:
    case Dtype::U8:
    case Dtype::I8: return 1;
    case Dtype::I16:
    case Dtype::U16:
    case Dtype::F16:
    case Dtype::BF16: return 2;
    case Dtype::I32:
    case Dtype::U32:
    case Dtype::F32: return 4;
    case Dtype::F64:
    case Dtype::I64:
    case Dtype::U64: return 8;
  }
  return 0;
}

inline bool is_floating(Dtype dtype) {
  return dtype == Dtype::F16 || dtype == Dtype::BF16 || dtype == Dtype::F32 || dtype == Dtype::F64;
}

inline std::optional<Dtype> parse_dtype(std::string_view name) {
  for (Dtype dtype : kAllDtypes)
    if (dtype_name(dtype) == name) return dtype;
  return std::nullopt;
}

inline std::ostream& operator<<(std::ostream& os, Dtype dtype) { return os << dtype_name(dtype); }

namespace detail {

// Dtypes the format defines that tessera does not read: sub-byte and 8-bit floats, complex.
inline bool is_unsupported_format_dtype(std::string_view name) {
  constexpr std::array<std::string_view, 7> names = {"F4", "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "C64"};
  return std::find(names.begin(), names.end(), name) != names.end();
}

inline std::string shape_string(std::span<const int64_t> shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + ")";
}

// Element count of `shape`, or nullopt when a dimension is negative or the count overflows int64.
inline std::optional<int64_t> checked_numel(std::span<const int64_t> shape) {
  if (std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d < 0; })) return std::nullopt;
  if (std::find(shape.begin(), shape.end(), int64_t{0}) != shape.end()) return 0;
  int64_t n = 1;
  for (int64_t d : shape) {
    if (n > std::numeric_limits<int64_t>::max() / d) return std::nullopt;
    n *= d;
  }
  return n;
}

// Byte count of a tensor, or nullopt on overflow.
inline std::optional<uint64_t> checked_byte_size(std::span<const int64_t> shape, Dtype dtype) {
  const auto numel = checked_numel(shape);
  if (!numel) return std::nullopt;
  const uint64_t n = static_cast<uint64_t>(*numel);
  const uint64_t size = dtype_size(dtype);
  if (n > std::numeric_limits<uint64_t>::max() / size) return std::nullopt;
  return n * size;
}

template <class Element>
Element load_element(const std::byte* bytes, int64_t index) {
  Element value;
  std::memcpy(&value, bytes + static_cast<size_t>(index) * sizeof(Element), sizeof(Element));
  return value;
}

// A name or value from a file for a message, cut after 80 characters.
inline std::string clip(std::string_view text) {
  return text.size() <= 80 ? std::string(text) : std::string(text.substr(0, 80)) + "...";
}

// What a file that is not safetensors looks like from its first bytes ("a JPEG image"), or nullptr if unknown.
inline const char* sniff_other_format(std::span<const std::byte> bytes) {
  const auto starts_with = [&](std::initializer_list<unsigned char> magic, size_t at = 0) {
    if (bytes.size() < at + magic.size()) return false;
    size_t i = at;
    for (unsigned char m : magic)
      if (bytes[i++] != std::byte{m}) return false;
    return true;
  };
  if (starts_with({0xFF, 0xD8, 0xFF})) return "a JPEG image";
  if (starts_with({0x89, 'P', 'N', 'G'})) return "a PNG image";
  if (starts_with({'G', 'I', 'F', '8'})) return "a GIF image";
  // Two-byte magics also begin plausible header lengths (0x4D42 is 19778): they count only with a non-zero third
  // byte, which a safetensors header shorter than 16 MB has as zero.
  const bool third_byte_set = bytes.size() > 2 && bytes[2] != std::byte{0};
  if (starts_with({'B', 'M'}) && third_byte_set) return "a BMP image";
  if (starts_with({'R', 'I', 'F', 'F'})) return "a RIFF file (WebP image or WAV)";
  if (starts_with({'P', 'K', 0x03, 0x04})) return "a ZIP archive (PyTorch .pt/.pth files are ZIP archives of pickles)";
  if ((starts_with({0x80, 2}) || starts_with({0x80, 3}) || starts_with({0x80, 4}) || starts_with({0x80, 5})) &&
      third_byte_set)
    return "a Python pickle (an old PyTorch .pt/.pth file)";
  if (starts_with({0x1F, 0x8B}) && third_byte_set) return "a gzip archive";
  if (starts_with({'u', 's', 't', 'a', 'r'}, 257)) return "a tar archive";
  if (starts_with({0x89, 'H', 'D', 'F'})) return "an HDF5 file (a Keras .h5 model?)";
  if (starts_with({'G', 'G', 'U', 'F'})) return "a GGUF file";
  return nullptr;
}

inline bool is_valid_utf8_json_string(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace detail

// One tensor as the file stores it: a dtype, a shape and the little-endian bytes. The bytes are either owned or
// borrowed from an owner (a Tensor's storage, a read file's buffer) that this value and its copies keep alive.
class TensorBytes {
 public:
  TensorBytes(Dtype dtype, std::vector<int64_t> shape, std::span<const std::byte> bytes, std::shared_ptr<const void> owner)
      : dtype_(dtype), shape_(std::move(shape)), bytes_(bytes), owner_(std::move(owner)) {
    check_size();
  }
  TensorBytes(Dtype dtype, std::vector<int64_t> shape, std::vector<std::byte> bytes) : dtype_(dtype), shape_(std::move(shape)) {
    auto owned = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
    bytes_ = std::span<const std::byte>(owned->data(), owned->size());
    owner_ = std::move(owned);
    check_size();
  }

  // A float tensor stored as F32 (borrowed, no copy), F64, F16 or BF16 (converted, rounding to nearest even).
  TensorBytes(const Tensor<float>& tensor, Dtype stored_as = Dtype::F32) : dtype_(stored_as), shape_(dims_of(tensor)) {
    const float* values = tensor.data();
    const int64_t n = tensor.numel();
    switch (stored_as) {
      case Dtype::F32: borrow(tensor); break;
      case Dtype::F64: own_converted(values, n, [](float v) { return static_cast<double>(v); }); break;
      case Dtype::F16: own_converted(values, n, [](float v) { return io::detail::float_to_half(v); }); break;
      case Dtype::BF16: own_converted(values, n, [](float v) { return io::detail::float_to_bfloat16(v); }); break;
      default:
        ::tessera::detail::fail("TensorBytes: a Tensor<float> is stored as F32, F64, F16 or BF16, not ", stored_as);
    }
  }
  // A double tensor stored as F64 (borrowed, no copy) or F32 (rounded to nearest even).
  TensorBytes(const Tensor<double>& tensor, Dtype stored_as = Dtype::F64) : dtype_(stored_as), shape_(dims_of(tensor)) {
    switch (stored_as) {
      case Dtype::F64: borrow(tensor); break;
      case Dtype::F32:
        own_converted(tensor.data(), tensor.numel(), [](double v) { return static_cast<float>(v); });
        break;
      default:
        ::tessera::detail::fail("TensorBytes: a Tensor<double> is stored as F64 or F32, not ", stored_as,
                                " (make a Tensor<float> first to store F16 or BF16)");
    }
  }

  // Integer values as I64, I32 or U8: a 1-D tensor, or `shape` when given (its element count must match).
  TensorBytes(std::vector<int64_t> values) : TensorBytes(Dtype::I64, std::move(values), std::nullopt) {}
  TensorBytes(std::vector<int64_t> values, std::vector<int64_t> shape) : TensorBytes(Dtype::I64, std::move(values), std::move(shape)) {}
  TensorBytes(std::vector<int32_t> values) : TensorBytes(Dtype::I32, std::move(values), std::nullopt) {}
  TensorBytes(std::vector<int32_t> values, std::vector<int64_t> shape) : TensorBytes(Dtype::I32, std::move(values), std::move(shape)) {}
  TensorBytes(std::vector<uint8_t> values) : TensorBytes(Dtype::U8, std::move(values), std::nullopt) {}
  TensorBytes(std::vector<uint8_t> values, std::vector<int64_t> shape) : TensorBytes(Dtype::U8, std::move(values), std::move(shape)) {}

  Dtype dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const { return *io::detail::checked_numel(shape_); }
  std::span<const std::byte> bytes() const { return bytes_; }

 private:
  template <class Integer>
  TensorBytes(Dtype dtype, std::vector<Integer> values, std::optional<std::vector<int64_t>> shape) : dtype_(dtype) {
    shape_ = shape ? std::move(*shape) : std::vector<int64_t>{static_cast<int64_t>(values.size())};
    auto owned = std::make_shared<const std::vector<Integer>>(std::move(values));
    bytes_ = std::as_bytes(std::span<const Integer>(owned->data(), owned->size()));
    owner_ = std::move(owned);
    check_size();
  }

  template <class T>
  static std::vector<int64_t> dims_of(const Tensor<T>& tensor) {
    const auto dims = tensor.shape().dims();
    return std::vector<int64_t>(dims.begin(), dims.end());
  }

  template <class T>
  void borrow(const Tensor<T>& tensor) {
    bytes_ = std::as_bytes(std::span<const T>(tensor.data(), static_cast<size_t>(tensor.numel())));
    owner_ = tensor.impl();
  }

  template <class T, class Convert>
  void own_converted(const T* values, int64_t n, Convert convert) {
    using Stored = decltype(convert(values[0]));
    auto owned = std::make_shared<std::vector<Stored>>(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) (*owned)[static_cast<size_t>(i)] = convert(values[i]);
    bytes_ = std::as_bytes(std::span<const Stored>(owned->data(), owned->size()));
    owner_ = std::move(owned);
  }

  void check_size() const {
    const auto needed = io::detail::checked_byte_size(shape_, dtype_);
    TESSERA_CHECK(needed.has_value(), "TensorBytes: shape ", io::detail::shape_string(shape_),
                  " has a negative dimension or too many elements");
    TESSERA_CHECK(*needed == bytes_.size(), "TensorBytes: dtype ", dtype_, " and shape ", io::detail::shape_string(shape_),
                  " need ", *needed, " bytes, got ", bytes_.size());
  }

  Dtype dtype_;
  std::vector<int64_t> shape_;
  std::span<const std::byte> bytes_;
  std::shared_ptr<const void> owner_;
};

// A named tensor of a file, in the order the file lays out (and the writer receives) them.
struct SafetensorsEntry {
  std::string name;
  TensorBytes data;
};

namespace detail {

// Hands convert_all a loader of element i, as its stored type, when dtype is BOOL or an integer of at most 32 bits
// (every value of which int64 and double hold exactly), and returns true; returns false for any other dtype.
template <class ConvertAll>
bool convert_narrow_integers(Dtype dtype, const std::byte* in, const ConvertAll& convert_all) {
  switch (dtype) {
    case Dtype::BOOL: convert_all([&](int64_t i) { return load_element<uint8_t>(in, i) != 0 ? 1 : 0; }); return true;
    case Dtype::U8: convert_all([&](int64_t i) { return load_element<uint8_t>(in, i); }); return true;
    case Dtype::I8: convert_all([&](int64_t i) { return load_element<int8_t>(in, i); }); return true;
    case Dtype::I16: convert_all([&](int64_t i) { return load_element<int16_t>(in, i); }); return true;
    case Dtype::U16: convert_all([&](int64_t i) { return load_element<uint16_t>(in, i); }); return true;
    case Dtype::I32: convert_all([&](int64_t i) { return load_element<int32_t>(in, i); }); return true;
    case Dtype::U32: convert_all([&](int64_t i) { return load_element<uint32_t>(in, i); }); return true;
    default: return false;
  }
}

// out = the n elements stored as Stored: copied as they are when Stored is T, else converted one by one.
template <class Stored, class T, class ConvertAll>
void copy_or_convert(T* out, const std::byte* in, int64_t n, const ConvertAll& convert_all) {
  if constexpr (std::is_same_v<T, Stored>) {
    if (n) std::memcpy(out, in, static_cast<size_t>(n) * sizeof(T));
  } else {
    convert_all([&](int64_t i) { return load_element<Stored>(in, i); });
  }
}

// Converts `n` stored elements to T (float or double). `context` prefixes error messages.
template <class T>
void convert_to_floating(const TensorBytes& source, T* out, IntegerDtypes integers, const std::string& context) {
  const std::byte* in = source.bytes().data();
  const int64_t n = source.numel();
  const Dtype dtype = source.dtype();
  TESSERA_CHECK(is_floating(dtype) || integers == IntegerDtypes::convert, context, " has integer dtype ", dtype,
                "; pass IntegerDtypes::convert to read it as floating point, or read it with int64s()");
  auto convert_all = [&](auto load) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(load(i));
  };
  if (convert_narrow_integers(dtype, in, convert_all)) return;
  switch (dtype) {
    case Dtype::F32: copy_or_convert<float>(out, in, n, convert_all); break;
    case Dtype::F64: copy_or_convert<double>(out, in, n, convert_all); break;
    case Dtype::F16: convert_all([&](int64_t i) { return half_to_float(load_element<uint16_t>(in, i)); }); break;
    case Dtype::BF16: convert_all([&](int64_t i) { return bfloat16_to_float(load_element<uint16_t>(in, i)); }); break;
    case Dtype::I64: convert_all([&](int64_t i) { return load_element<int64_t>(in, i); }); break;
    case Dtype::U64: convert_all([&](int64_t i) { return load_element<uint64_t>(in, i); }); break;
    default: break;  // the narrow integers, converted above
  }
}

template <class T>
Tensor<T> to_tensor(const TensorBytes& source, IntegerDtypes integers, const std::string& context) {
  TESSERA_CHECK(source.shape().size() <= static_cast<size_t>(kMaxRank), context, " has shape ",
                shape_string(source.shape()), " of rank ", source.shape().size(), "; tessera tensors have rank at most ",
                kMaxRank);
  Tensor<T> result(Shape(std::span<const int64_t>(source.shape())));
  convert_to_floating(source, result.data(), integers, context);
  return result;
}

inline std::vector<int64_t> to_int64s(const TensorBytes& source, const std::string& context) {
  const std::byte* in = source.bytes().data();
  const int64_t n = source.numel();
  std::vector<int64_t> out(static_cast<size_t>(n));
  auto convert_all = [&](auto load) {
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<int64_t>(load(i));
  };
  if (convert_narrow_integers(source.dtype(), in, convert_all)) return out;
  switch (source.dtype()) {
    case Dtype::I64:
      if (n) std::memcpy(out.data(), in, static_cast<size_t>(n) * sizeof(int64_t));
      break;
    case Dtype::U64:
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t value = load_element<uint64_t>(in, i);
        TESSERA_CHECK(value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), context, " element ", i,
                      " is ", value, ", which does not fit in int64");
        out[static_cast<size_t>(i)] = static_cast<int64_t>(value);
      }
      break;
    default:
      ::tessera::detail::fail(context, " has floating dtype ", source.dtype(),
                              ", not an integer dtype; read it with tensor<float> or tensor<double>");
  }
  return out;
}

}  // namespace detail

// Reads `source` as a Tensor<T> (T float or double), converting F16/BF16/F32/F64, and integer dtypes when allowed.
template <class T>
Tensor<T> to_tensor(const TensorBytes& source, IntegerDtypes integers = IntegerDtypes::reject) {
  return detail::to_tensor<T>(source, integers, "to_tensor: the tensor");
}

// Reads an integer (or BOOL) tensor as int64 values in row-major order.
inline std::vector<int64_t> to_int64s(const TensorBytes& source) { return detail::to_int64s(source, "to_int64s: the tensor"); }

// A whole safetensors file held in memory, validated on load. Entries are in the order of their data in the file.
class SafetensorsFile {
 public:
  // Reads and validates `path`; any problem is a tessera::Error naming the file and what is wrong.
  static SafetensorsFile read(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    const std::string source = path.string();
    std::error_code error;
    TESSERA_CHECK(fs::exists(path, error), "safetensors: '", source, "': file does not exist");
    TESSERA_CHECK(!fs::is_directory(path, error), "safetensors: '", source, "': is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    TESSERA_CHECK(in.is_open(), "safetensors: '", source, "': cannot open file for reading: ", std::strerror(errno));
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    TESSERA_CHECK(size >= 0, "safetensors: '", source, "': cannot determine the file size");
    in.seekg(0, std::ios::beg);
    std::vector<std::byte> bytes(static_cast<size_t>(size));
    in.read(reinterpret_cast<char*>(bytes.data()), size);
    TESSERA_CHECK(in.gcount() == size, "safetensors: '", source, "': read ", in.gcount(), " of ", size, " bytes");
    return parse(std::move(bytes), source);
  }

  // Validates the bytes of a whole file; `source` names it in error messages.
  static SafetensorsFile parse(std::vector<std::byte> bytes, std::string source = "<memory>") {
    SafetensorsFile file;
    file.source_ = std::move(source);
    file.load(std::make_shared<const std::vector<std::byte>>(std::move(bytes)));
    return file;
  }

  const std::string& source() const { return source_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const Metadata& metadata() const { return metadata_; }
  size_t size() const { return entries_.size(); }

  std::vector<std::string> names() const {
    std::vector<std::string> result;
    result.reserve(entries_.size());
    for (const auto& entry : entries_) result.push_back(entry.name);
    return result;
  }

  bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }

  const SafetensorsEntry& entry(std::string_view name) const {
    const auto found = index_.find(name);
    TESSERA_CHECK(found != index_.end(), "safetensors: '", source_, "': no tensor named '", name, "' (the file holds ",
                  entries_.size(), " tensors)");
    return entries_[found->second];
  }

  // The tensor `name` as Tensor<T>; see to_tensor.
  template <class T>
  Tensor<T> tensor(std::string_view name, IntegerDtypes integers = IntegerDtypes::reject) const {
    return detail::to_tensor<T>(entry(name).data, integers, context(name));
  }

  // Copies the tensor `name` into `destination`, whose shape must equal the stored one (e.g. a model parameter).
  template <class T>
  void read_into(std::string_view name, const Tensor<T>& destination, IntegerDtypes integers = IntegerDtypes::reject) const {
    const TensorBytes& stored = entry(name).data;
    const auto dims = destination.shape().dims();
    TESSERA_CHECK(std::equal(dims.begin(), dims.end(), stored.shape().begin(), stored.shape().end()), context(name),
                  " has shape ", detail::shape_string(stored.shape()), " but the destination has shape ",
                  destination.shape());
    detail::convert_to_floating(stored, destination.data(), integers, context(name));
  }

  // The integer (or BOOL) tensor `name` as int64 values in row-major order.
  std::vector<int64_t> int64s(std::string_view name) const { return detail::to_int64s(entry(name).data, context(name)); }

 private:
  SafetensorsFile() = default;

  std::string context(std::string_view name) const {
    return "safetensors: '" + source_ + "': tensor '" + std::string(name) + "'";
  }

  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    ::tessera::detail::fail("safetensors: '", source_, "': ", std::forward<Parts>(parts)...);
  }

  // A header value that must be a non-negative integer (a dimension or an offset).
  std::optional<uint64_t> unsigned_value(const nlohmann::ordered_json& value) const {
    if (!value.is_number_unsigned()) return std::nullopt;
    return value.get<uint64_t>();
  }

  void load(std::shared_ptr<const std::vector<std::byte>> buffer) {
    const std::vector<std::byte>& bytes = *buffer;
    if (bytes.size() < 8) fail("file is ", bytes.size(), " bytes, shorter than the 8-byte header length");
    uint64_t header_length = 0;
    std::memcpy(&header_length, bytes.data(), 8);
    const bool too_long = header_length > kMaxHeaderBytes || header_length > bytes.size() - 8;
    // A header that cannot be, or that does not open a JSON object: say what else the file looks like.
    if (too_long || (header_length > 0 && bytes[8] != std::byte{'{'}))
      if (const char* other = detail::sniff_other_format(bytes))
        fail("not a safetensors file (it starts like ", other, "): a safetensors file begins with the 8-byte length "
             "of a JSON header");
    if (header_length > kMaxHeaderBytes)
      fail("header length ", header_length, " exceeds the limit of ", kMaxHeaderBytes,
           " bytes (is it a safetensors file?)");
    if (header_length > bytes.size() - 8)
      fail("header length ", header_length, " runs past the end of the file (", bytes.size(),
           " bytes): truncated, or not a safetensors file");
    const auto header_text = reinterpret_cast<const char*>(bytes.data() + 8);
    const uint64_t data_start = 8 + header_length;
    const uint64_t data_size = bytes.size() - data_start;

    const nlohmann::ordered_json header = parse_header(header_text, header_text + header_length);
    if (!header.is_object()) fail("header is not a JSON object but a JSON ", header.type_name());

    struct Pending {
      std::string name;
      Dtype dtype;
      std::vector<int64_t> shape;
      uint64_t begin, end;
    };
    std::vector<Pending> pending;
    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        read_metadata(value);
        continue;
      }
      const std::string what = "tensor '" + detail::clip(name) + "'";
      if (!value.is_object()) fail(what, " is described by a JSON ", value.type_name(), ", not an object");
      for (const char* field : {"dtype", "shape", "data_offsets"})
        if (!value.contains(field)) fail(what, " is missing its '", field, "' field");

      const auto& dtype_value = value["dtype"];
      if (!dtype_value.is_string()) fail(what, ": 'dtype' is a JSON ", dtype_value.type_name(), ", not a string");
      const std::string dtype_text = dtype_value.get<std::string>();
      const auto dtype = parse_dtype(dtype_text);
      if (!dtype) {
        if (detail::is_unsupported_format_dtype(dtype_text)) fail(what, " has dtype ", dtype_text, ", which tessera does not support");
        fail(what, " has unknown dtype '", detail::clip(dtype_text), "'");
      }

      const auto& shape_value = value["shape"];
      if (!shape_value.is_array()) fail(what, ": 'shape' is a JSON ", shape_value.type_name(), ", not an array");
      std::vector<int64_t> shape;
      for (const auto& dim : shape_value) {
        const auto d = unsigned_value(dim);
        if (!d || *d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          fail(what, ": 'shape' ", tessera::detail::json_excerpt(shape_value), " must hold non-negative integers");
        shape.push_back(static_cast<int64_t>(*d));
      }

      const auto& offsets_value = value["data_offsets"];
      if (!offsets_value.is_array() || offsets_value.size() != 2)
        fail(what, ": 'data_offsets' ", tessera::detail::json_excerpt(offsets_value), " must be an array [begin, end]");
      const auto begin = unsigned_value(offsets_value[0]);
      const auto end = unsigned_value(offsets_value[1]);
      if (!begin || !end)
        fail(what, ": 'data_offsets' ", tessera::detail::json_excerpt(offsets_value), " must hold non-negative integers");
      if (*begin > *end) fail(what, ": data_offsets [", *begin, ", ", *end, "] are reversed (begin > end)");
      if (*end > data_size)
        fail(what, ": data_offsets [", *begin, ", ", *end, "] reach outside the data buffer of ", data_size, " bytes");

      const auto needed = detail::checked_byte_size(shape, *dtype);
      if (!needed) fail(what, ": shape ", detail::shape_string(shape), " has too many elements");
      if (*needed != *end - *begin)
        fail(what, " holds ", *end - *begin, " bytes but dtype ", *dtype, " and shape ", detail::shape_string(shape),
             " need ", *needed, " bytes (size mismatch)");
      pending.push_back({name, *dtype, std::move(shape), *begin, *end});
    }

    // The tensors must tile [0, data_size) exactly: sorted by offsets, each begins where the previous ended.
    std::stable_sort(pending.begin(), pending.end(),
                     [](const Pending& a, const Pending& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
    uint64_t cursor = 0;
    const Pending* previous = nullptr;
    for (const Pending& p : pending) {
      if (p.begin < cursor)
        fail("tensor '", detail::clip(p.name), "' at data_offsets [", p.begin, ", ", p.end, "] overlaps tensor '",
             detail::clip(previous->name),
             "' at [", previous->begin, ", ", previous->end, "]");
      if (p.begin > cursor)
        fail("gap of ", p.begin - cursor, " bytes in the data buffer before tensor '", detail::clip(p.name), "' at data_offsets [",
             p.begin, ", ", p.end, "]: no tensor covers bytes [", cursor, ", ", p.begin, ")");
      cursor = p.end;
      previous = &p;
    }
    if (cursor != data_size)
      fail("the data buffer has ", data_size - cursor, " unused bytes at its end: tensors cover [0, ", cursor,
           ") of ", data_size, " bytes");

    const std::byte* data = bytes.data() + data_start;
    entries_.reserve(pending.size());
    for (Pending& p : pending) {
      index_.emplace(p.name, entries_.size());
      entries_.push_back({std::move(p.name),
                          TensorBytes(p.dtype, std::move(p.shape),
                                      std::span<const std::byte>(data + p.begin, static_cast<size_t>(p.end - p.begin)), buffer)});
    }
  }

  // Parses the header text, rejecting a key repeated within one object (JSON leaves that undefined).
  nlohmann::ordered_json parse_header(const char* first, const char* last) const {
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    const nlohmann::ordered_json::parser_callback_t track_keys =
        [&](int, nlohmann::ordered_json::parse_event_t event, nlohmann::ordered_json& parsed) {
          using Event = nlohmann::ordered_json::parse_event_t;
          if (event == Event::object_start) open_objects.emplace_back();
          if (event == Event::object_end && !open_objects.empty()) open_objects.pop_back();
          if (event == Event::key && !open_objects.empty() && duplicate.empty() &&
              !open_objects.back().insert(parsed.get<std::string>()).second)
            duplicate = parsed.get<std::string>();
          return true;
        };
    // At most kMaxJsonDepth levels of nesting: a deeper header would overflow the stack in nlohmann's recursion.
    nlohmann::ordered_json header =
        tessera::detail::parse_json<nlohmann::ordered_json>(first, last, "safetensors: '" + source_ + "': header", track_keys);
    if (!duplicate.empty())
      fail("header repeats the key '", detail::clip(duplicate), "' (duplicate keys are ambiguous)");
    return header;
  }

  void read_metadata(const nlohmann::ordered_json& value) {
    if (value.is_null()) return;
    if (!value.is_object()) fail("'__metadata__' is a JSON ", value.type_name(), ", not an object of strings");
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string())
        fail("'__metadata__' value for key '", detail::clip(key), "' is a JSON ", item.type_name(), ", but metadata values must be strings");
      metadata_.emplace(key, item.get<std::string>());
    }
  }

  std::string source_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t, std::less<>> index_;
  Metadata metadata_;
};

namespace detail {

// The bytes of a file before they are written: the 8-byte length, the padded header, then the tensors' bytes.
struct SafetensorsLayout {
  std::array<std::byte, 8> length_prefix{};
  std::string header;
  std::vector<std::span<const std::byte>> data;

  std::vector<std::span<const std::byte>> chunks() const {
    std::vector<std::span<const std::byte>> all = {std::span<const std::byte>(length_prefix),
                                                   std::as_bytes(std::span<const char>(header.data(), header.size()))};
    all.insert(all.end(), data.begin(), data.end());
    return all;
  }
};

// Orders tensors as the reference writer does (dtype rank descending, then name) so the data stays aligned, and
// writes the header compactly: "__metadata__" first (keys sorted), then each tensor as {"dtype","shape",
// "data_offsets"}, padded with spaces to a multiple of 8 bytes. The same input always gives the same bytes.
inline SafetensorsLayout plan_safetensors(const std::vector<SafetensorsEntry>& entries, const Metadata& metadata,
                                          const std::string& op) {
  std::set<std::string_view> seen;
  for (const auto& entry : entries) {
    TESSERA_CHECK(entry.name != "__metadata__", op, ": '__metadata__' is reserved and cannot name a tensor");
    TESSERA_CHECK(seen.insert(entry.name).second, op, ": duplicate tensor name '", entry.name, "'");
    TESSERA_CHECK(is_valid_utf8_json_string(entry.name), op, ": tensor name '", entry.name, "' is not valid UTF-8");
  }
  for (const auto& [key, value] : metadata)
    TESSERA_CHECK(is_valid_utf8_json_string(key) && is_valid_utf8_json_string(value), op, ": metadata entry '", key,
                  "' is not valid UTF-8");

  std::vector<const SafetensorsEntry*> order;
  order.reserve(entries.size());
  for (const auto& entry : entries) order.push_back(&entry);
  std::sort(order.begin(), order.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    if (a->data.dtype() != b->data.dtype()) return a->data.dtype() > b->data.dtype();
    return a->name < b->name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  SafetensorsLayout layout;
  uint64_t offset = 0;
  for (const SafetensorsEntry* entry : order) {
    const uint64_t size = entry->data.bytes().size();
    nlohmann::ordered_json description = nlohmann::ordered_json::object();
    description["dtype"] = std::string(dtype_name(entry->data.dtype()));
    description["shape"] = entry->data.shape();
    description["data_offsets"] = {offset, offset + size};
    header[entry->name] = std::move(description);
    layout.data.push_back(entry->data.bytes());
    offset += size;
  }
  layout.header = header.dump();
  layout.header.append((8 - layout.header.size() % 8) % 8, ' ');
  TESSERA_CHECK(layout.header.size() <= kMaxHeaderBytes, op, ": the header would take ", layout.header.size(),
                " bytes, more than readers accept (", kMaxHeaderBytes, ")");
  const uint64_t length = layout.header.size();
  std::memcpy(layout.length_prefix.data(), &length, 8);
  return layout;
}

}  // namespace detail

// The bytes of a safetensors file holding `entries` and `metadata` (the same bytes save_safetensors writes).
inline std::vector<std::byte> serialize_safetensors(const std::vector<SafetensorsEntry>& entries,
                                                    const Metadata& metadata = {}) {
  const auto layout = detail::plan_safetensors(entries, metadata, "serialize_safetensors");
  std::vector<std::byte> bytes;
  for (const auto& chunk : layout.chunks()) bytes.insert(bytes.end(), chunk.begin(), chunk.end());
  return bytes;
}

// Writes `entries` and `metadata` to `path` through a temporary file in the same folder and a rename, so `path`
// is never left half-written. Entries may come from tensors, integer vectors or another file's entries().
inline void save_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsEntry>& entries,
                             const Metadata& metadata = {}) {
  const std::string op = "save_safetensors: '" + path.string() + "'";
  const auto layout = detail::plan_safetensors(entries, metadata, op);
  io::detail::write_file_atomically(path, layout.chunks(), "save_safetensors");
}

// Saves named tensors (a module's named parameters, say) as F32 for float and F64 for double.
template <class T>
void save_safetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor<T>>>& named_tensors,
                      const Metadata& metadata = {}) {
  std::vector<SafetensorsEntry> entries;
  entries.reserve(named_tensors.size());
  for (const auto& [name, tensor] : named_tensors) {
    TESSERA_CHECK(tensor.defined(), "save_safetensors: '", path.string(), "': tensor '", name, "' is undefined");
    entries.push_back({name, TensorBytes(tensor)});
  }
  save_safetensors(path, entries, metadata);
}

// Loads every tensor of `path` as Tensor<T>, in file order; integer tensors only with IntegerDtypes::convert.
template <class T>
std::vector<std::pair<std::string, Tensor<T>>> load_safetensors(const std::filesystem::path& path,
                                                                IntegerDtypes integers = IntegerDtypes::reject) {
  const SafetensorsFile file = SafetensorsFile::read(path);
  std::vector<std::pair<std::string, Tensor<T>>> result;
  result.reserve(file.size());
  for (const auto& entry : file.entries()) result.emplace_back(entry.name, file.tensor<T>(entry.name, integers));
  return result;
}

}  // namespace tessera::io
