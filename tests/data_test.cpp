// Tests of data/: CIFAR-10 binary and image-folder loading (and their errors), layout detection, transforms, and
// the DataLoader's determinism, shuffling, batching and error propagation. Test data is generated in a temp folder.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <tessera/data/cifar10.hpp>
#include <tessera/data/data_loader.hpp>
#include <tessera/data/dataset.hpp>
#include <tessera/data/image.hpp>
#include <tessera/data/image_folder.hpp>
#include <tessera/data/transforms.hpp>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace fs = std::filesystem;
using namespace tessera::data;
using tessera::Generator;

namespace {

// A fresh folder under the system temp folder, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = fs::temp_directory_path() /
            ("tessera_data_test_" + std::to_string(stamp) + "_" + std::to_string(counter.fetch_add(1)));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(file.good());
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream file(path);
  file << text;
  REQUIRE(file.good());
}

// Pixel value of channel c at plane position p (y * 32 + x) of CIFAR record `id`.
uint8_t cifar_value(int id, int c, int p) { return static_cast<uint8_t>((id * 31 + c * 85 + p * 7) & 255); }

// One record: label, then the R, G and B planes.
void append_cifar_record(std::vector<uint8_t>& bytes, int id, uint8_t label) {
  bytes.push_back(label);
  for (int c = 0; c < 3; ++c)
    for (int p = 0; p < 1024; ++p) bytes.push_back(cifar_value(id, c, p));
}

const std::vector<std::string> kMetaNames = {"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"};

// Writes the binary layout into `folder`: train batches of 3, 2, 4, 1, 3 records (ids 0..12) and a test batch of 4
// (ids 100..103); label of id i is i % 10. Returns nothing; records are recomputed by the tests.
void write_cifar_binary(const fs::path& folder, bool with_meta = true) {
  const int counts[5] = {3, 2, 4, 1, 3};
  int id = 0;
  for (int b = 0; b < 5; ++b) {
    std::vector<uint8_t> bytes;
    for (int r = 0; r < counts[b]; ++r, ++id) append_cifar_record(bytes, id, static_cast<uint8_t>(id % 10));
    write_bytes(folder / ("data_batch_" + std::to_string(b + 1) + ".bin"), bytes);
  }
  std::vector<uint8_t> test;
  for (int i = 100; i < 104; ++i) append_cifar_record(test, i, static_cast<uint8_t>(i % 10));
  write_bytes(folder / "test_batch.bin", test);
  if (with_meta) {
    std::string meta;
    for (const auto& name : kMetaNames) meta += name + "\n";
    write_text(folder / "batches.meta.txt", meta + "\n");
  }
}

// An image whose pixels are a function of (seed, y, x, c).
Image pattern_image(int64_t height, int64_t width, int64_t channels, int seed) {
  Image image(height, width, channels);
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int64_t c = 0; c < channels; ++c)
        image.at(y, x, c) = static_cast<uint8_t>((seed * 37 + y * 11 + x * 5 + c * 71) & 255);
  return image;
}

void write_png(const fs::path& path, const Image& image) {
  fs::create_directories(path.parent_path());
  REQUIRE(stbi_write_png(path.string().c_str(), static_cast<int>(image.width), static_cast<int>(image.height),
                         static_cast<int>(image.channels), image.data(),
                         static_cast<int>(image.width * image.channels)));
}
void write_bmp(const fs::path& path, const Image& image) {
  fs::create_directories(path.parent_path());
  REQUIRE(stbi_write_bmp(path.string().c_str(), static_cast<int>(image.width), static_cast<int>(image.height),
                         static_cast<int>(image.channels), image.data()));
}
void write_jpg(const fs::path& path, const Image& image) {
  fs::create_directories(path.parent_path());
  REQUIRE(stbi_write_jpg(path.string().c_str(), static_cast<int>(image.width), static_cast<int>(image.height),
                         static_cast<int>(image.channels), image.data(), 100));
}

// The message of the tessera::Error that fn throws; fails the test when it throws nothing or something else.
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const tessera::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected tessera::Error, got another exception: " << e.what());
  }
  FAIL("expected tessera::Error, nothing was thrown");
  return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

bool same_pixels(const Image& a, const Image& b) {
  return a.height == b.height && a.width == b.width && a.channels == b.channels && a.pixels == b.pixels;
}

}  // namespace

// ---- CIFAR-10 binary ---------------------------------------------------------------------------------------------

TEST_CASE("CIFAR-10 binary batches decode labels and pixels exactly") {
  TempDir dir;
  const fs::path folder = dir.path() / "cifar-10-batches-bin";
  write_cifar_binary(folder);

  Cifar10Binary train(folder, Split::train);
  REQUIRE(train.size() == 13);
  CHECK(train.class_names() == kMetaNames);
  CHECK(train.num_classes() == 10);
  for (int id = 0; id < 13; ++id) {
    const Sample sample = train.get(id);
    CHECK(sample.label == id % 10);
    CHECK(train.label(id) == id % 10);
    REQUIRE(sample.image.height == 32);
    REQUIRE(sample.image.width == 32);
    REQUIRE(sample.image.channels == 3);
    bool exact = true;
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        for (int c = 0; c < 3; ++c) exact = exact && sample.image.at(y, x, c) == cifar_value(id, c, y * 32 + x);
    CHECK(exact);
  }
  CHECK(contains(train.sample_name(4), "data_batch_2.bin record 1"));
  CHECK(contains(train.sample_name(9), "data_batch_4.bin record 0"));
  CHECK(contains(train.sample_name(12), "data_batch_5.bin record 2"));

  Cifar10Binary test(folder, Split::test);
  REQUIRE(test.size() == 4);
  CHECK(test.get(2).label == 2);
  CHECK(test.get(2).image.at(5, 7, 1) == cifar_value(102, 1, 5 * 32 + 7));
  CHECK(contains(error_of([&] { test.get(4); }), "out of range"));
}

TEST_CASE("CIFAR-10 binary without batches.meta.txt takes the standard class names") {
  TempDir dir;
  write_cifar_binary(dir.path(), false);
  Cifar10Binary test(dir.path(), Split::test);
  CHECK(test.class_names() == cifar10_class_names());
  CHECK(test.class_names()[0] == "airplane");
  CHECK(test.class_names()[9] == "truck");
}

TEST_CASE("bad CIFAR-10 binary files raise errors that name the file") {
  TempDir dir;
  const fs::path folder = dir.path() / "cifar-10-batches-bin";

  SUBCASE("truncated batch") {
    write_cifar_binary(folder);
    std::vector<uint8_t> bytes;
    append_cifar_record(bytes, 0, 1);
    append_cifar_record(bytes, 1, 2);
    bytes.pop_back();
    write_bytes(folder / "data_batch_3.bin", bytes);
    const std::string message = error_of([&] { Cifar10Binary train(folder, Split::train); });
    CHECK(contains(message, (folder / "data_batch_3.bin").string()));
    CHECK(contains(message, "6145 bytes"));
    CHECK(contains(message, "3073"));
  }
  SUBCASE("label out of range") {
    write_cifar_binary(folder);
    std::vector<uint8_t> bytes;
    append_cifar_record(bytes, 0, 1);
    append_cifar_record(bytes, 1, 10);
    write_bytes(folder / "test_batch.bin", bytes);
    const std::string message = error_of([&] { Cifar10Binary test(folder, Split::test); });
    CHECK(contains(message, (folder / "test_batch.bin").string()));
    CHECK(contains(message, "record 1"));
    CHECK(contains(message, "label 10"));
  }
  SUBCASE("missing batch") {
    write_cifar_binary(folder);
    fs::remove(folder / "data_batch_4.bin");
    const std::string message = error_of([&] { Cifar10Binary train(folder, Split::train); });
    CHECK(contains(message, (folder / "data_batch_4.bin").string()));
    CHECK(contains(message, "does not exist"));
    CHECK_NOTHROW(Cifar10Binary{folder, Split::test});
  }
  SUBCASE("empty batch") {
    write_cifar_binary(folder);
    write_bytes(folder / "test_batch.bin", {});
    CHECK(contains(error_of([&] { Cifar10Binary test(folder, Split::test); }), (folder / "test_batch.bin").string()));
  }
  SUBCASE("class list with the wrong count") {
    write_cifar_binary(folder);
    write_text(folder / "batches.meta.txt", "a\nb\nc\n");
    const std::string message = error_of([&] { Cifar10Binary test(folder, Split::test); });
    CHECK(contains(message, (folder / "batches.meta.txt").string()));
    CHECK(contains(message, "3 classes"));
  }
}

// ---- layout detection --------------------------------------------------------------------------------------------

