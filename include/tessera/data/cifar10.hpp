// CIFAR-10: the official binary batches (Cifar10Binary), open_cifar10 which finds either that layout or an image
// folder under a root, the dataset's channel mean/std, and the standard train/eval transforms.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <istream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/data/image.hpp"
#include "tessera/data/image_folder.hpp"
#include "tessera/data/transforms.hpp"

namespace tessera::data {

inline constexpr int64_t kCifar10ImageSide = 32;
inline constexpr int64_t kCifar10Channels = 3;
inline constexpr int64_t kCifar10NumClasses = 10;
// One record of a binary batch: 1 label byte, then 1024 red, 1024 green, 1024 blue bytes, each plane row-major 32x32.
inline constexpr int64_t kCifar10RecordBytes = 1 + kCifar10Channels * kCifar10ImageSide * kCifar10ImageSide;

inline std::vector<std::string> cifar10_class_names() {
  return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
}

// Per-channel mean and standard deviation of the training images (in [0, 1]), the usual Normalize constants.
inline std::vector<float> cifar10_mean() { return {0.4914f, 0.4822f, 0.4465f}; }
inline std::vector<float> cifar10_std() { return {0.2470f, 0.2435f, 0.2616f}; }

// The training augmentation of the default recipe: 4-pixel zero padding + random 32x32 crop, horizontal flip with
// p = 0.5, ToTensor, Normalize(CIFAR-10 mean/std).
inline Compose cifar10_train_transform(int64_t padding = 4) {
  return Compose{RandomCrop(kCifar10ImageSide, padding), RandomHorizontalFlip(0.5), ToTensor(),
                 Normalize(cifar10_mean(), cifar10_std())};
}
// Evaluation: ToTensor, Normalize(CIFAR-10 mean/std).
inline Compose cifar10_eval_transform() { return Compose{ToTensor(), Normalize(cifar10_mean(), cifar10_std())}; }

// The batch files of a split in the binary layout: data_batch_1..5.bin (train) or test_batch.bin (test).
inline std::vector<std::filesystem::path> cifar10_batch_files(const std::filesystem::path& folder, Split split) {
  if (split == Split::test) return {folder / "test_batch.bin"};
  std::vector<std::filesystem::path> files;
  for (int i = 1; i <= 5; ++i)
    files.push_back(folder / (std::string("data_batch_") + std::to_string(i) + ".bin"));
  return files;
}

namespace detail {

// Appends the records of one binary batch file (`bytes`, its whole content; `name` for messages) to `labels` and to
// `pixels` (HWC, 32x32x3 per image). Throws when the size is not a positive multiple of 3073 bytes or a label is
// not below 10.
inline void append_cifar10_batch(const uint8_t* bytes, size_t byte_count, const std::string& name,
                                 std::vector<int64_t>& labels, std::vector<uint8_t>& pixels) {
  constexpr int64_t plane = kCifar10ImageSide * kCifar10ImageSide;
  const auto size = static_cast<int64_t>(byte_count);
  TESSERA_CHECK(size > 0 && size % kCifar10RecordBytes == 0, "Cifar10Binary: '", name, "' has ", size,
                " bytes, not a positive multiple of the ", kCifar10RecordBytes,
                "-byte record (1 label + 3072 pixels): the file is truncated or not a CIFAR-10 batch");
  const int64_t records = size / kCifar10RecordBytes;
  const int64_t first = static_cast<int64_t>(labels.size());
  labels.resize(static_cast<size_t>(first + records));
  pixels.resize(static_cast<size_t>((first + records) * kCifar10Channels * plane));
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* record = bytes + r * kCifar10RecordBytes;
    TESSERA_CHECK(record[0] < kCifar10NumClasses, "Cifar10Binary: record ", r, " of '", name, "' has label ",
                  static_cast<int>(record[0]), ", expected 0 to ", kCifar10NumClasses - 1,
                  ": the file is corrupt or not a CIFAR-10 batch");
    labels[static_cast<size_t>(first + r)] = record[0];
    const uint8_t* planes = record + 1;
    uint8_t* out = pixels.data() + (first + r) * kCifar10Channels * plane;
    for (int64_t p = 0; p < plane; ++p)
      for (int64_t c = 0; c < kCifar10Channels; ++c) out[p * kCifar10Channels + c] = planes[c * plane + p];
  }
}

// The class names of batches.meta.txt: one per non-blank line, surrounding blanks removed; there must be ten.
inline std::vector<std::string> parse_cifar10_class_names(std::istream& text, const std::string& name) {
  std::vector<std::string> names;
  std::string line;
  while (std::getline(text, line)) {
    const auto begin = line.find_first_not_of(" \t\r\n");
    if (begin == std::string::npos) continue;
    const auto end = line.find_last_not_of(" \t\r\n");
    names.push_back(line.substr(begin, end - begin + 1));
  }
  TESSERA_CHECK(static_cast<int64_t>(names.size()) == kCifar10NumClasses, "Cifar10Binary: '", name, "' names ",
                names.size(), " classes, expected ", kCifar10NumClasses, " (one per line)");
  return names;
}

}  // namespace detail

