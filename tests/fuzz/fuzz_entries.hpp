// The entry functions of tessera's fuzz targets: each feeds arbitrary bytes to one reader and uses what it returns.
// Bad input must end in tessera::Error; anything else (another exception, a crash, a sanitizer report, an abort from
// a failed round trip) is a bug. Called by the libFuzzer targets (fuzz_main.cpp) and, on the committed seed and
// regression inputs, by tests/hardening_test.cpp in the ordinary test suite.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <tessera/data/cifar10.hpp>
#include <tessera/data/image.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/nn/config.hpp>
#include <tessera/nn/vision_transformer.hpp>
#include <tessera/optim/adamw.hpp>
#include <tessera/optim/param_groups.hpp>

namespace tessera::fuzz {

// Stops the process when a property that must hold for every accepted input does not: libFuzzer reports the abort
// as a crash and keeps the input.
inline void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "tessera fuzz: property violated: %s\n", what);
    std::abort();
  }
}

inline std::vector<std::byte> to_bytes(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  return bytes;
}

// io/safetensors.hpp: parse, read every tensor, and check that writing the file again and reading that gives the
// same tensors.
inline void safetensors(const uint8_t* data, size_t size) {
  const io::SafetensorsFile file = io::SafetensorsFile::parse(to_bytes(data, size), "<fuzz input>");
  for (const auto& entry : file.entries()) {
    if (entry.data.shape().size() <= static_cast<size_t>(kMaxRank)) {
      const Tensor<float> tensor = file.tensor<float>(entry.name, io::IntegerDtypes::convert);
      require(tensor.numel() == entry.data.numel(), "tensor<float> keeps the element count");
    }
    if (!io::is_floating(entry.data.dtype())) (void)file.int64s(entry.name);
  }
  const io::SafetensorsFile again = io::SafetensorsFile::parse(io::serialize_safetensors(file.entries(), file.metadata()));
  require(again.size() == file.size() && again.metadata() == file.metadata(), "round trip keeps names and metadata");
  for (const auto& entry : file.entries()) {
    const io::TensorBytes& copy = again.entry(entry.name).data;
    require(copy.dtype() == entry.data.dtype() && copy.shape() == entry.data.shape(), "round trip keeps dtype, shape");
    require(std::equal(copy.bytes().begin(), copy.bytes().end(), entry.data.bytes().begin(), entry.data.bytes().end()),
            "round trip keeps the bytes");
  }
}

// The model the checkpoint seeds were saved from (tests/fuzz/make_inputs.cpp writes them).
inline nn::ViTConfig checkpoint_seed_config() {
  nn::ViTConfig c;
  c.img_size = 8;
  c.patch_size = 4;
  c.num_classes = 3;
  c.embed_dim = 8;
  c.depth = 1;
  c.num_heads = 2;
  c.mlp_ratio = 2.0;
  return c;
}

// io/checkpoint.hpp: the metadata (progress, RNG states, JSON), the stored ViTConfig, and — when it is the seeds'
// config — loading the model and AdamW state (optim.step.* included) into a fresh model.
inline void checkpoint(const uint8_t* data, size_t size) {
  const io::detail::CheckpointReader reader(io::SafetensorsFile::parse(to_bytes(data, size), "<fuzz input>"),
                                            "<fuzz input>");
  const io::CheckpointState state = reader.state();
  require(state.epoch >= 0 && state.global_step >= 0, "progress counters are non-negative");
  nn::ViTConfig config;
  try {
    config = nn::ViTConfig::from_json(reader.json("config"));
  } catch (const Error& e) {
    reader.fail("holds a config that is not a ViTConfig: ", e.what());
  }
  if (!(config == checkpoint_seed_config())) return;
  nn::VisionTransformer<float> model(config, 1);
  optim::AdamW<float> optimizer(optim::param_groups_weight_decay(model.named_parameters(), 0.05),
                                {.weight_decay = 0.05});
  (void)io::detail::load_checkpoint_from(reader, static_cast<nn::Module<float>&>(model), &optimizer);
}

// nn/config.hpp: ViTConfig::from_json_string, then what a model builder derives from the config, and a round trip.
inline void vit_config(const uint8_t* data, size_t size) {
  const nn::ViTConfig config =
      nn::ViTConfig::from_json_string(std::string(reinterpret_cast<const char*>(data), size));
  require(config.num_tokens() > 0 && config.mlp_hidden_dim() > 0 && config.head_dim() > 0, "derived sizes positive");
  require(config.patch_proj_kernel() > 0 && config.patch_proj_padding() >= 0, "patch projection sizes sane");
  require(nn::ViTConfig::from_json_string(config.to_json_string()) == config, "round trip keeps the config");
}

// The pixel cap of the image_decode target: a 1-KB JPEG may declare up to the default cap (16.8 megapixels) and stb
// then decodes that many pixels, which takes 10-20 s under ASan; a 1-megapixel cap keeps every run fast and exercises
// the same code.
inline constexpr int64_t kFuzzMaxImagePixels = int64_t{1} << 20;

// data/image.hpp: decode_image into 3 channels, and into 1 when that works.
inline void image_decode(const uint8_t* data, size_t size) {
  const data::DecodeOptions rgb{.channels = 3, .max_pixels = kFuzzMaxImagePixels};
  const data::Image image = data::decode_image(data, size, "<fuzz input>", rgb);
  require(image.height > 0 && image.width > 0 && image.height * image.width <= kFuzzMaxImagePixels,
          "decoded size within the cap");
  require(image.pixels.size() == static_cast<size_t>(image.numel()), "pixel count matches the size");
  const data::DecodeOptions grey_options{.channels = 1, .max_pixels = kFuzzMaxImagePixels};
  const data::Image grey = data::decode_image(data, size, "<fuzz input>", grey_options);
  require(grey.height == image.height && grey.width == image.width, "the size does not depend on the channels");
}

// data/cifar10.hpp: the class-name list (batches.meta.txt) reader, then, unless the bytes are such a list, the binary
// batch reader.
inline void cifar10_batch(const uint8_t* data, size_t size) {
  try {
    std::istringstream stream(std::string(reinterpret_cast<const char*>(data), size));
    const std::vector<std::string> names = data::detail::parse_cifar10_class_names(stream, "<fuzz input>");
    require(names.size() == static_cast<size_t>(data::kCifar10NumClasses), "ten class names");
    return;
  } catch (const Error&) {
    // not a list of ten names: read the bytes as a batch
  }
  std::vector<int64_t> labels;
  std::vector<uint8_t> pixels;
  data::detail::append_cifar10_batch(data, size, "<fuzz input>", labels, pixels);
  require(labels.size() * static_cast<size_t>(data::kCifar10RecordBytes) == size, "one label per record");
  require(pixels.size() == labels.size() * 3072, "3072 pixels per record");
  for (int64_t label : labels) require(label >= 0 && label < data::kCifar10NumClasses, "labels below 10");
}

using Entry = void (*)(const uint8_t*, size_t);

struct Target {
  const char* name;  // also the folder name under tests/fuzz/corpus and tests/fuzz/regressions
  Entry entry;
};

inline constexpr Target kTargets[] = {{"safetensors", safetensors},
                                      {"checkpoint", checkpoint},
                                      {"vit_config", vit_config},
                                      {"image_decode", image_decode},
                                      {"cifar10_batch", cifar10_batch}};

}  // namespace tessera::fuzz