TEST_CASE("open_cifar10 detects the binary and image-folder layouts") {
  TempDir dir;
  SUBCASE("binary inside cifar-10-batches-bin/") {
    write_cifar_binary(dir.path() / "cifar-10-batches-bin");
    const auto location = find_cifar10(dir.path());
    CHECK(location.layout == Cifar10Layout::binary);
    CHECK(location.folder == dir.path() / "cifar-10-batches-bin");
    CHECK(open_cifar10(dir.path(), "train")->size() == 13);
    CHECK(open_cifar10(dir.path(), Split::test)->size() == 4);
  }
  SUBCASE("binary directly in the root") {
    write_cifar_binary(dir.path());
    CHECK(find_cifar10(dir.path()).layout == Cifar10Layout::binary);
    CHECK(open_cifar10(dir.path(), Split::test)->size() == 4);
  }
  SUBCASE("image folders in the root, or in root/cifar10 as the JPEG archive has them") {
    const fs::path base = dir.path() / "cifar10";
    for (const char* split : {"train", "test"})
      for (const char* name : {"cat", "dog"})
        for (int i = 0; i < 2; ++i)
          write_png(base / split / name / (std::to_string(i) + ".png"), pattern_image(32, 32, 3, i));
    CHECK(find_cifar10(dir.path()).layout == Cifar10Layout::image_folder);
    CHECK(find_cifar10(dir.path()).folder == base);
    CHECK(find_cifar10(base).folder == base);
    const auto train = open_cifar10(dir.path(), "train");
    CHECK(train->size() == 4);
    CHECK(train->class_names() == std::vector<std::string>{"cat", "dog"});
    CHECK(open_cifar10(base, "test")->size() == 4);
  }
  SUBCASE("image folders whose train and test classes differ") {
    write_png(dir.path() / "train" / "cat" / "0.png", pattern_image(32, 32, 3, 0));
    write_png(dir.path() / "test" / "dog" / "0.png", pattern_image(32, 32, 3, 0));
    const std::string message = error_of([&] { open_cifar10(dir.path(), "train"); });
    CHECK(contains(message, "differ"));
    CHECK(contains(message, (dir.path() / "test").string()));
  }
  SUBCASE("image folder with images that are not 32x32") {
    write_png(dir.path() / "train" / "cat" / "0.png", pattern_image(32, 32, 3, 0));
    write_png(dir.path() / "train" / "cat" / "1.png", pattern_image(30, 32, 3, 0));
    const std::string message = error_of([&] { open_cifar10(dir.path(), "train"); });
    CHECK(contains(message, (dir.path() / "train" / "cat" / "1.png").string()));
    CHECK(contains(message, "30x32"));
  }
  SUBCASE("nothing there") {
    const std::string message = error_of([&] { open_cifar10(dir.path(), "train"); });
    CHECK(contains(message, dir.path().string()));
    CHECK(contains(message, "cifar-10-batches-bin"));
    CHECK(contains(message, "scripts/download_cifar10.sh"));
    CHECK(contains(message, "<root>/train/<class>/"));
    CHECK(contains(error_of([&] { open_cifar10(dir.path() / "missing", "train"); }), "does not exist"));
  }
  SUBCASE("bad split name") {
    write_cifar_binary(dir.path());
    CHECK(contains(error_of([&] { open_cifar10(dir.path(), "validation"); }), "\"validation\""));
  }
}

// ---- image folders -----------------------------------------------------------------------------------------------

TEST_CASE("ImageFolder decodes PNG and BMP exactly, with sorted classes and files") {
  TempDir dir;
  const fs::path root = dir.path() / "train";
  // Made out of order on purpose; the dataset sorts class folders and files by name.
  write_png(root / "dog" / "b.png", pattern_image(8, 8, 3, 5));
  write_bmp(root / "dog" / "a.bmp", pattern_image(8, 8, 3, 4));
  write_png(root / "cat" / "x.PNG", pattern_image(8, 8, 3, 3));
  write_png(root / "bird" / "2.png", pattern_image(8, 8, 3, 2));
  write_bmp(root / "bird" / "1.bmp", pattern_image(8, 8, 3, 1));
  write_text(root / "bird" / "notes.txt", "not an image");
  write_png(root / ".cache" / "0.png", pattern_image(8, 8, 3, 9));
  const int expected_seed[] = {1, 2, 3, 4, 5};
  const int64_t expected_label[] = {0, 0, 1, 2, 2};

  for (bool eager : {true, false}) {
    for (int threads : {1, 3}) {
      CAPTURE(eager);
      CAPTURE(threads);
      ImageFolderOptions options;
      options.eager = eager;
      options.decode_threads = threads;
      ImageFolder folder(root, options);
      CHECK(folder.class_names() == std::vector<std::string>{"bird", "cat", "dog"});
      REQUIRE(folder.size() == 5);
      for (int64_t i = 0; i < 5; ++i) {
        const Sample sample = folder.get(i);
        CHECK(sample.label == expected_label[i]);
        CHECK(folder.label(i) == expected_label[i]);
        CHECK(same_pixels(sample.image, pattern_image(8, 8, 3, expected_seed[i])));
      }
      CHECK(folder.sample_name(0) == (root / "bird" / "1.bmp").string());
      CHECK(folder.file(4) == root / "dog" / "b.png");
    }
  }

  ImageFolderOptions grey;
  grey.channels = 1;
  ImageFolder folder(root, grey);
  CHECK(folder.get(0).image.channels == 1);
}

TEST_CASE("ImageFolder decodes JPEG close to the original") {
  TempDir dir;
  Image smooth(16, 16, 3);
  for (int64_t y = 0; y < 16; ++y)
    for (int64_t x = 0; x < 16; ++x)
      for (int64_t c = 0; c < 3; ++c) smooth.at(y, x, c) = static_cast<uint8_t>(60 + 4 * x + 3 * y + 20 * c);
  write_jpg(dir.path() / "a" / "smooth.jpg", smooth);
  write_jpg(dir.path() / "b" / "flat.jpeg", Image(16, 16, 3, 77));
  ImageFolder folder(dir.path());
  REQUIRE(folder.size() == 2);
  const Image decoded = folder.get(0).image;
  REQUIRE(decoded.size_string() == "16x16x3");
  int worst = 0;
  for (size_t i = 0; i < decoded.pixels.size(); ++i)
    worst = std::max(worst, std::abs(int(decoded.pixels[i]) - int(smooth.pixels[i])));
  CHECK(worst <= 6);
  for (uint8_t v : folder.get(1).image.pixels) CHECK(std::abs(int(v) - 77) <= 1);
}

TEST_CASE("ImageFolder errors name the folder or file") {
  TempDir dir;
  const fs::path root = dir.path() / "train";

  SUBCASE("missing folder") {
    const std::string message = error_of([&] { ImageFolder folder(root); });
    CHECK(contains(message, root.string()));
    CHECK(contains(message, "does not exist"));
  }
  SUBCASE("no class folders") {
    fs::create_directories(root);
    write_text(root / "readme.txt", "hello");
    const std::string message = error_of([&] { ImageFolder folder(root); });
    CHECK(contains(message, root.string()));
    CHECK(contains(message, "no class folders"));
  }
  SUBCASE("empty class folder") {
    write_png(root / "cat" / "0.png", pattern_image(4, 4, 3, 0));
    write_text(root / "dog" / "readme.txt", "no images here");
    const std::string message = error_of([&] { ImageFolder folder(root); });
    CHECK(contains(message, (root / "dog").string()));
    CHECK(contains(message, "holds no"));
  }
  SUBCASE("corrupt image, eager and lazy, and the first of several bad files is reported") {
    write_png(root / "cat" / "0.png", pattern_image(4, 4, 3, 0));
    write_bytes(root / "cat" / "1.png", {0x89, 'P', 'N', 'G', 1, 2, 3, 4, 5, 6, 7});
    write_png(root / "cat" / "2.png", pattern_image(4, 4, 3, 0));
    write_bytes(root / "cat" / "3.jpg", {});
    for (int threads : {1, 4}) {
      ImageFolderOptions options;
      options.decode_threads = threads;
      const std::string message = error_of([&] { ImageFolder folder(root, options); });
      CHECK(contains(message, (root / "cat" / "1.png").string()));
      CHECK(contains(message, "cannot decode"));
    }
    ImageFolderOptions lazy;
    lazy.eager = false;
    ImageFolder folder(root, lazy);
    CHECK(folder.size() == 4);
    CHECK_NOTHROW(folder.get(2));
    CHECK(contains(error_of([&] { folder.get(1); }), (root / "cat" / "1.png").string()));
    const std::string empty = error_of([&] { folder.get(3); });
    CHECK(contains(empty, (root / "cat" / "3.jpg").string()));
    CHECK(contains(empty, "empty"));
  }
  SUBCASE("images of different sizes") {
    write_png(root / "cat" / "0.png", pattern_image(8, 8, 3, 0));
    write_png(root / "cat" / "1.png", pattern_image(8, 8, 3, 1));
    write_png(root / "dog" / "0.png", pattern_image(6, 8, 3, 2));
    const std::string message = error_of([&] { ImageFolder folder(root); });
    CHECK(contains(message, (root / "dog" / "0.png").string()));
    CHECK(contains(message, "6x8"));
    CHECK(contains(message, (root / "cat" / "0.png").string()));

    ImageFolderOptions lazy;
    lazy.eager = false;
    ImageFolder lazy_folder(root, lazy);
    CHECK_NOTHROW(lazy_folder.get(1));
    CHECK(contains(error_of([&] { lazy_folder.get(2); }), (root / "dog" / "0.png").string()));

    ImageFolderOptions required;
    required.height = 6;
    required.width = 8;
    CHECK(contains(error_of([&] { ImageFolder folder(root, required); }), (root / "cat" / "0.png").string()));

    ImageFolderOptions any_size;
    any_size.same_size = false;
    ImageFolder varying(root, any_size);
    CHECK(varying.get(2).image.height == 6);
    CHECK(varying.get(0).image.height == 8);
  }
}

// ---- transforms --------------------------------------------------------------------------------------------------

TEST_CASE("crop fills the part outside the image with zeros") {
  const Image image = pattern_image(3, 4, 2, 7);
  const Image out = crop(image, -1, 2, 3, 4);
  REQUIRE(out.size_string() == "3x4x2");
  for (int64_t y = 0; y < 3; ++y)
    for (int64_t x = 0; x < 4; ++x)
      for (int64_t c = 0; c < 2; ++c) {
        const int64_t sy = y - 1, sx = x + 2;
        const bool inside = sy >= 0 && sy < 3 && sx < 4;
        CHECK(out.at(y, x, c) == (inside ? image.at(sy, sx, c) : 0));
      }
  for (uint8_t v : crop(image, 5, 0, 2, 2).pixels) CHECK(v == 0);
}

