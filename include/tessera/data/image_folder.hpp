// ImageFolder: a dataset read from root/<class>/*.{png,jpg,jpeg,bmp} (class names sorted, as torchvision's
// ImageFolder), decoded by decode_image either all at once on several threads (eager) or on each get (lazy).
#pragma once

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/data/image.hpp"

namespace tessera::data {

struct ImageFolderOptions {
  // Channels of every decoded image (decode_image converts): 3 gives RGB.
  int channels = 3;
  // Decode every image in the constructor (fastest for small images such as CIFAR's 32x32; 50,000 of them take
  // 150 MB). When false, get() reads and decodes the file, so DataLoader workers decode in the background.
  bool eager = true;
  // Every image must have one size: `height` x `width` when those are set, else the size of the first image.
  // Turn off when the transform resizes (RandomResizedCrop, Resize), so images of any size are accepted.
  bool same_size = true;
  int64_t height = 0;
  int64_t width = 0;
  // Threads for eager decoding; 0 takes std::thread::hardware_concurrency().
  int decode_threads = 0;
  // The most pixels an image may declare (DecodeOptions::max_pixels); a larger one is an error before decoding.
  int64_t max_image_pixels = kDefaultMaxImagePixels;
};

namespace detail {

inline bool is_image_file(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return extension == ".png" || extension == ".jpg" || extension == ".jpeg" || extension == ".bmp";
}

// Runs fn(i) for i in [0, n) on `threads` threads. If some calls throw, rethrows the exception of the lowest
// failing index, whatever the thread count and timing; indices above a known failure are skipped.
template <class Fn>
void parallel_for_lowest_error(int64_t n, int threads, Fn&& fn) {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> lowest_failure{std::numeric_limits<int64_t>::max()};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  auto work = [&] {
    while (true) {
      const int64_t i = next.fetch_add(1);
      if (i >= n || i > lowest_failure.load()) return;
      try {
        fn(i);
      } catch (...) {
        errors[static_cast<size_t>(i)] = std::current_exception();
        int64_t seen = lowest_failure.load();
        while (i < seen && !lowest_failure.compare_exchange_weak(seen, i)) {
        }
      }
    }
  };
  const int count = static_cast<int>(std::min<int64_t>(std::max(threads, 1), std::max<int64_t>(n, 1)));
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(count - 1));
  try {
    for (int t = 1; t < count; ++t) pool.emplace_back(work);
  } catch (...) {
    next.store(n);
    for (auto& thread : pool) thread.join();
    throw;
  }
  work();
  for (auto& thread : pool) thread.join();
  if (lowest_failure.load() < n) std::rethrow_exception(errors[static_cast<size_t>(lowest_failure.load())]);
}

// The entries of a folder; a filesystem error becomes a tessera::Error naming the folder.
inline std::vector<std::filesystem::directory_entry> list_folder(const std::filesystem::path& folder, const char* op) {
  std::vector<std::filesystem::directory_entry> entries;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec))
    entries.push_back(*it);
  TESSERA_CHECK(!ec, op, ": cannot list folder '", folder.string(), "': ", ec.message());
  return entries;
}

inline int default_thread_count(int requested) {
  if (requested > 0) return requested;
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware > 0 ? static_cast<int>(hardware) : 1;
}

}  // namespace detail

