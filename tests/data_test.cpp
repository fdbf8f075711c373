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