TEST_CASE("RandomCrop with padding takes every offset and puts zeros outside the image") {
  Image image(4, 4, 1);
  for (int64_t i = 0; i < 16; ++i) image.pixels[static_cast<size_t>(i)] = static_cast<uint8_t>(i + 1);
  const RandomCrop random_crop(4, 2);
  std::set<std::pair<int64_t, int64_t>> seen;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    Generator gen(seed);
    const Image out = random_crop(image, gen);
    REQUIRE(out.size_string() == "4x4x1");
    int matches = 0;
    for (int64_t dy = -2; dy <= 2; ++dy)
      for (int64_t dx = -2; dx <= 2; ++dx) {
        bool same = true;
        for (int64_t y = 0; y < 4; ++y)
          for (int64_t x = 0; x < 4; ++x) {
            const int64_t sy = y + dy, sx = x + dx;
            const uint8_t want = (sy >= 0 && sy < 4 && sx >= 0 && sx < 4) ? image.at(sy, sx, 0) : 0;
            same = same && out.at(y, x, 0) == want;
          }
        if (same) {
          ++matches;
          seen.insert({dy, dx});
        }
      }
    CHECK(matches == 1);
  }
  CHECK(seen.size() == 25);

  Generator gen(1);
  const Image big = pattern_image(6, 7, 3, 1);
  const Image out = RandomCrop(Size2{4, 5})(big, gen);
  CHECK(out.size_string() == "4x5x3");
  CHECK(contains(error_of([&] { RandomCrop(8, 0)(big, gen); }), "smaller than the crop 8x8"));
  CHECK(contains(error_of([] { RandomCrop(4, -1); }), "padding"));
}

TEST_CASE("RandomHorizontalFlip mirrors with probability p") {
  const Image image = pattern_image(3, 5, 3, 2);
  Generator gen(3);
  const Image flipped = RandomHorizontalFlip(1.0)(image, gen);
  for (int64_t y = 0; y < 3; ++y)
    for (int64_t x = 0; x < 5; ++x)
      for (int64_t c = 0; c < 3; ++c) CHECK(flipped.at(y, x, c) == image.at(y, 4 - x, c));
  CHECK(same_pixels(horizontal_flip(flipped), image));
  CHECK(same_pixels(RandomHorizontalFlip(0.0)(image, gen), image));
  int flips = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Generator g(seed);
    flips += same_pixels(RandomHorizontalFlip(0.5)(image, g), flipped) ? 1 : 0;
  }
  CHECK(flips > 60);
  CHECK(flips < 140);
  CHECK(contains(error_of([] { RandomHorizontalFlip(1.5); }), "[0, 1]"));
}

TEST_CASE("ToTensor makes CHW floats in [0, 1] and Normalize subtracts the mean and divides by std") {
  const Image image = pattern_image(2, 3, 3, 4);
  FloatImage tensor = ToTensor()(image);
  REQUIRE(tensor.size_string() == "(3, 2, 3)");
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 2; ++y)
      for (int64_t x = 0; x < 3; ++x) CHECK(tensor.at(c, y, x) == static_cast<float>(image.at(y, x, c)) / 255.0f);
  const FloatImage before = tensor;
  Normalize({0.5f, 0.25f, -1.0f}, {0.5f, 2.0f, 4.0f})(tensor);
  const float mean[] = {0.5f, 0.25f, -1.0f}, std_dev[] = {0.5f, 2.0f, 4.0f};
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 2; ++y)
      for (int64_t x = 0; x < 3; ++x)
        CHECK(tensor.at(c, y, x) == doctest::Approx((before.at(c, y, x) - mean[c]) / std_dev[c]).epsilon(1e-6));
  FloatImage grey(1, 2, 2, 0.5f);
  CHECK(contains(error_of([&] { Normalize({0.f, 0.f, 0.f}, {1.f, 1.f, 1.f})(grey); }), "1 channels"));
  CHECK(contains(error_of([] { Normalize({0.f}, {0.f}); }), "positive"));
  CHECK(contains(error_of([] { Normalize({0.f, 1.f}, {1.f}); }), "one per channel"));
}

TEST_CASE("resize_bilinear keeps constants constant and interpolates gradients bilinearly") {
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {8, 8}, {31, 65}, {97, 2}}) {
    const Image out = resize_bilinear(Image(5, 9, 3, 173), h, w);
    REQUIRE(out.height == h);
    REQUIRE(out.width == w);
    for (uint8_t v : out.pixels) CHECK(v == 173);
  }

  Image row(1, 4, 1);
  row.pixels = {0, 40, 80, 120};
  CHECK(resize_bilinear(row, 1, 8).pixels == std::vector<uint8_t>{0, 10, 30, 50, 70, 90, 110, 120});
  Image ramp(1, 8, 1);
  for (int x = 0; x < 8; ++x) ramp.pixels[static_cast<size_t>(x)] = static_cast<uint8_t>(10 * x);
  CHECK(resize_bilinear(ramp, 1, 4).pixels == std::vector<uint8_t>{5, 25, 45, 65});

  // 2x2 -> 4x4: source coordinates 0, 0.25, 0.75, 1 (the last clamped); .5 rounds to even.
  Image square(2, 2, 1);
  square.pixels = {0, 100, 200, 50};
  CHECK(resize_bilinear(square, 4, 4).pixels ==
        std::vector<uint8_t>{0, 25, 75, 100, 50, 59, 78, 88, 150, 128, 84, 62, 200, 162, 88, 50});

  CHECK(same_pixels(resize_bilinear(pattern_image(5, 6, 3, 1), 5, 6), pattern_image(5, 6, 3, 1)));
}

TEST_CASE("Resize and CenterCrop follow torchvision's sizes and offsets") {
  CHECK(Resize(5)(Image(10, 20, 3)).size_string() == "5x10x3");
  CHECK(Resize(5)(Image(20, 10, 3)).size_string() == "10x5x3");
  CHECK(Resize(4)(Image(7, 9, 1)).size_string() == "4x5x1");
  CHECK(Resize(3, 11)(Image(7, 9, 1)).size_string() == "3x11x1");

  const Image image = pattern_image(6, 6, 1, 3);
  const Image odd = CenterCrop(3)(pattern_image(5, 5, 1, 3));
  CHECK(same_pixels(odd, crop(pattern_image(5, 5, 1, 3), 1, 1, 3, 3)));
  CHECK(same_pixels(CenterCrop(3)(image), crop(image, 2, 2, 3, 3)));   // (6 - 3) / 2 = 1.5 rounds to 2
  CHECK(same_pixels(CenterCrop(4)(image), crop(image, 1, 1, 4, 4)));
  CHECK(same_pixels(CenterCrop({8, 6})(image), crop(image, -1, 0, 8, 6)));  // padded 1 above, 1 below
  CHECK(same_pixels(CenterCrop(9)(image), crop(image, -1, -1, 9, 9)));      // padded 1 before, 2 after
}

TEST_CASE("RandomResizedCrop draws windows within the scale and ratio bounds and falls back to a central crop") {
  const RandomResizedCrop rrc(8);
  int distinct_areas = 0;
  std::set<int64_t> areas;
  for (uint64_t seed = 0; seed < 500; ++seed) {
    Generator gen(seed);
    const auto window = rrc.sample_window(40, 30, gen);
    REQUIRE(window.top >= 0);
    REQUIRE(window.left >= 0);
    REQUIRE(window.top + window.height <= 40);
    REQUIRE(window.left + window.width <= 30);
    const double area = static_cast<double>(window.height * window.width) / (40.0 * 30.0);
    const double aspect = static_cast<double>(window.width) / static_cast<double>(window.height);
    // w and h are rounded, so the bounds hold up to half a pixel on each side.
    const double slack_w = 0.5 / window.width, slack_h = 0.5 / window.height;
    CHECK(area >= 0.08 * (1 - slack_w) * (1 - slack_h) - 1e-9);
    CHECK(area <= 1.0 + 1e-9);
    CHECK(aspect >= 0.75 * (1 - slack_w) / (1 + slack_h) - 1e-9);
    CHECK(aspect <= (4.0 / 3.0) * (1 + slack_w) / (1 - slack_h) + 1e-9);
    areas.insert(window.height * window.width);
  }
  distinct_areas = static_cast<int>(areas.size());
  CHECK(distinct_areas > 50);

  const RandomResizedCrop impossible(8, {2.0, 3.0});
  Generator gen(0);
  auto w = impossible.sample_window(10, 40, gen);  // too wide: h = 10, w = round(10 * 4/3) = 13
  CHECK((w.top == 0 && w.left == 13 && w.height == 10 && w.width == 13));
  w = impossible.sample_window(40, 10, gen);  // too tall: w = 10, h = round(10 / 0.75) = 13
  CHECK((w.top == 13 && w.left == 0 && w.height == 13 && w.width == 10));
  w = impossible.sample_window(30, 31, gen);  // ratio inside the range: the whole image
  CHECK((w.top == 0 && w.left == 0 && w.height == 30 && w.width == 31));

  Generator g(5);
  CHECK(rrc(pattern_image(40, 30, 3, 0), g).size_string() == "8x8x3");
  CHECK(RandomResizedCrop({5, 7})(pattern_image(9, 9, 1, 0), g).size_string() == "5x7x1");
  for (uint8_t v : rrc(Image(33, 21, 3, 99), g).pixels) CHECK(v == 99);
  CHECK(contains(error_of([] { RandomResizedCrop(8, {0.5, 0.1}); }), "scale"));
}

TEST_CASE("Compose applies uint8 steps, ToTensor and float steps in order") {
  const Compose pipeline{RandomCrop(4, 1), RandomHorizontalFlip(1.0), ToTensor(), Normalize({0.5f}, {0.5f})};
  CHECK(pipeline.describe() ==
        "Compose(RandomCrop(size=4x4, padding=1), RandomHorizontalFlip(p=1), ToTensor(), Normalize(mean=[0.5], "
        "std=[0.5]))");
  const Image image = pattern_image(4, 4, 1, 8);
  Generator a(11), b(11);
  const FloatImage out = pipeline(image, a);
  FloatImage expected = ToTensor()(horizontal_flip(RandomCrop(4, 1)(image, b)));
  Normalize({0.5f}, {0.5f})(expected);
  CHECK(out.values == expected.values);

  const Compose implied{CenterCrop(2)};  // ToTensor is added at the end
  Generator c(0);
  CHECK(implied(image, c).size_string() == "(1, 2, 2)");
  CHECK(implied.describe() == "Compose(CenterCrop(size=2x2), ToTensor())");

  Compose custom;
  custom.then({"invert", [](const Image& in, Generator&) {
                 Image out = in;
                 for (auto& v : out.pixels) v = static_cast<uint8_t>(255 - v);
                 return out;
               }})
      .then({"double", [](FloatImage& f, Generator&) {
               for (auto& v : f.values) v *= 2.0f;
             }});
  const FloatImage inverted = custom(Image(1, 1, 1, 55), c);
  CHECK(inverted.values[0] == 2.0f * (200.0f / 255.0f));

  const std::string message = error_of([] { Compose{ToTensor(), RandomHorizontalFlip()}; });
  CHECK(contains(message, "RandomHorizontalFlip"));
  CHECK(contains(message, "after the switch"));
}