// The official binary CIFAR-10 (cifar-10-binary.tar.gz), read whole into memory and stored HWC.
class Cifar10Binary final : public Dataset {
 public:
  // `folder` holds the .bin files (usually <root>/cifar-10-batches-bin). Class names come from batches.meta.txt
  // when it is there, else the standard ten. Throws naming the file when a batch is missing, its size is not a
  // multiple of 3073 bytes, or a label is not below 10.
  Cifar10Binary(const std::filesystem::path& folder, Split split) : folder_(folder), split_(split) {
    class_names_ = read_class_names(folder_ / "batches.meta.txt");
    for (const auto& path : cifar10_batch_files(folder_, split_)) {
      std::error_code ec;
      TESSERA_CHECK(std::filesystem::exists(path, ec), "Cifar10Binary: '", path.string(), "' does not exist (the ",
                    split_name(split_), " split of the binary layout is ",
                    split_ == Split::train ? "data_batch_1.bin ... data_batch_5.bin" : "test_batch.bin",
                    "; scripts/download_cifar10.sh fetches them)");
      const std::vector<uint8_t> bytes = read_file_bytes(path, "Cifar10Binary");
      files_.push_back({path, static_cast<int64_t>(labels_.size())});
      detail::append_cifar10_batch(bytes.data(), bytes.size(), path.string(), labels_, pixels_);
    }
  }

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  const std::vector<std::string>& class_names() const override { return class_names_; }

  Sample get(int64_t index) const override {
    check_index(index, "Cifar10Binary::get");
    constexpr int64_t bytes = kCifar10ImageSide * kCifar10ImageSide * kCifar10Channels;
    Sample sample;
    sample.image.height = kCifar10ImageSide;
    sample.image.width = kCifar10ImageSide;
    sample.image.channels = kCifar10Channels;
    const uint8_t* begin = pixels_.data() + index * bytes;
    sample.image.pixels.assign(begin, begin + bytes);
    sample.label = labels_[static_cast<size_t>(index)];
    return sample;
  }
  int64_t label(int64_t index) const override {
    check_index(index, "Cifar10Binary::label");
    return labels_[static_cast<size_t>(index)];
  }
  std::string sample_name(int64_t index) const override {
    check_index(index, "Cifar10Binary::sample_name");
    const auto it = std::upper_bound(files_.begin(), files_.end(), index,
                                     [](int64_t i, const auto& file) { return i < file.second; }) - 1;
    return it->first.string() + " record " + std::to_string(index - it->second);
  }
  std::string description() const override {
    return std::string("CIFAR-10 binary, ") + split_name(split_) + " split, " + std::to_string(size()) +
           " images in '" + folder_.string() + "'";
  }

 private:
  static std::vector<std::string> read_class_names(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return cifar10_class_names();
    std::ifstream file(path);
    TESSERA_CHECK(file.good(), "Cifar10Binary: cannot open '", path.string(), "' for reading");
    return detail::parse_cifar10_class_names(file, path.string());
  }

  std::filesystem::path folder_;
  Split split_;
  std::vector<std::string> class_names_;
  std::vector<uint8_t> pixels_;  // N x 32 x 32 x 3, HWC per image
  std::vector<int64_t> labels_;
  std::vector<std::pair<std::filesystem::path, int64_t>> files_;  // each batch file and its first sample index
};

enum class Cifar10Layout { binary, image_folder };

