// Writes the seed corpora (tests/fuzz/corpus/<target>/) and the regression inputs (tests/fuzz/regressions/<target>/)
// of every fuzz target except the images (make_image_inputs.py); the two that start like images as hex text.
// Deterministic: rerunning it rewrites the same bytes.
//   cmake --build <dir> --target fuzz_make_inputs && <dir>/tests/fuzz/fuzz_make_inputs tests/fuzz
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <tessera/tessera.hpp>

#include "fuzz_entries.hpp"

namespace fs = std::filesystem;
using namespace tessera;

namespace {

fs::path root;

void write(const std::string& folder, const std::string& name, const std::string& bytes) {
  const fs::path dir = root / folder;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.good()) throw Error("cannot write " + (dir / name).string());
}

// Writes `bytes` as hex text (64 bytes a line) to <name>.hex: inputs that start like an image are kept this way, so
// that the repository holds no image files (tests/hardening_test.cpp and scripts/run_fuzzers.sh decode them).
void write_hex(const std::string& folder, const std::string& name, const std::string& bytes) {
  std::string text;
  for (size_t i = 0; i < bytes.size(); ++i) {
    static constexpr char digits[] = "0123456789abcdef";
    const auto byte = static_cast<unsigned char>(bytes[i]);
    text += digits[byte >> 4];
    text += digits[byte & 15];
    if (i % 64 == 63 || i + 1 == bytes.size()) text += '\n';
  }
  write(folder, name + ".hex", text);
}