// ---- DataLoader --------------------------------------------------------------------------------------------------

namespace {

std::shared_ptr<InMemoryDataset> numbered_dataset(int64_t n, int64_t side = 6) {
  std::vector<Image> images;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) {
    images.push_back(pattern_image(side, side, 3, static_cast<int>(i)));
    labels.push_back(i % 3);
  }
  return std::make_shared<InMemoryDataset>(std::move(images), std::move(labels),
                                           std::vector<std::string>{"zero", "one", "two"});
}

Compose augment() {
  return Compose{RandomCrop(6, 2), RandomHorizontalFlip(0.5), ToTensor(),
                 Normalize({0.5f, 0.4f, 0.3f}, {0.2f, 0.3f, 0.4f})};
}

struct Flat {
  std::vector<float> images;
  std::vector<int64_t> labels;
  std::vector<int64_t> indices;
  int64_t size;
  bool operator==(const Flat&) const = default;
};

std::vector<Flat> run_epoch(DataLoader& loader, int64_t epoch) {
  std::vector<Flat> batches;
  for (Batch& batch : loader.epoch(epoch)) {
    CHECK(batch.epoch == epoch);
    CHECK(batch.index == static_cast<int64_t>(batches.size()));
    batches.push_back({batch.images.to_vector(), batch.labels, batch.indices, batch.size()});
  }
  return batches;
}

// Wraps a dataset: sleeps in get, or throws for one index.
class TrickyDataset final : public Dataset {
 public:
  TrickyDataset(std::shared_ptr<const Dataset> inner, int64_t failing_index, int sleep_ms)
      : inner_(std::move(inner)), failing_index_(failing_index), sleep_ms_(sleep_ms) {}
  int64_t size() const override { return inner_->size(); }
  const std::vector<std::string>& class_names() const override { return inner_->class_names(); }
  Sample get(int64_t index) const override {
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    TESSERA_CHECK(index != failing_index_, "decode_image: cannot decode 'broken_", index, ".png'");
    return inner_->get(index);
  }
  int64_t label(int64_t index) const override { return inner_->label(index); }
  std::string sample_name(int64_t index) const override { return inner_->sample_name(index); }
  std::string description() const override { return "tricky " + inner_->description(); }

 private:
  std::shared_ptr<const Dataset> inner_;
  int64_t failing_index_;
  int sleep_ms_;
};

}  // namespace

TEST_CASE("DataLoader batches are identical for 0, 1 and 3 workers") {
  const auto dataset = numbered_dataset(37);
  std::vector<std::vector<Flat>> reference;
  for (int workers : {0, 1, 3}) {
    for (int prefetch : {0, 1, 5}) {
      CAPTURE(workers);
      CAPTURE(prefetch);
      DataLoaderOptions options;
      options.batch_size = 5;
      options.seed = 42;
      options.num_workers = workers;
      options.prefetch_batches = prefetch;
      DataLoader loader(dataset, augment(), options);
      CHECK(loader.num_batches() == 8);
      std::vector<Flat> epochs = run_epoch(loader, 0);
      const std::vector<Flat> epoch1 = run_epoch(loader, 1);
      epochs.insert(epochs.end(), epoch1.begin(), epoch1.end());
      REQUIRE(epochs.size() == 16);
      if (reference.empty()) reference.push_back(epochs);
      CHECK(epochs == reference.front());
    }
  }
  const std::vector<Flat>& batches = reference.front();
  CHECK(batches[0].size == 5);
  CHECK(batches[7].size == 2);
  CHECK(batches[0].images.size() == 5u * 3 * 6 * 6);
  CHECK(batches[0].indices != batches[8].indices);  // epochs 0 and 1 are shuffled differently
  CHECK(batches[0].images != batches[8].images);
}

TEST_CASE("DataLoader augments each sample with the generator of (seed, epoch, index)") {
  const auto dataset = numbered_dataset(11);
  DataLoaderOptions options;
  options.batch_size = 4;
  options.seed = 7;
  options.num_workers = 2;
  DataLoader loader(dataset, augment(), options);
  const Compose transform = augment();
  for (int64_t epoch : {0, 3}) {
    for (Batch& batch : loader.epoch(epoch)) {
      REQUIRE(batch.images.shape() == tessera::Shape{batch.size(), 3, 6, 6});
      for (int64_t k = 0; k < batch.size(); ++k) {
        const int64_t index = batch.indices[static_cast<size_t>(k)];
        CHECK(batch.labels[static_cast<size_t>(k)] == dataset->label(index));
        Generator gen = sample_generator(7, epoch, index);
        const FloatImage expected = transform(dataset->get(index).image, gen);
        const std::vector<float> got(batch.images.data() + k * 108, batch.images.data() + (k + 1) * 108);
        CHECK(got == expected.values);
      }
    }
  }
}

TEST_CASE("DataLoader shuffles into a permutation per epoch and honours drop_last") {
  const auto dataset = numbered_dataset(37);
  DataLoaderOptions options;
  options.batch_size = 5;
  options.seed = 3;
  options.num_workers = 1;
  DataLoader loader(dataset, Compose{}, options);
  std::vector<int64_t> previous;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> order;
    for (const Flat& batch : run_epoch(loader, epoch))
      order.insert(order.end(), batch.indices.begin(), batch.indices.end());
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(37);
    std::iota(all.begin(), all.end(), 0);
    CHECK(sorted == all);
    CHECK(order != all);
    CHECK(order != previous);
    CHECK(order == epoch_order(37, 3, epoch, true));
    previous = order;
  }
  CHECK(epoch_order(37, 4, 0, true) != epoch_order(37, 3, 0, true));

  options.shuffle = false;
  options.drop_last = true;
  DataLoader ordered(dataset, Compose{}, options);
  CHECK(ordered.num_batches() == 7);
  const std::vector<Flat> batches = run_epoch(ordered, 0);
  REQUIRE(batches.size() == 7);
  for (size_t b = 0; b < batches.size(); ++b) {
    CHECK(batches[b].size == 5);
    for (int64_t k = 0; k < 5; ++k)
      CHECK(batches[b].indices[static_cast<size_t>(k)] == static_cast<int64_t>(b) * 5 + k);
  }
  const std::vector<Flat> again = run_epoch(ordered, 9);
  CHECK(again[0].indices == batches[0].indices);

  options.batch_size = 40;
  CHECK(contains(error_of([&] { DataLoader bad(dataset, Compose{}, options); }), "leaves no batch"));
  options.batch_size = 0;
  CHECK(contains(error_of([&] { DataLoader bad(dataset, Compose{}, options); }), "batch_size"));
}

TEST_CASE("DataLoader can abandon an epoch and start another") {
  const auto dataset = numbered_dataset(23);
  DataLoaderOptions options;
  options.batch_size = 3;
  options.num_workers = 3;
  DataLoader reference_loader(dataset, augment(), options);
  const std::vector<Flat> reference = run_epoch(reference_loader, 1);

  DataLoader loader(dataset, augment(), options);
  CHECK(contains(error_of([&] { loader.next(); }), "start_epoch"));
  loader.start_epoch(0);
  REQUIRE(loader.next().has_value());
  REQUIRE(loader.next().has_value());
  CHECK(run_epoch(loader, 1) == reference);
  CHECK(!loader.next().has_value());

  loader.start_epoch(2);
  REQUIRE(loader.next().has_value());
  // The loader is destroyed here with batches queued and workers busy; the destructor must join them.
}

TEST_CASE("DataLoader passes a worker's exception to the consumer at its batch, as tessera::Error") {
  const auto dataset = std::make_shared<TrickyDataset>(numbered_dataset(20), 13, 0);
  for (int workers : {0, 2}) {
    CAPTURE(workers);
    DataLoaderOptions options;
    options.batch_size = 5;
    options.shuffle = false;
    options.num_workers = workers;
    DataLoader loader(dataset, augment(), options);
    loader.start_epoch(0);
    CHECK(loader.next().has_value());
    CHECK(loader.next().has_value());
    const std::string message = error_of([&] { loader.next(); });
    CHECK(contains(message, "broken_13.png"));
    CHECK(contains(message, "batch 2 of epoch 0"));
    const auto last = loader.next();
    REQUIRE(last.has_value());
    CHECK(last->indices.front() == 15);
    CHECK(!loader.next().has_value());
  }
}

TEST_CASE("DataLoader rejects batches of mixed image sizes, naming the sample") {
  std::vector<Image> images = {pattern_image(4, 4, 3, 0), pattern_image(5, 4, 3, 1)};
  auto dataset = std::make_shared<InMemoryDataset>(images, std::vector<int64_t>{0, 0}, std::vector<std::string>{"x"},
                                                   "mixed");
  DataLoaderOptions options;
  options.batch_size = 2;
  options.shuffle = false;
  options.num_workers = 1;
  DataLoader loader(dataset, Compose{}, options);
  loader.start_epoch(0);
  const std::string message = error_of([&] { loader.next(); });
  CHECK(contains(message, "mixed sample 1"));
  CHECK(contains(message, "(3, 5, 4)"));
  DataLoader resized(dataset, Compose{Resize(4, 4)}, options);
  resized.start_epoch(0);
  CHECK(resized.next()->images.shape() == tessera::Shape{2, 3, 4, 4});
}