class ImageFolder final : public Dataset {
 public:
  // `root` holds one folder per class; files other than .png/.jpg/.jpeg/.bmp (any case) and folders whose
  // name starts with '.' are ignored. Throws naming the folder or file when root or a class folder is missing
  // or empty, an image cannot be decoded, or an image has the wrong size.
  explicit ImageFolder(const std::filesystem::path& root, ImageFolderOptions options = {})
      : root_(root), options_(options) {
    namespace fs = std::filesystem;
    TESSERA_CHECK(options_.channels >= 1 && options_.channels <= 4, "ImageFolder: channels must be 1 to 4, got ",
                  options_.channels);
    TESSERA_CHECK(options_.height >= 0 && options_.width >= 0 && (options_.height == 0) == (options_.width == 0),
                  "ImageFolder: height and width must both be set or both be 0, got ", options_.height, "x",
                  options_.width);
    std::error_code ec;
    TESSERA_CHECK(fs::is_directory(root_, ec), "ImageFolder: folder '", root_.string(), "' ",
                  fs::exists(root_, ec) ? "is a file, not a folder" : "does not exist",
                  " (expected <root>/<class name>/<image files>)");

    std::vector<fs::path> class_dirs;
    for (const auto& entry : detail::list_folder(root_, "ImageFolder")) {
      const std::string name = entry.path().filename().string();
      if (!name.empty() && name[0] != '.' && entry.is_directory(ec)) class_dirs.push_back(entry.path());
    }
    std::sort(class_dirs.begin(), class_dirs.end());
    TESSERA_CHECK(!class_dirs.empty(), "ImageFolder: '", root_.string(),
                  "' holds no class folders (expected <root>/<class name>/<image files>)");

    for (const auto& dir : class_dirs) {
      std::vector<fs::path> files;
      for (const auto& entry : detail::list_folder(dir, "ImageFolder"))
        if (entry.is_regular_file(ec) && detail::is_image_file(entry.path())) files.push_back(entry.path());
      TESSERA_CHECK(!files.empty(), "ImageFolder: class folder '", dir.string(),
                    "' holds no .png, .jpg, .jpeg or .bmp files");
      std::sort(files.begin(), files.end());
      const int64_t label = static_cast<int64_t>(class_names_.size());
      class_names_.push_back(dir.filename().string());
      for (auto& file : files) {
        files_.push_back(std::move(file));
        labels_.push_back(label);
      }
    }

    if (options_.height > 0) {
      expected_height_ = options_.height;
      expected_width_ = options_.width;
    }
    if (options_.eager) {
      images_.resize(files_.size());
      detail::parallel_for_lowest_error(size(), detail::default_thread_count(options_.decode_threads),
                                        [&](int64_t i) { images_[static_cast<size_t>(i)] = decode(i); });
      if (options_.same_size && expected_height_ == 0) {
        expected_height_ = images_.front().height;
        expected_width_ = images_.front().width;
      }
      for (int64_t i = 0; i < size(); ++i) check_size(images_[static_cast<size_t>(i)], i);
    } else if (options_.same_size && expected_height_ == 0) {
      const Image first = decode(0);
      expected_height_ = first.height;
      expected_width_ = first.width;
    }
  }

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  const std::vector<std::string>& class_names() const override { return class_names_; }

  Sample get(int64_t index) const override {
    check_index(index, "ImageFolder::get");
    const size_t i = static_cast<size_t>(index);
    if (options_.eager) return {images_[i], labels_[i]};
    Image image = decode(index);
    check_size(image, index);
    return {std::move(image), labels_[i]};
  }
  int64_t label(int64_t index) const override {
    check_index(index, "ImageFolder::label");
    return labels_[static_cast<size_t>(index)];
  }
  std::string sample_name(int64_t index) const override {
    check_index(index, "ImageFolder::sample_name");
    return files_[static_cast<size_t>(index)].string();
  }
  std::string description() const override {
    return std::string("image folder '") + root_.string() + "', " + std::to_string(size()) + " images in " +
           std::to_string(class_names_.size()) + " classes" + (options_.eager ? " (decoded)" : " (decoded lazily)");
  }

  const std::filesystem::path& root() const { return root_; }
  const std::filesystem::path& file(int64_t index) const {
    check_index(index, "ImageFolder::file");
    return files_[static_cast<size_t>(index)];
  }

 private:
  Image decode(int64_t index) const {
    return decode_image(files_[static_cast<size_t>(index)],
                        DecodeOptions{.channels = options_.channels, .max_pixels = options_.max_image_pixels});
  }

  void check_size(const Image& image, int64_t index) const {
    if (!options_.same_size || expected_height_ == 0) return;
    if (image.height == expected_height_ && image.width == expected_width_) return;
    const std::string expected_from =
        options_.height > 0 ? std::string("the size required by ImageFolderOptions")
                            : "the size of the first image, '" + files_.front().string() + "'";
    ::tessera::detail::fail("ImageFolder: '", files_[static_cast<size_t>(index)].string(), "' is ", image.height,
                            "x", image.width, " pixels but ", expected_height_, "x", expected_width_,
                            " was expected (", expected_from,
                            "); set ImageFolderOptions::same_size = false when a transform resizes the images");
  }

  std::filesystem::path root_;
  ImageFolderOptions options_;
  std::vector<std::string> class_names_;
  std::vector<std::filesystem::path> files_;
  std::vector<int64_t> labels_;
  std::vector<Image> images_;
  int64_t expected_height_ = 0;
  int64_t expected_width_ = 0;
};

}  // namespace tessera::data
