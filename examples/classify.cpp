// Classifies images with a checkpoint written by train::Trainer (train_cifar10, finetune): the model config, the
// weights, the class names and the Normalize constants all come from the checkpoint.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <tessera/tessera.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/train/classifier_info.hpp>

#include "cli_checks.hpp"

using namespace tessera;

namespace {

// Images decoded per forward: big enough to keep the GEMMs busy, small enough for any folder size.
constexpr size_t kBatchSize = 64;

bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// `path` itself when it is a file (decoding will tell if it is no image), else the images directly inside the
// folder, sorted by name; anything without an image extension is skipped.
std::vector<std::filesystem::path> list_images(const std::filesystem::path& path) {
  std::error_code ec;
  TESSERA_CHECK(std::filesystem::exists(path, ec), "--image: '", path.string(), "' does not exist");
  if (!std::filesystem::is_directory(path, ec)) return {path};
  std::vector<std::filesystem::path> images;
  for (const auto& entry : std::filesystem::directory_iterator(path))
    if (entry.is_regular_file() && has_image_extension(entry.path())) images.push_back(entry.path());
  std::sort(images.begin(), images.end());
  TESSERA_CHECK(!images.empty(), "--image: the folder '", path.string(), "' holds no images (png, jpg, jpeg, bmp)");
  return images;
}

int run(int argc, char** argv) {
  CLI::App app{"Classify images with a checkpoint written by train_cifar10 or finetune: prints the top classes"};
  app.set_help_flag("-h,--help", "Print this help and exit");
  std::filesystem::path checkpoint, image_path;
  int64_t top = 5;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("--checkpoint", checkpoint, "Checkpoint (.safetensors) written by train::Trainer")->required();
  app.add_option("--image", image_path, "An image (png, jpg, jpeg, bmp) or a folder of them")->required();
  app.add_option("--top", top, "How many classes to print per image")
      ->capture_default_str()
      ->check(examples::positive());
  app.add_option("--threads", threads, "Compute threads (OpenMP)")
      ->capture_default_str()
      ->check(examples::positive());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return examples::usage_exit(app, e);
  }
  set_num_threads(threads);

  // Read everything about the checkpoint first, so a bad one fails before any image is decoded.
  const train::Classifier classifier = train::load_classifier(checkpoint);
  const nn::ViTConfig& config = classifier.config;
  const train::ClassifierInfo& info = classifier.info;
  nn::VisionTransformer<float>& model = *classifier.model;
  TESSERA_CHECK(config.in_chans >= 1 && config.in_chans <= 4, "the model of '", checkpoint.string(), "' takes ",
                config.in_chans, " input channels; images can be decoded into 1 to 4");

  const std::vector<std::filesystem::path> images = list_images(image_path);
  const data::Compose preprocess = info.eval_transform(config.img_size);
  const int64_t k = std::min<int64_t>(top, config.num_classes);
  const int64_t pixels = config.in_chans * config.img_size * config.img_size;
  Generator generator(0);  // Compose's signature; an evaluation pipeline draws nothing from it
  std::cout << std::fixed << std::setprecision(2);
  for (size_t first = 0; first < images.size(); first += kBatchSize) {
    const size_t count = std::min(kBatchSize, images.size() - first);
    Tensor<float> batch(Shape{static_cast<int64_t>(count), config.in_chans, config.img_size, config.img_size});
    for (size_t i = 0; i < count; ++i) {
      const data::FloatImage x =
          preprocess(data::decode_image(images[first + i], static_cast<int>(config.in_chans)), generator);
      std::copy(x.values.begin(), x.values.end(), batch.data() + static_cast<int64_t>(i) * pixels);
    }
    Tensor<float> probs;
    {
      NoGradGuard no_grad;
      probs = ops::softmax(model.forward(batch));  // (count, num_classes)
    }
    for (size_t i = 0; i < count; ++i) {
      const float* p = probs.data() + static_cast<int64_t>(i) * config.num_classes;
      std::vector<int64_t> order(static_cast<size_t>(config.num_classes));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [p](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      std::cout << images[first + i].string() << "\n";
      for (int64_t r = 0; r < k; ++r) {
        const int64_t c = order[static_cast<size_t>(r)];
        std::cout << "  " << std::setw(6) << 100.0 * static_cast<double>(p[c]) << "%  "
                  << info.class_names[static_cast<size_t>(c)] << "\n";
      }
    }
    std::cout << std::flush;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "classify: error: " << e.what() << std::endl;
    return 1;
  }
}