TEST_CASE("DataLoader counts the time the consumer waits") {
  const auto dataset = std::make_shared<TrickyDataset>(numbered_dataset(6), -1, 5);
  DataLoaderOptions options;
  options.batch_size = 3;
  options.num_workers = 0;
  DataLoader loader(dataset, augment(), options);
  CHECK(loader.wait_seconds() == 0.0);
  run_epoch(loader, 0);
  // With no workers next() builds the batches itself, so it waited at least for the 6 sleeps of 5 ms.
  CHECK(loader.wait_seconds() >= 0.030);
  CHECK(loader.take_wait_seconds() >= 0.030);
  CHECK(loader.wait_seconds() == 0.0);
}

// ---- augmentation: image ops, TrivialAugment/RandAugment, Cutout, MixUp/CutMix, the fast recipe's transform -------
// Expected values are worked out by hand in the comments (torchvision's uint8 semantics: blends truncate).

#include <tessera/autograd/engine.hpp>
#include <tessera/data/auto_augment.hpp>
#include <tessera/data/cifar10_fast.hpp>
#include <tessera/data/cutout.hpp>
#include <tessera/data/image_ops.hpp>
#include <tessera/data/mix.hpp>
#include <tessera/io/safetensors.hpp>

namespace {

// A 1-channel image from rows of values.
Image grey_image(int64_t height, int64_t width, const std::vector<int>& values) {
  REQUIRE(static_cast<int64_t>(values.size()) == height * width);
  Image image(height, width, 1);
  for (size_t i = 0; i < values.size(); ++i) image.pixels[i] = static_cast<uint8_t>(values[i]);
  return image;
}

std::vector<int> values_of(const Image& image) { return std::vector<int>(image.pixels.begin(), image.pixels.end()); }

// A 4x4 1-channel image with value 10 * (4 * y + x) + 5 at (y, x): every pixel distinct.
Image numbered_4x4() {
  Image image(4, 4, 1);
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 4; ++x) image.at(y, x, 0) = static_cast<uint8_t>(10 * (4 * y + x) + 5);
  return image;
}

}  // namespace

TEST_CASE("posterize, solarize and brightness map values as hand-computed") {
  const Image image = grey_image(1, 4, {0, 100, 200, 255});
  CHECK(values_of(posterize(image, 3)) == std::vector<int>{0, 96, 192, 224});  // keep the top 3 bits: & 0xE0
  CHECK(values_of(posterize(image, 8)) == std::vector<int>{0, 100, 200, 255});
  CHECK(values_of(posterize(image, 0)) == std::vector<int>{0, 0, 0, 0});
  CHECK(values_of(solarize(image, 128)) == std::vector<int>{0, 100, 55, 0});   // v >= 128 -> 255 - v
  CHECK(values_of(solarize(image, 255)) == std::vector<int>{0, 100, 200, 0});
  CHECK(values_of(solarize(image, 0)) == std::vector<int>{255, 155, 55, 0});
  CHECK(values_of(solarize(image, 100)) == std::vector<int>{0, 155, 55, 0});  // the threshold itself inverts

  const Image dark = grey_image(1, 4, {0, 10, 100, 200});
  CHECK(values_of(adjust_brightness(dark, 1.5)) == std::vector<int>{0, 15, 150, 255});  // 300 clamps to 255
  CHECK(values_of(adjust_brightness(dark, 0.33)) == std::vector<int>{0, 3, 33, 66});    // 3.3 truncates to 3
  CHECK(values_of(adjust_brightness(dark, 0.0)) == std::vector<int>{0, 0, 0, 0});
  CHECK(contains(error_of([&] { posterize(image, 9); }), "bits"));
  CHECK(contains(error_of([&] { adjust_brightness(image, -0.1); }), "non-negative"));
  CHECK(contains(error_of([] { solarize(Image(2, 2, 2), 10); }), "1- or 3-channel"));
}

TEST_CASE("saturation and contrast blend with the grey level and its mean") {
  // grey(200, 100, 50) = trunc(0.2989 * 200 + 0.587 * 100 + 0.114 * 50) = trunc(124.18) = 124.
  Image rgb(1, 1, 3);
  rgb.pixels = {200, 100, 50};
  CHECK(grey_level(200, 100, 50) == 124);
  CHECK(values_of(adjust_saturation(rgb, 0.0)) == std::vector<int>{124, 124, 124});
  CHECK(values_of(adjust_saturation(rgb, 0.5)) == std::vector<int>{162, 112, 87});  // 0.5 v + 62
  CHECK(values_of(adjust_saturation(rgb, 2.0)) == std::vector<int>{255, 76, 0});    // 2 v - 124, clamped
  CHECK(values_of(adjust_saturation(rgb, 1.0)) == std::vector<int>{200, 100, 50});
  // A single pixel's mean grey is its grey, so contrast agrees with saturation here.
  CHECK(values_of(adjust_contrast(rgb, 0.5)) == std::vector<int>{162, 112, 87});
  // Grey pixels (v, v, v) have grey level trunc(0.9999 v) = v - 1 for v > 0, as in torchvision.
  CHECK(grey_level(100, 100, 100) == 99);

  const Image grey = grey_image(2, 2, {0, 50, 100, 250});  // mean 100
  CHECK(values_of(adjust_contrast(grey, 0.5)) == std::vector<int>{50, 75, 100, 175});  // 0.5 v + 50
  CHECK(values_of(adjust_contrast(grey, 2.0)) == std::vector<int>{0, 0, 100, 255});    // 2 v - 100, clamped
  CHECK(values_of(adjust_contrast(grey, 0.0)) == std::vector<int>{100, 100, 100, 100});
  CHECK(values_of(adjust_saturation(grey, 0.0)) == values_of(grey));  // no colour to remove
}

TEST_CASE("sharpness blends with the 3x3 smoothed interior and keeps the border") {
  // Centre 100, all neighbours 10: smoothed centre = round((8 * 10 + 5 * 100) / 13) = round(44.6) = 45.
  const Image spot = grey_image(3, 3, {10, 10, 10, 10, 100, 10, 10, 10, 10});
  CHECK(values_of(adjust_sharpness(spot, 0.0)) == std::vector<int>{10, 10, 10, 10, 45, 10, 10, 10, 10});
  CHECK(values_of(adjust_sharpness(spot, 2.0)) == std::vector<int>{10, 10, 10, 10, 155, 10, 10, 10, 10});
  CHECK(values_of(adjust_sharpness(spot, 1.5)) == std::vector<int>{10, 10, 10, 10, 127, 10, 10, 10, 10});  // 127.5
  // 4x4 ramp by rows (0, 13, 26, 39): a linear ramp is its own smoothed image, so factors whose products are exact
  // in float32 (0, 1.5: 1.5 v - 0.5 v) keep it.
  const Image ramp = grey_image(4, 4, {0, 0, 0, 0, 13, 13, 13, 13, 26, 26, 26, 26, 39, 39, 39, 39});
  CHECK(values_of(adjust_sharpness(ramp, 0.0)) == values_of(ramp));
  CHECK(values_of(adjust_sharpness(ramp, 1.5)) == values_of(ramp));
  // Factor 1.9 blends v with itself as float(1.9) v + float(-0.9) v, each product rounded to float32: for v = 13,
  // 24.6999998 - 11.6999998 = 12.9999990 truncates to 12 (26 -> 25; 39 and 0 stay), as torchvision does.
  CHECK(values_of(adjust_sharpness(ramp, 1.9)) ==
        std::vector<int>{0, 0, 0, 0, 12, 12, 12, 12, 25, 25, 25, 25, 39, 39, 39, 39});
  // Width 2: returned as it is.
  const Image thin = grey_image(3, 2, {0, 200, 0, 200, 0, 200});
  CHECK(values_of(adjust_sharpness(thin, 0.0)) == values_of(thin));
}

TEST_CASE("autocontrast stretches each channel and equalize flattens the histogram") {
  // Channel 0 spans [20, 71] (range 51, scale 255 / 51 = 5); channel 1 is constant and stays; channel 2 already
  // spans [0, 255].
  Image image(1, 4, 3);
  image.pixels = {20, 9, 0, 37, 9, 17, 71, 9, 255, 50, 9, 34};
  CHECK(values_of(autocontrast(image)) == std::vector<int>{0, 9, 0, 85, 9, 17, 255, 9, 255, 150, 9, 34});

  // 1024 pixels: 512 of 10, 256 of 50, 256 of 200. step = (1024 - 256) / 255 = 3 (floor), and
  // v -> (pixels below v + 1) / 3: 10 -> 1 / 3 = 0, 50 -> 513 / 3 = 171, 200 -> 769 / 3 = 256, clamped to 255.
  Image many(32, 32, 1);
  for (int64_t i = 0; i < 1024; ++i) many.pixels[static_cast<size_t>(i)] = i < 512 ? 10 : (i < 768 ? 50 : 200);
  const Image equalized = equalize(many);
  for (int64_t i = 0; i < 1024; ++i) {
    const int want = i < 512 ? 0 : (i < 768 ? 171 : 255);
    REQUIRE(equalized.pixels[static_cast<size_t>(i)] == want);
  }
  // Too few pixels below the top value (step 0): unchanged.
  const Image small = grey_image(1, 4, {0, 50, 100, 250});
  CHECK(values_of(equalize(small)) == values_of(small));
}