void write(const std::string& folder, const std::string& name, const std::vector<std::byte>& bytes) {
  write(folder, name, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::vector<std::byte> raw(std::initializer_list<unsigned> values) {
  std::vector<std::byte> out;
  for (unsigned v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

std::string nested(const std::string& open, const std::string& close, int levels, const std::string& inside = "") {
  std::string text;
  for (int i = 0; i < levels; ++i) text += open;
  text += inside;
  for (int i = 0; i < levels; ++i) text += close;
  return text;
}

// A safetensors file: the 8-byte little-endian length, the header, the data.
std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xFF);
  return out + header + data;
}

void safetensors_inputs() {
  Generator gen(3);
  const auto f32 = Tensor<float>::uniform(Shape{2, 3}, -1.0f, 1.0f, gen);
  write("corpus/safetensors", "f32_2x3.safetensors", io::serialize_safetensors({{"weight", io::TensorBytes(f32)}}));
  const auto f64 = Tensor<double>::uniform(Shape{1}, -1.0, 1.0, gen);
  const auto small = Tensor<float>::uniform(Shape{2, 2}, -4.0f, 4.0f, gen);
  std::vector<io::SafetensorsEntry> mixed = {
      {"double", io::TensorBytes(f64)},
      {"half", io::TensorBytes(small, io::Dtype::F16)},
      {"bfloat", io::TensorBytes(small, io::Dtype::BF16)},
      {"count", io::TensorBytes(std::vector<int64_t>{7, -2})},
      {"int32", io::TensorBytes(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {3, 2})},
      {"bytes", io::TensorBytes(std::vector<uint8_t>{0, 1, 255})},
      {"flags", io::TensorBytes(io::Dtype::BOOL, {2}, raw({0, 1}))},
      {"u64", io::TensorBytes(io::Dtype::U64, {1}, raw({1, 0, 0, 0, 0, 0, 0, 0}))},
      {"empty", io::TensorBytes(io::Dtype::F32, {0, 3}, std::vector<std::byte>{})},
      {"scalar", io::TensorBytes(io::Dtype::F32, {}, raw({0, 0, 128, 63}))}};
  write("corpus/safetensors", "mixed.safetensors", io::serialize_safetensors(mixed, {{"format", "pt"}, {"note", "é"}}));
  write("corpus/safetensors", "no_tensors.safetensors", io::serialize_safetensors({}));

  // The issue's 84-byte file: a shape whose non-zero dimensions overflow int64 though it has no elements.
  write("regressions/safetensors", "shape_overflow_with_zero.safetensors",
        safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})"));
  write("regressions/safetensors", "shape_overflow_zero_first.safetensors",
        safetensors_bytes(R"({"t":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})"));
  // A header nested 100,000 levels deep (about 200 KB, far under the 100 MB header limit).
  write("regressions/safetensors", "nested_100000_levels.safetensors",
        safetensors_bytes("{\"a\":" + nested("[", "]", 100000) + "}"));
  write("regressions/safetensors", "nested_metadata.safetensors",
        safetensors_bytes("{\"__metadata__\":{\"a\":" + nested("[", "]", 100000) + "}}"));
  // Not safetensors: the first bytes of a JPEG and of a PNG, read as an 8-byte header length.
  write_hex("regressions/safetensors", "jpeg.safetensors",
        std::string("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00", 20));
  write_hex("regressions/safetensors", "png.safetensors",
        std::string("\x89PNG\r\n\x1A\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00", 29));
}

// A checkpoint file rewritten: `edit_metadata` and `edit_tensor` change the metadata and tensors of `source`.
std::vector<std::byte> rewrite(const std::vector<std::byte>& source,
                               const std::function<void(io::Metadata&)>& edit_metadata,
                               const std::function<void(const std::string&, std::vector<std::byte>&)>& edit_tensor) {
  const io::SafetensorsFile file = io::SafetensorsFile::parse(source);
  io::Metadata metadata = file.metadata();
  edit_metadata(metadata);
  std::vector<io::SafetensorsEntry> entries;
  for (const auto& entry : file.entries()) {
    std::vector<std::byte> bytes(entry.data.bytes().begin(), entry.data.bytes().end());
    edit_tensor(entry.name, bytes);
    entries.push_back({entry.name, io::TensorBytes(entry.data.dtype(), entry.data.shape(), std::move(bytes))});
  }
  return io::serialize_safetensors(entries, metadata);
}

void checkpoint_inputs() {
  const nn::ViTConfig config = fuzz::checkpoint_seed_config();
  nn::VisionTransformer<float> model(config, 1);
  optim::AdamW<float> optimizer(optim::param_groups_weight_decay(model.named_parameters(), 0.05),
                                {.weight_decay = 0.05});
  Generator gen(7);
  const auto images = Tensor<float>::normal(Shape{2, 3, 8, 8}, 0.0f, 1.0f, gen);
  optimizer.zero_grad();
  ops::cross_entropy(model.forward(images), std::vector<int64_t>{0, 2}, 0.1).backward();
  optimizer.step();
  io::CheckpointState state;
  state.epoch = 1;
  state.global_step = 1;
  Generator rng(99);
  rng.normal();
  state.generators.emplace("data", rng.snapshot());
  state.schedule = {{"base_lr", 1e-3}, {"position", 1}};
  state.trainer = {{"epoch_loss_sum", 0.5}, {"recipe", {{"seed", 0}, {"flip", true}}}};
  const fs::path dir = root / "corpus/checkpoint";
  fs::create_directories(dir);
  io::save_checkpoint(dir / "tiny_adamw.safetensors", model, &optimizer, state);
  io::save_checkpoint(dir / "tiny_weights_only.safetensors", model, nullptr, io::CheckpointState{});

  std::ifstream in(dir / "tiny_adamw.safetensors", std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<std::byte> seed(reinterpret_cast<const std::byte*>(text.data()),
                                    reinterpret_cast<const std::byte*>(text.data()) + text.size());
  const auto keep_metadata = [](io::Metadata&) {};
  const auto keep_tensors = [](const std::string&, std::vector<std::byte>&) {};
  const auto config_with = [&](const std::string& key, const std::string& value) {
    return [=](io::Metadata& metadata) {
      nlohmann::json j = config.to_json();
      j.erase(key);
      std::string text = j.dump();
      text.insert(1, "\"" + key + "\":" + value + ",");
      metadata["config"] = text;
    };
  };
  write("regressions/checkpoint", "config_depth_1e50.safetensors", rewrite(seed, config_with("depth", "1e50"), keep_tensors));
  write("regressions/checkpoint", "config_mlp_ratio_1e300.safetensors",
        rewrite(seed, config_with("mlp_ratio", "1e300"), keep_tensors));
  write("regressions/checkpoint", "config_img_size_2e63.safetensors",
        rewrite(seed, config_with("img_size", "9223372036854775808"), keep_tensors));
  const auto step_value = [&](float value) {
    return [=](const std::string& name, std::vector<std::byte>& bytes) {
      if (name == "optim.step.head.bias") std::memcpy(bytes.data(), &value, sizeof value);
    };
  };
  write("regressions/checkpoint", "step_inf.safetensors",
        rewrite(seed, keep_metadata, step_value(std::numeric_limits<float>::infinity())));
  write("regressions/checkpoint", "step_1e30.safetensors", rewrite(seed, keep_metadata, step_value(1e30f)));
  write("regressions/checkpoint", "step_nan.safetensors",
        rewrite(seed, keep_metadata, step_value(std::numeric_limits<float>::quiet_NaN())));
  write("regressions/checkpoint", "trainer_nested_100000_levels.safetensors",
        rewrite(seed, [](io::Metadata& m) { m["trainer"] = "{\"a\":" + nested("[", "]", 100000) + "}"; }, keep_tensors));
  write("regressions/checkpoint", "config_nested_100000_levels.safetensors",
        rewrite(seed, config_with("stem_channels", nested("[", "]", 100000)), keep_tensors));
  write("regressions/checkpoint", "epoch_1e30.safetensors",
        rewrite(seed, [](io::Metadata& m) { m["epoch"] = "1000000000000000000000000000000"; }, keep_tensors));
}

void vit_config_inputs() {
  write("corpus/vit_config", "vit_cifar.json", nn::ViTConfig::vit_cifar().to_json_string());
  write("corpus/vit_config", "defaults.json", "{}");
  nn::ViTConfig stem = nn::ViTConfig::vit_cifar();
  stem.stem_channels = {16, 32};
  stem.stem_strides = {2, 1};
  stem.patch_kernel = 3;
  stem.class_token = false;
  stem.global_pool = "seqpool";
  stem.pos_embed = "sincos";
  stem.init_values = 1e-4;
  write("corpus/vit_config", "stem_seqpool.json", stem.to_json_string());
  write("corpus/vit_config", "timm_style.json",
        R"({"img_size": 224.0, "patch_size": 16, "fc_norm": null, "init_values": null, "weight_init": "jax"})");

  write("regressions/vit_config", "depth_1e50.json", R"({"depth":1e50})");
  write("regressions/vit_config", "mlp_ratio_1e300.json", R"({"mlp_ratio":1e300})");
  write("regressions/vit_config", "depth_2e63.json", R"({"depth":9223372036854775808})");
  write("regressions/vit_config", "depth_minus_1e19.json", R"({"depth":-1e19})");
  write("regressions/vit_config", "img_size_grid_overflow.json", R"({"img_size":4611686018427387904,"patch_size":1})");
  write("regressions/vit_config", "stem_100_stages.json",
        "{\"stem_channels\":[" + [] {
          std::string s;
          for (int i = 0; i < 100; ++i) s += (i ? ",1" : "1");
          return s;
        }() + "]}");
  write("regressions/vit_config", "nested_100000_levels.json", "{\"depth\":" + nested("[", "]", 100000) + "}");
  write("regressions/vit_config", "nested_objects_1000_levels.json", nested("{\"a\":", "}", 1000, "1"));
}

void cifar10_inputs() {
  std::string batch;
  for (int record = 0; record < 2; ++record) {
    batch += static_cast<char>(record == 0 ? 3 : 9);
    for (int i = 0; i < 3072; ++i) batch += static_cast<char>((i * 7 + record * 31) & 0xFF);
  }
  write("corpus/cifar10_batch", "two_records.bin", batch);
  write("corpus/cifar10_batch", "batches.meta.txt",
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
  std::string bad_label = batch;
  bad_label[3073] = 10;
  write("regressions/cifar10_batch", "label_10.bin", bad_label);
  write("regressions/cifar10_batch", "truncated.bin", batch.substr(0, 3072));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <tests/fuzz folder>\n", argv[0]);
    return 2;
  }
  root = argv[1];
  safetensors_inputs();
  checkpoint_inputs();
  vit_config_inputs();
  cifar10_inputs();
  return 0;
}
