// Helpers shared by the tests: gradcheck assertions, random inputs, error checks, temporary folders and files, and
// the tiny ViT, dataset and transforms that the training, checkpoint and example tests run on.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tessera/tessera.hpp>
#include <utility>
#include <vector>

namespace test {

using TensorD = tessera::Tensor<double>;
using TensorF = tessera::Tensor<float>;

inline TensorD random_input(const tessera::Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  tessera::Generator gen(seed);
  return TensorD::uniform(shape, low, high, gen).set_requires_grad();
}

// Runs f, which must throw tessera::Error whose message contains every one of `parts`.
template <class F>
void check_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL("expected tessera::Error");
  } catch (const tessera::Error& e) {
    const std::string message = e.what();
    for (const auto& part : parts) CHECK_MESSAGE(message.find(part) != std::string::npos, "'" << part << "' not in: " << message);
  }
}

// Catches the tessera::Error thrown by f and returns its message ("" when nothing was thrown).
template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const tessera::Error& e) {
    return e.what();
  }
  return "";
}

// The largest absolute difference of two tensors of one shape.
template <class T>
double max_abs_difference(const tessera::Tensor<T>& a, const tessera::Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
  return m;
}

// ---------------------------------------------------------------------------------------------- files

// A fresh folder under the system temp folder, removed with everything in it at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device entropy;
    path = std::filesystem::temp_directory_path() /
           ("tessera_test_" + std::to_string(entropy()) + "_" + std::to_string(entropy()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

// The bytes of a file, which must exist.
inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.is_open(), path.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_text(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE_MESSAGE(out.good(), path.string());
}

// The lines of a text file, which must exist.
inline std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.is_open(), path.string());
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A row of train::Trainer's CSV without its timing columns: epoch, step, train_loss, test_acc (not img_per_s,
// elapsed_s), the columns a resumed run must reproduce.
inline std::string without_timing(const std::string& line) {
  size_t cut = 0;
  for (int commas = 0; commas < 4; ++commas) cut = line.find(',', cut) + 1;
  return line.substr(0, cut - 1);
}

// ---------------------------------------------------------------------------------------------- tiny models and data

// The tiny ViT of the training, checkpoint and example tests: 8x8 RGB images, 4x4 patches (a 2x2 grid), dim 8,
// 2 blocks of 2 heads, MLP ratio 2, 3 classes.
inline tessera::nn::ViTConfig tiny_vit_config() {
  tessera::nn::ViTConfig c;
  c.img_size = 8;
  c.patch_size = 4;
  c.num_classes = 3;
  c.embed_dim = 8;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_ratio = 2.0;
  return c;
}

// tiny_vit_config with dropout and drop-path on, so that a resumed run also depends on the model's generator.
inline tessera::nn::ViTConfig tiny_vit_config_with_dropout() {
  tessera::nn::ViTConfig c = tiny_vit_config();
  c.proj_drop_rate = 0.1;
  c.drop_path_rate = 0.1;
  return c;
}

// The smaller ViT of the nn tests: 4x4 images of 2 channels, 2x2 patches, dim 6, 2 blocks of 2 heads, MLP 9 wide.
inline tessera::nn::ViTConfig tiny_4x4_vit_config() {
  tessera::nn::ViTConfig c;
  c.img_size = 4;
  c.patch_size = 2;
  c.in_chans = 2;
  c.num_classes = 3;
  c.embed_dim = 6;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_ratio = 1.5;
  return c;
}

// A batch of standard-normal images of the model's input shape (batch, in_chans, img_size, img_size).
template <class T>
tessera::Tensor<T> random_images(const tessera::nn::ViTConfig& c, int64_t batch, uint64_t seed) {
  tessera::Generator gen(seed);
  return tessera::Tensor<T>::normal(tessera::Shape{batch, c.in_chans, c.img_size, c.img_size}, T(0), T(1), gen);
}

// The names of a module's parameters, in its order.
template <class T>
std::vector<std::string> parameter_names(const tessera::nn::Module<T>& m) {
  std::vector<std::string> out;
  for (const auto& [name, tensor] : m.named_parameters()) out.push_back(name);
  return out;
}

// ---------------------------------------------------------------------------------------------- thread-count checks

using NamedTensors = std::map<std::string, tessera::Tensor<float>>;

// On `threads` threads: a ViT of `config` (seed 7) in training mode, forward, label-smoothed cross-entropy and
// backward on 24 random images and labels; returns the logits, the loss and the gradients of the image and of every
// parameter ("grad.<name>"), with whatever `more(model, images, outputs)` adds. The thread count is restored after.
template <class More>
NamedTensors vit_forward_backward(const tessera::nn::ViTConfig& config, int threads, More&& more) {
  const int previous = tessera::num_threads();
  tessera::set_num_threads(threads);
  tessera::nn::VisionTransformer<float> model(config, 7);
  model.train();
  const int64_t batch = 24;
  tessera::Tensor<float> x = random_images<float>(config, batch, 12);
  x.set_requires_grad();
  tessera::Generator draw(11);
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (auto& label : labels) label = static_cast<int64_t>(draw.below(static_cast<uint64_t>(config.num_classes)));
  const tessera::Tensor<float> logits = model(x);
  const tessera::Tensor<float> loss = tessera::ops::cross_entropy(logits, labels, 0.1);
  loss.backward();
  NamedTensors out{{"logits", logits.detach()}, {"loss", loss.detach()}, {"grad.image", x.grad()}};
  for (const auto& [name, p] : model.named_parameters()) out["grad." + name] = p.grad();
  more(model, x, out);
  tessera::set_num_threads(previous);
  return out;
}

inline NamedTensors vit_forward_backward(const tessera::nn::ViTConfig& config, int threads) {
  return vit_forward_backward(config, threads, [](auto&, auto&, auto&) {});
}

// For each named config: every tensor `run(config, threads)` returns on 2 and on 3 threads has the same bits as on
// 1 thread, and the loss is finite.
template <class Run>
void check_same_bits_on_1_2_3_threads(const std::vector<std::pair<std::string, tessera::nn::ViTConfig>>& configs,
                                      Run&& run) {
  for (const auto& named : configs) {
    const std::string& name = named.first;
    INFO(name);
    const NamedTensors one = run(named.second, 1);
    CHECK(std::isfinite(one.at("loss").item()));
    for (int threads : {2, 3}) {
      const NamedTensors other = run(named.second, threads);
      REQUIRE(one.size() == other.size());
      for (const auto& entry : one) {
        const std::string& key = entry.first;
        const tessera::Tensor<float>& expected = entry.second;
        INFO(key << " with " << threads << " threads");
        REQUIRE(expected.defined());
        REQUIRE(other.at(key).defined());
        REQUIRE(other.at(key).shape() == expected.shape());
        CHECK(std::memcmp(expected.data(), other.at(key).data(),
                          sizeof(float) * static_cast<size_t>(expected.numel())) == 0);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- tiny datasets

// n random 8x8 RGB images labelled with their brightest channel (a learnable rule), classes red, green, blue.
inline std::shared_ptr<const tessera::data::Dataset> colour_dataset(int64_t n, uint64_t seed) {
  tessera::Generator gen(seed);
  std::vector<tessera::data::Image> images;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) {
    const auto label = static_cast<int64_t>(gen.below(3));
    tessera::data::Image image(8, 8, 3);
    for (int64_t p = 0; p < 64; ++p)
      for (int64_t c = 0; c < 3; ++c)
        image.pixels[static_cast<size_t>(p * 3 + c)] = static_cast<uint8_t>(gen.below(c == label ? 256 : 160));
    images.push_back(std::move(image));
    labels.push_back(label);
  }
  return std::make_shared<tessera::data::InMemoryDataset>(std::move(images), std::move(labels),
                                                          std::vector<std::string>{"red", "green", "blue"}, "colours");
}

// colour_dataset's training transform (a 1-pixel padded crop, a flip, Normalize) and its evaluation one.
inline tessera::data::Compose colour_train_transform() {
  using namespace tessera::data;
  return Compose{RandomCrop(8, 1), RandomHorizontalFlip(0.5), ToTensor(),
                 Normalize({0.4f, 0.4f, 0.4f}, {0.25f, 0.25f, 0.25f})};
}
inline tessera::data::Compose colour_eval_transform() {
  using namespace tessera::data;
  return Compose{ToTensor(), Normalize({0.4f, 0.4f, 0.4f}, {0.25f, 0.25f, 0.25f})};
}

}  // namespace test

// CHECK that autograd's gradients of f at `inputs` agree with finite differences; prints the worst element.
#define CHECK_GRADCHECK(f, ...)                                              \
  do {                                                                       \
    auto gradcheck_result = ::tessera::testing::gradcheck(f, __VA_ARGS__);   \
    CHECK_MESSAGE(gradcheck_result.ok, gradcheck_result.message);           \
  } while (false)