TEST_CASE("rotate, shear and translate sample the hand-computed source pixels") {
  const Image image = numbered_4x4();
  const auto at = [&](int64_t y, int64_t x) { return static_cast<int>(image.at(y, x, 0)); };
  for (Interpolation mode : {Interpolation::nearest, Interpolation::bilinear}) {
    CAPTURE(interpolation_name(mode));
    const Image left = rotate(image, 90, mode), half = rotate(image, 180, mode), right = rotate(image, -90, mode);
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 4; ++x) {
        CHECK(left.at(y, x, 0) == at(x, 3 - y));  // counter-clockwise: the right column becomes the top row
        CHECK(half.at(y, x, 0) == at(3 - y, 3 - x));
        CHECK(right.at(y, x, 0) == at(3 - x, y));
      }
  }
  // 3x5 turned by 90 degrees about (2, 1): output (x, y) samples (3 - y, x - 1); columns 0 and 4 fall outside.
  const Image wide = pattern_image(3, 5, 3, 4);
  const Image turned = rotate(wide, 90, Interpolation::nearest, {7, 8, 9});
  for (int64_t y = 0; y < 3; ++y)
    for (int64_t x = 0; x < 5; ++x)
      for (int64_t c = 0; c < 3; ++c) {
        const int64_t sx = 3 - y, sy = x - 1;
        const bool inside = sy >= 0 && sy < 3 && sx >= 0 && sx < 5;
        CHECK(turned.at(y, x, c) == (inside ? wide.at(sy, sx, c) : 7 + c));
      }

  // Shear x by 0.5: source x = x + 0.5 (y + 0.5), i.e. rows shift left by round(0.25, 0.75, 1.25, 1.75) = 0, 1, 1, 2.
  const int shift[4] = {0, 1, 1, 2};
  const Image sheared = shear_x(image, 0.5, Interpolation::nearest, {3});
  const Image sheared_back = shear_x(image, -0.5);
  const Image sheared_y = shear_y(image, 0.5);
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 4; ++x) {
      const int64_t sx = x + shift[y], sx_back = x - shift[y];
      CHECK(sheared.at(y, x, 0) == (sx < 4 ? at(y, sx) : 3));
      CHECK(sheared_back.at(y, x, 0) == (sx_back >= 0 ? at(y, sx_back) : 0));
      const int64_t sy = y + shift[x];  // the same along columns
      CHECK(sheared_y.at(y, x, 0) == (sy < 4 ? at(sy, x) : 0));
    }
  // Bilinear shear of the row (0, 100, 200, 40) by 0.5 at y = 0: source x + 0.25 blends 3/4 and 1/4 of the
  // neighbours; the last pixel takes 1/4 of the fill 0: 25, 125, 160, 30.
  const Image row = grey_image(1, 4, {0, 100, 200, 40});
  CHECK(values_of(shear_x(row, 0.5, Interpolation::bilinear)) == std::vector<int>{25, 125, 160, 30});

  const Image moved = translate(image, 2, -1, {1});
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 4; ++x) {
      const int64_t sx = x - 2, sy = y + 1;
      CHECK(moved.at(y, x, 0) == (sx >= 0 && sy < 4 ? at(sy, sx) : 1));
    }
  CHECK(values_of(translate(image, 4, 0)) == std::vector<int>(16, 0));
  CHECK(values_of(translate(image, 0, 0)) == values_of(image));
  CHECK(contains(error_of([&] { rotate(wide, 10, Interpolation::nearest, {1, 2}); }), "fill has 2 values"));
}

TEST_CASE("apply_augment_op gives magnitudes torchvision's meaning") {
  const Image image = numbered_4x4();
  const Image dark = grey_image(1, 4, {0, 10, 100, 200});
  CHECK(values_of(apply_augment_op(dark, AugmentOp::brightness, 0.5)) == std::vector<int>{0, 15, 150, 255});
  CHECK(values_of(apply_augment_op(dark, AugmentOp::contrast, -1.0)) ==
        std::vector<int>{77, 77, 77, 77});  // factor 0: the mean trunc(310 / 4 = 77.5) -> 77
  CHECK(values_of(apply_augment_op(dark, AugmentOp::posterize, 3.0)) == std::vector<int>{0, 0, 96, 192});
  CHECK(values_of(apply_augment_op(dark, AugmentOp::solarize, 100.0)) == std::vector<int>{0, 10, 155, 55});
  // Translate truncates toward zero: -2.9 moves 2 pixels left.
  const Image moved = apply_augment_op(image, AugmentOp::translate_x, -2.9);
  for (int64_t x = 0; x < 4; ++x) CHECK(moved.at(1, x, 0) == (x + 2 < 4 ? image.at(1, x + 2, 0) : 0));
  CHECK(same_pixels(apply_augment_op(image, AugmentOp::identity, 5.0), image));
  CHECK(same_pixels(apply_augment_op(image, AugmentOp::rotate, 180.0), rotate(image, 180)));
}

TEST_CASE("TrivialAugmentWide's colour ops and translations match torchvision value for value") {
  // Made by tests/fixtures/make_torchvision_augment_fixture.py through torchvision's own _apply_op.
  const auto file = tessera::io::SafetensorsFile::read(fs::path(TESSERA_FIXTURES_DIR) /
                                                       "torchvision_augment.safetensors");
  const std::vector<int64_t> pixels = file.int64s("image"), ops = file.int64s("ops"),
                             outputs = file.int64s("outputs");
  const std::vector<double> magnitudes = file.tensor<double>("magnitudes").to_vector();
  Image image(16, 16, 3);
  REQUIRE(pixels.size() == image.pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(pixels[i]);
  REQUIRE(ops.size() == 100);
  REQUIRE(magnitudes.size() == ops.size());
  REQUIRE(outputs.size() == ops.size() * image.pixels.size());
  std::set<int64_t> covered;
  for (size_t k = 0; k < ops.size(); ++k) {
    const auto op = static_cast<AugmentOp>(ops[k]);
    CAPTURE(std::string(augment_op_name(op)));
    CAPTURE(magnitudes[k]);
    const Image out = apply_augment_op(image, op, magnitudes[k]);
    int differing = 0;
    for (size_t i = 0; i < out.pixels.size(); ++i)
      differing += out.pixels[i] == outputs[k * out.pixels.size() + i] ? 0 : 1;
    CHECK(differing == 0);
    covered.insert(ops[k]);
  }
  CHECK(covered.size() == 10);
}

TEST_CASE("augment_magnitude follows torchvision's bins for the wide and standard spaces") {
  using S = AugmentSpace;
  CHECK(augment_magnitude(S::wide, AugmentOp::shear_x, 0, 31, 32, 32) == 0.0);
  CHECK(augment_magnitude(S::wide, AugmentOp::shear_x, 30, 31, 32, 32) == doctest::Approx(0.99).epsilon(1e-6));
  CHECK(augment_magnitude(S::wide, AugmentOp::shear_y, 10, 31, 32, 32) == doctest::Approx(0.33).epsilon(1e-6));
  CHECK(augment_magnitude(S::wide, AugmentOp::translate_x, 15, 31, 32, 32) == doctest::Approx(16.0).epsilon(1e-6));
  CHECK(augment_magnitude(S::wide, AugmentOp::rotate, 30, 31, 32, 32) == doctest::Approx(135.0).epsilon(1e-6));
  CHECK(augment_magnitude(S::wide, AugmentOp::brightness, 20, 31, 32, 32) == doctest::Approx(0.66).epsilon(1e-6));
  // Posterize: 8 - round(bin / 5) wide (bins 31): 0 -> 8, 12 -> 6 (2.4), 13 -> 5 (2.6), 30 -> 2.
  CHECK(augment_magnitude(S::wide, AugmentOp::posterize, 0, 31, 32, 32) == 8.0);
  CHECK(augment_magnitude(S::wide, AugmentOp::posterize, 12, 31, 32, 32) == 6.0);
  CHECK(augment_magnitude(S::wide, AugmentOp::posterize, 13, 31, 32, 32) == 5.0);
  CHECK(augment_magnitude(S::wide, AugmentOp::posterize, 30, 31, 32, 32) == 2.0);
  CHECK(augment_magnitude(S::wide, AugmentOp::solarize, 0, 31, 32, 32) == 255.0);
  CHECK(augment_magnitude(S::wide, AugmentOp::solarize, 10, 31, 32, 32) == doctest::Approx(170.0).epsilon(1e-6));
  CHECK(augment_magnitude(S::wide, AugmentOp::solarize, 30, 31, 32, 32) == 0.0);
  CHECK(augment_magnitude(S::wide, AugmentOp::equalize, 7, 31, 32, 32) == 0.0);
  // Standard (RandAugment): posterize 8 - round(bin / 7.5), translate up to 150/331 of the side, rotate 30.
  CHECK(augment_magnitude(S::standard, AugmentOp::posterize, 30, 31, 32, 32) == 4.0);
  CHECK(augment_magnitude(S::standard, AugmentOp::posterize, 9, 31, 32, 32) == 7.0);
  CHECK(augment_magnitude(S::standard, AugmentOp::translate_x, 30, 31, 20, 32) ==
        doctest::Approx(150.0 / 331.0 * 32.0).epsilon(1e-6));
  CHECK(augment_magnitude(S::standard, AugmentOp::translate_y, 30, 31, 20, 32) ==
        doctest::Approx(150.0 / 331.0 * 20.0).epsilon(1e-6));
  CHECK(augment_magnitude(S::standard, AugmentOp::rotate, 9, 31, 32, 32) == doctest::Approx(9.0).epsilon(1e-6));
  CHECK(augment_magnitude(S::standard, AugmentOp::color, 9, 31, 32, 32) == doctest::Approx(0.27).epsilon(1e-6));
  CHECK(contains(error_of([] { augment_magnitude(AugmentSpace::wide, AugmentOp::rotate, 31, 31, 8, 8); }), "bin"));
}

TEST_CASE("TrivialAugmentWide draws op, bin and sign uniformly and is deterministic for a generator") {
  const TrivialAugmentWide trivial;
  CHECK(trivial.describe() == "TrivialAugmentWide(num_magnitude_bins=31, interpolation=nearest, fill=[0])");
  std::vector<int> op_counts(kNumAugmentOps, 0);
  int negative = 0, positive = 0;
  double largest_rotation = 0.0;
  const int draws = 14000;
  for (int seed = 0; seed < draws; ++seed) {
    Generator gen(static_cast<uint64_t>(seed)), replay(static_cast<uint64_t>(seed));
    const AugmentChoice choice = trivial.choose(32, 32, gen);
    // The draws in order: op ~ U{0..13}, bin ~ U{0..30} when the op has a magnitude, sign when it is signed.
    const auto op = static_cast<AugmentOp>(replay.below(14));
    REQUIRE(choice.op == op);
    ++op_counts[static_cast<size_t>(op)];
    if (!augment_op_has_magnitude(op)) {
      CHECK(choice.magnitude == 0.0);
      continue;
    }
    const auto bin = static_cast<double>(replay.below(31));
    const bool negated = augment_op_is_signed(op) && replay.below(2) == 1;
    double expected = 0.0;
    switch (op) {
      case AugmentOp::shear_x: case AugmentOp::shear_y: case AugmentOp::brightness: case AugmentOp::color:
      case AugmentOp::contrast: case AugmentOp::sharpness: expected = 0.99 * bin / 30.0; break;
      case AugmentOp::translate_x: case AugmentOp::translate_y: expected = 32.0 * bin / 30.0; break;
      case AugmentOp::rotate: expected = 135.0 * bin / 30.0; break;
      case AugmentOp::posterize: expected = 8.0 - std::nearbyint(bin / 5.0); break;
      case AugmentOp::solarize: expected = 255.0 - 8.5 * bin; break;
      default: break;
    }
    CHECK(choice.magnitude == doctest::Approx(negated ? -expected : expected).epsilon(1e-5));
    if (augment_op_is_signed(op)) (negated ? negative : positive) += 1;
    if (op == AugmentOp::rotate) largest_rotation = std::max(largest_rotation, std::abs(choice.magnitude));
  }
  for (int count : op_counts) {  // 1000 expected per op; 6 standard deviations is about 180
    CHECK(count > 800);
    CHECK(count < 1200);
  }
  CHECK(std::abs(negative - positive) < 400);
  CHECK(largest_rotation == doctest::Approx(135.0).epsilon(1e-6));

  const Image image = pattern_image(32, 32, 3, 9);
  int changed = 0;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Generator a(seed), b(seed), c(seed);
    const Image out = trivial(image, a);
    CHECK(same_pixels(out, trivial(image, b)));
    const AugmentChoice choice = trivial.choose(32, 32, c);
    CHECK(same_pixels(out, apply_augment_op(image, choice.op, choice.magnitude)));
    changed += same_pixels(out, image) ? 0 : 1;
  }
  CHECK(changed > 35);
  CHECK(contains(error_of([] { TrivialAugmentWide(1); }), "num_magnitude_bins"));
}