// Where find_cifar10 found the data: the folder holding the .bin files, or the one holding train/ and test/.
struct Cifar10Location {
  Cifar10Layout layout;
  std::filesystem::path folder;
};

// Looks, in order, for <root>/cifar-10-batches-bin/{data_batch_1,test_batch}.bin, <root>/{data_batch_1,test_batch}.bin,
// <root>/{train,test}/ and <root>/cifar10/{train,test}/ (the layout of the JPEG archive); throws saying what was
// expected and how to get the data when none is there.
inline Cifar10Location find_cifar10(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto has_batches = [&](const fs::path& folder) {
    return fs::is_regular_file(folder / "data_batch_1.bin", ec) || fs::is_regular_file(folder / "test_batch.bin", ec);
  };
  const auto has_splits = [&](const fs::path& folder) {
    return fs::is_directory(folder / "train", ec) || fs::is_directory(folder / "test", ec);
  };
  TESSERA_CHECK(fs::is_directory(root, ec) || !fs::exists(root, ec), "open_cifar10: '", root.string(),
                "' is a file, not a folder: give the folder that holds CIFAR-10 (cifar-10-batches-bin/ of the binary "
                "layout, or train/ and test/ of image folders)");
  if (has_batches(root / "cifar-10-batches-bin")) return {Cifar10Layout::binary, root / "cifar-10-batches-bin"};
  if (has_batches(root)) return {Cifar10Layout::binary, root};
  if (has_splits(root)) return {Cifar10Layout::image_folder, root};
  if (has_splits(root / "cifar10")) return {Cifar10Layout::image_folder, root / "cifar10"};
  ::tessera::detail::fail(
      "open_cifar10: no CIFAR-10 data in '", root.string(), "'",
      fs::is_directory(root, ec) ? "" : " (the folder does not exist)",
      ". Expected either the official binary layout, <root>/cifar-10-batches-bin/data_batch_1.bin ... "
      "data_batch_5.bin and test_batch.bin (download it with: scripts/download_cifar10.sh <root>), or the image-folder "
      "layout, <root>/train/<class>/*.png|jpg and <root>/test/<class>/*.png|jpg with 32x32 images.");
}

// The `split` of CIFAR-10 under `root`, in whichever layout find_cifar10 finds. Image folders are decoded eagerly
// on decode_threads threads (0: all cores), their images must be 32x32, and train/ and test/ must name the same
// classes.
inline std::shared_ptr<Dataset> open_cifar10(const std::filesystem::path& root, Split split, int decode_threads = 0) {
  const Cifar10Location location = find_cifar10(root);
  if (location.layout == Cifar10Layout::binary) return std::make_shared<Cifar10Binary>(location.folder, split);

  ImageFolderOptions options;
  options.height = kCifar10ImageSide;
  options.width = kCifar10ImageSide;
  options.decode_threads = decode_threads;
  auto dataset = std::make_shared<ImageFolder>(location.folder / split_name(split), options);
  const std::filesystem::path other = location.folder / split_name(split == Split::train ? Split::test : Split::train);
  std::error_code ec;
  if (std::filesystem::is_directory(other, ec)) {
    std::vector<std::string> other_classes;
    for (const auto& entry : detail::list_folder(other, "open_cifar10")) {
      const std::string name = entry.path().filename().string();
      if (!name.empty() && name[0] != '.' && entry.is_directory(ec)) other_classes.push_back(name);
    }
    std::sort(other_classes.begin(), other_classes.end());
    if (other_classes != dataset->class_names()) {
      std::ostringstream message;
      message << "open_cifar10: the class folders of '" << (location.folder / split_name(split)).string()
              << "' and '" << other.string() << "' differ, so labels would not agree:";
      const std::vector<std::string>* lists[] = {&dataset->class_names(), &other_classes};
      for (const auto* list : lists) {
        message << " [";
        for (size_t i = 0; i < list->size(); ++i) message << (i ? ", " : "") << (*list)[i];
        message << "]";
      }
      throw Error(message.str());
    }
  }
  return dataset;
}

inline std::shared_ptr<Dataset> open_cifar10(const std::filesystem::path& root, std::string_view split,
                                             int decode_threads = 0) {
  return open_cifar10(root, parse_split(split), decode_threads);
}

}  // namespace tessera::data