TEST_CASE("RandAugment applies num_ops ops at the fixed magnitude") {
  const RandAugment rand_augment(2, 9);
  CHECK(rand_augment.describe() ==
        "RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31, interpolation=nearest, fill=[0])");
  const Image image = pattern_image(32, 32, 3, 3);
  for (uint64_t seed = 0; seed < 30; ++seed) {
    Generator gen(seed), replay(seed);
    const Image out = rand_augment(image, gen);
    Image expected = image;
    for (int i = 0; i < 2; ++i) {
      const AugmentChoice choice = rand_augment.choose(32, 32, replay);
      if (choice.op == AugmentOp::rotate) CHECK(std::abs(choice.magnitude) == doctest::Approx(9.0).epsilon(1e-6));
      if (choice.op == AugmentOp::shear_x) CHECK(std::abs(choice.magnitude) == doctest::Approx(0.09).epsilon(1e-5));
      expected = apply_augment_op(expected, choice.op, choice.magnitude);
    }
    CHECK(same_pixels(out, expected));
  }
  Generator gen(0);
  CHECK(same_pixels(RandAugment(0)(image, gen), image));
  CHECK(contains(error_of([] { RandAugment(2, 31); }), "magnitude"));
}

TEST_CASE("Cutout sets a clipped square around a uniform centre to the value") {
  const Cutout cutout(4);
  CHECK(cutout.describe() == "Cutout(size=4, p=1, value=0)");
  std::set<std::pair<int64_t, int64_t>> centres;
  int full = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    FloatImage image(2, 6, 7, 1.0f);
    Generator gen(seed), replay(seed);
    cutout(image, gen);
    const auto cy = static_cast<int64_t>(replay.below(6)), cx = static_cast<int64_t>(replay.below(7));
    centres.insert({cy, cx});
    int zeros = 0;
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t y = 0; y < 6; ++y)
        for (int64_t x = 0; x < 7; ++x) {
          const bool inside = y >= cy - 2 && y < cy + 2 && x >= cx - 2 && x < cx + 2;
          CHECK(image.at(c, y, x) == (inside ? 0.0f : 1.0f));
          zeros += inside ? 1 : 0;
        }
    CHECK(zeros <= 2 * 16);
    full += zeros == 2 * 16 ? 1 : 0;
  }
  CHECK(centres.size() == 42);  // every pixel is a centre
  CHECK(full > 0);

  int cut = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    FloatImage image(1, 8, 8, 1.0f);
    Generator gen(seed);
    Cutout(3, 0.5, -2.0f)(image, gen);
    const auto n = std::count(image.values.begin(), image.values.end(), -2.0f);
    CHECK((n == 0 || n >= 4));  // a 3x3 square clipped at a corner keeps at least 2x2
    cut += n > 0 ? 1 : 0;
  }
  CHECK(cut > 140);
  CHECK(cut < 260);
  FloatImage untouched(1, 4, 4, 1.0f);
  Generator gen(1);
  Cutout(2, 0.0)(untouched, gen);
  CHECK(std::count(untouched.values.begin(), untouched.values.end(), 1.0f) == 16);
  CHECK(contains(error_of([] { Cutout(0); }), "size"));
}

TEST_CASE("cifar10_train_transform (the reference recipe) is unchanged: crop, flip, ToTensor, Normalize") {
  const Compose reference = cifar10_train_transform();
  CHECK(reference.describe() ==
        "Compose(RandomCrop(size=32x32, padding=4), RandomHorizontalFlip(p=0.5), ToTensor(), "
        "Normalize(mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.2435, 0.2616]))");
  const Image image = pattern_image(32, 32, 3, 5);
  const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std_dev[3] = {0.2470f, 0.2435f, 0.2616f};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Generator gen(seed), replay(seed);
    const FloatImage out = reference(image, gen);
    // The draws: top ~ U{0..8}, left ~ U{0..8} in the 40x40 zero-padded image, then flip when U[0, 1) < 0.5.
    const auto top = static_cast<int64_t>(replay.below(9)) - 4, left = static_cast<int64_t>(replay.below(9)) - 4;
    const bool flip = replay.uniform() < 0.5;
    REQUIRE(out.size_string() == "(3, 32, 32)");
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 32; ++x) {
          const int64_t sy = y + top, sx = (flip ? 31 - x : x) + left;
          const bool inside = sy >= 0 && sy < 32 && sx >= 0 && sx < 32;
          const float v = static_cast<float>(inside ? image.at(sy, sx, c) : 0) / 255.0f;
          REQUIRE(out.at(c, y, x) == (v - mean[c]) / std_dev[c]);
        }
  }
}

TEST_CASE("cifar10_fast_train_transform composes the parts its options keep") {
  CHECK(cifar10_fast_train_transform().describe() ==
        "Compose(RandomCrop(size=32x32, padding=4), RandomHorizontalFlip(p=0.5), TrivialAugmentWide("
        "num_magnitude_bins=31, interpolation=nearest, fill=[0]), ToTensor(), Normalize(mean=[0.4914, 0.4822, "
        "0.4465], std=[0.247, 0.2435, 0.2616]), Cutout(size=8, p=1, value=0))");
  Cifar10FastAugmentOptions plain;
  plain.trivial_augment = false;
  plain.cutout_size = 0;
  CHECK(cifar10_fast_train_transform(plain).describe() == cifar10_train_transform().describe());
  Cifar10FastAugmentOptions bare{0, false, false, 16};
  CHECK(cifar10_fast_train_transform(bare).describe() ==
        "Compose(ToTensor(), Normalize(mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.2435, 0.2616]), "
        "Cutout(size=16, p=1, value=0))");

  // With trivial augment and cutout off the pipeline is the reference one, draw for draw.
  const Image image = pattern_image(32, 32, 3, 2);
  for (uint64_t seed = 0; seed < 5; ++seed) {
    Generator a(seed), b(seed);
    CHECK(cifar10_fast_train_transform(plain)(image, a).values == cifar10_train_transform()(image, b).values);
  }
  // The full transform is a function of the generator: the same seed gives the same image; the cutout leaves at
  // least a 4x4 corner of exact zeros (the square of 8 clipped at most to 4x4) in every channel.
  const Compose fast = cifar10_fast_train_transform();
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Generator a(seed), b(seed);
    const FloatImage out = fast(image, a);
    CHECK(out.values == fast(image, b).values);
    CHECK(std::count(out.values.begin(), out.values.end(), 0.0f) >= 3 * 16);
  }
  CHECK(contains(error_of([] { cifar10_fast_train_transform({-1, true, true, 8}); }), "crop_padding"));

  // In a DataLoader the fast transform gives the same batches on any number of workers.
  const auto dataset = numbered_dataset(10, 32);
  std::vector<std::vector<Flat>> runs;
  for (int workers : {0, 2}) {
    DataLoaderOptions options;
    options.batch_size = 4;
    options.seed = 3;
    options.num_workers = workers;
    DataLoader loader(dataset, fast, options);
    runs.push_back(run_epoch(loader, 1));
  }
  CHECK(runs[0] == runs[1]);
}

TEST_CASE("sample_beta has Beta(alpha, alpha)'s mean and variance; mix_generator is keyed by (seed, epoch, batch)") {
  for (double alpha : {0.2, 0.8, 1.0, 2.0}) {
    CAPTURE(alpha);
    Generator gen(42);
    const int n = 20000;
    double sum = 0.0, sum_sq = 0.0;
    for (int i = 0; i < n; ++i) {
      const double v = sample_beta(alpha, gen);
      REQUIRE(v >= 0.0);
      REQUIRE(v <= 1.0);
      sum += v;
      sum_sq += v * v;
    }
    const double mean = sum / n, variance = sum_sq / n - mean * mean;
    CHECK(mean == doctest::Approx(0.5).epsilon(0.02));
    CHECK(variance == doctest::Approx(1.0 / (4.0 * (2.0 * alpha + 1.0))).epsilon(0.05));  // Beta(a, a) variance
  }
  Generator a = mix_generator(1, 2, 3), b = mix_generator(1, 2, 3), c = mix_generator(1, 2, 4),
            d = mix_generator(1, 3, 3), e = mix_generator(2, 2, 3);
  const uint64_t first = a.next_u64();
  CHECK(first == b.next_u64());
  CHECK(first != c.next_u64());
  CHECK(first != d.next_u64());
  CHECK(first != e.next_u64());
  CHECK(first != tessera::data::sample_generator(1, 2, 3).next_u64());
}

namespace {

// A (B, C, H, W) batch with distinct values: 1000 b + 100 c + 10 y + x.
tessera::Tensor<float> numbered_batch(int64_t B, int64_t C, int64_t H, int64_t W) {
  tessera::Tensor<float> images(tessera::Shape{B, C, H, W});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
          images.data()[((b * C + c) * H + y) * W + x] = static_cast<float>(1000 * b + 100 * c + 10 * y + x);
  return images;
}

}  // namespace

TEST_CASE("MixUp blends each image with its partner in the reversed batch by one lambda") {
  const int64_t B = 5, C = 2, H = 3, W = 4;
  const tessera::Tensor<float> images = numbered_batch(B, C, H, W);
  const std::vector<int64_t> labels = {0, 1, 2, 3, 4};
  MixOptions options;
  options.cutmix_alpha = 0.0;
  std::set<double> lambdas;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Generator gen(seed);
    const MixedBatch mixed = mix_batch(images, labels, gen, options);
    CHECK_FALSE(mixed.cutmix);
    CHECK(mixed.labels_a == labels);
    CHECK(mixed.labels_b == std::vector<int64_t>{4, 3, 2, 1, 0});
    REQUIRE(mixed.lambda > 0.0);
    REQUIRE(mixed.lambda < 1.0);
    lambdas.insert(mixed.lambda);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < C * H * W; ++k) {
        const double self = images.data()[b * C * H * W + k], partner = images.data()[(B - 1 - b) * C * H * W + k];
        CHECK(mixed.images.data()[b * C * H * W + k] ==
              doctest::Approx(mixed.lambda * self + (1 - mixed.lambda) * partner).epsilon(1e-6));
      }
  }
  CHECK(lambdas.size() == 20);
  CHECK(images.data()[0] == 0.0f);  // the input is left as it was

  options.prob = 0.0;  // never mixed
  Generator gen(3);
  const MixedBatch unmixed = mix_batch(images, labels, gen, options);
  CHECK(unmixed.lambda == 1.0);
  CHECK(unmixed.images.to_vector() == images.to_vector());
  Generator g(1);
  CHECK(mix_batch(images, labels, g, MixOptions{0.0, 0.0, 0.5, 1.0, true}).lambda == 1.0);
  CHECK(contains(error_of([&] { mix_batch(images, std::vector<int64_t>{1, 2}, g); }), "2 labels for 5 images"));
}

TEST_CASE("CutMix pastes the partner's box and lambda is one minus the box's share of the area") {
  const int64_t B = 4, C = 3, H = 8, W = 10;
  const tessera::Tensor<float> images = numbered_batch(B, C, H, W);
  const std::vector<int64_t> labels = {7, 8, 9, 6};
  MixOptions options;
  options.mixup_alpha = 0.0;
  int nonempty = 0;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    Generator gen(seed);
    const MixedBatch mixed = mix_batch(images, labels, gen, options);
    REQUIRE(mixed.cutmix);
    const MixBox& box = mixed.box;
    REQUIRE(box.top >= 0);
    REQUIRE(box.bottom <= H);
    REQUIRE(box.left >= 0);
    REQUIRE(box.right <= W);
    CHECK(mixed.lambda == 1.0 - static_cast<double>((box.bottom - box.top) * (box.right - box.left)) / (H * W));
    CHECK(mixed.labels_b == std::vector<int64_t>{6, 9, 8, 7});
    nonempty += box.bottom > box.top && box.right > box.left ? 1 : 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x) {
            const bool inside = y >= box.top && y < box.bottom && x >= box.left && x < box.right;
            const int64_t source = inside ? B - 1 - b : b;
            CHECK(mixed.images.data()[((b * C + c) * H + y) * W + x] ==
                  static_cast<float>(1000 * source + 100 * c + 10 * y + x));
          }
  }
  CHECK(nonempty > 40);

  // Without the correction lambda is the Beta draw, and the box is at most int(H sqrt(1 - lambda)) by
  // int(W sqrt(1 - lambda)) (even sides of 2 * (cut / 2), clipped).
  options.correct_lambda = false;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    Generator gen(seed);
    const MixedBatch mixed = mix_batch(images, labels, gen, options);
    const double ratio = std::sqrt(1.0 - mixed.lambda);
    CHECK(mixed.box.bottom - mixed.box.top <= static_cast<int64_t>(H * ratio));
    CHECK(mixed.box.right - mixed.box.left <= static_cast<int64_t>(W * ratio));
    CHECK(static_cast<double>(mixed.box.area()) / (H * W) <= 1.0 - mixed.lambda + 1e-12);
  }

  // With both on, switch_prob picks CutMix for about that share of the batches.
  options = MixOptions{};
  options.switch_prob = 0.25;
  int cutmix = 0;
  for (uint64_t seed = 0; seed < 800; ++seed) {
    Generator gen(seed);
    cutmix += mix_batch(images, labels, gen, options).cutmix ? 1 : 0;
  }
  CHECK(cutmix > 150);  // 200 expected
  CHECK(cutmix < 250);

  // The Batch overload mixes the batch's images and labels.
  Batch batch;
  batch.images = images;
  batch.labels = labels;
  Generator a(5), b(5);
  CHECK(mix_batch(batch, a).images.to_vector() == mix_batch(images, labels, b).images.to_vector());
}

TEST_CASE("mixed_cross_entropy is lambda CE(a) + (1 - lambda) CE(b) with label smoothing, value and gradient") {
  const int64_t B = 3, K = 4;
  const std::vector<double> values = {0.5, -1.0, 2.0, 0.1, 1.5, 0.3, -0.7, 0.0, -0.2, 0.9, 0.4, -1.3};
  const std::vector<int64_t> a = {2, 0, 3}, b = {1, 0, 2};
  const double lambda = 0.3, smoothing = 0.1;
  // By hand: per row, log-softmax; the smoothed target q_t = (1 - s) onehot(t) + s / K; CE = -mean_rows sum q log p.
  std::vector<double> log_p(values.size()), p(values.size());
  for (int64_t r = 0; r < B; ++r) {
    double max_v = -1e300, sum = 0.0;
    for (int64_t k = 0; k < K; ++k) max_v = std::max(max_v, values[static_cast<size_t>(r * K + k)]);
    for (int64_t k = 0; k < K; ++k) sum += std::exp(values[static_cast<size_t>(r * K + k)] - max_v);
    for (int64_t k = 0; k < K; ++k) {
      log_p[static_cast<size_t>(r * K + k)] = values[static_cast<size_t>(r * K + k)] - max_v - std::log(sum);
      p[static_cast<size_t>(r * K + k)] = std::exp(log_p[static_cast<size_t>(r * K + k)]);
    }
  }
  const auto q = [&](const std::vector<int64_t>& t, int64_t r, int64_t k) {
    return (1.0 - smoothing) * (t[static_cast<size_t>(r)] == k ? 1.0 : 0.0) + smoothing / K;
  };
  double ce_a = 0.0, ce_b = 0.0;
  for (int64_t r = 0; r < B; ++r)
    for (int64_t k = 0; k < K; ++k) {
      ce_a -= q(a, r, k) * log_p[static_cast<size_t>(r * K + k)] / B;
      ce_b -= q(b, r, k) * log_p[static_cast<size_t>(r * K + k)] / B;
    }

  auto logits = tessera::Tensor<double>::from_vector(values, tessera::Shape{B, K}).set_requires_grad();
  const auto loss = mixed_cross_entropy(logits, std::span<const int64_t>(a), std::span<const int64_t>(b), lambda,
                                        smoothing);
  CHECK(loss.item() == doctest::Approx(lambda * ce_a + (1 - lambda) * ce_b).epsilon(1e-12));
  loss.backward();
  // d loss / d logits = (softmax - (lambda q_a + (1 - lambda) q_b)) / B.
  for (int64_t r = 0; r < B; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const double want = (p[static_cast<size_t>(r * K + k)] - lambda * q(a, r, k) - (1 - lambda) * q(b, r, k)) / B;
      CHECK(logits.grad().data()[r * K + k] == doctest::Approx(want).epsilon(1e-10));
    }

  // lambda 1 (an unmixed batch) is the plain cross-entropy against a; the MixedBatch overload reads its fields.
  const auto plain = tessera::Tensor<double>::from_vector(values, tessera::Shape{B, K});
  CHECK(mixed_cross_entropy(plain, std::span<const int64_t>(a), std::span<const int64_t>(b), 1.0, smoothing).item() ==
        doctest::Approx(ce_a).epsilon(1e-12));
  MixedBatch mixed;
  mixed.labels_a = a;
  mixed.labels_b = b;
  mixed.lambda = lambda;
  CHECK(mixed_cross_entropy(plain, mixed, smoothing).item() ==
        doctest::Approx(lambda * ce_a + (1 - lambda) * ce_b).epsilon(1e-12));
  CHECK(contains(error_of([&] {
                   mixed_cross_entropy(plain, std::span<const int64_t>(a), std::span<const int64_t>(b), 1.5);
                 }),
                 "lambda"));
}
