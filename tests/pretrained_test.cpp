// Loading pretrained weights for fine-tuning: the shared timm fixture's parameters into a model with another number
// of classes (everything but the head loads, the head is reported as a shape mismatch, the features are the
// pretrained ones), "module." / "model." prefixes, pos_embed resampled to another grid, and strict-mode errors.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/io/checkpoint.hpp>
#include <tessera/io/safetensors.hpp>
#include <tessera/nn/nn.hpp>
#include <tessera/nn/pos_embed.hpp>

using namespace tessera;
namespace fs = std::filesystem;

namespace {

using test::check_error;

const std::string kFixture = std::string(TESSERA_SHARED_DIR) + "/fixtures/timm_vit_p4_d96.safetensors";

struct Fixture {
  nn::ViTConfig config;
  nn::StateDict<float> params;  // the "param." tensors with the prefix removed
  Tensor<float> input, logits;
};

Fixture read_fixture() {
  const io::SafetensorsFile file = io::SafetensorsFile::read(kFixture);
  Fixture f;
  f.config = nn::ViTConfig::from_json_string(file.metadata().at("config"));
  for (const auto& name : file.names())
    if (name.rfind("param.", 0) == 0) f.params.insert(name.substr(6), file.tensor<float>(name));
  f.input = file.tensor<float>("input");
  f.logits = file.tensor<float>("logits");
  return f;
}

double max_abs_difference(const Tensor<float>& a, const Tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
  return worst;
}

std::vector<std::string> sorted(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return names;
}

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("tessera_pretrained_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes the dict's tensors to `path` with `prefix` before every name, as a plain (non-checkpoint) weights file.
void write_weights(const fs::path& path, const nn::StateDict<float>& dict, const std::string& prefix) {
  std::vector<std::pair<std::string, Tensor<float>>> named;
  for (const auto& [name, tensor] : dict) named.emplace_back(prefix + name, tensor);
  io::save_safetensors(path, named);
}

}  // namespace

TEST_CASE("the fixture's parameters load into a 7-class model: all but the head, whose shapes are reported") {
  const Fixture f = read_fixture();
  REQUIRE(f.config.num_classes == 10);
  nn::VisionTransformer<float> ten(f.config, 0);
  ten.eval();
  REQUIRE(ten.load_state_dict(f.params, true).ok());
  // The 10-class model reproduces the fixture's logits (the parity test checks much more).
  CHECK(max_abs_difference(ten(f.input), f.logits) < 1e-4);

  nn::ViTConfig seven_config = f.config;
  seven_config.num_classes = 7;
  nn::VisionTransformer<float> seven(seven_config, 1);
  seven.eval();
  const Tensor<float> head_before = seven.head.weight.clone();
  const nn::LoadReport report = seven.load_state_dict(f.params, false);

  CHECK(report.missing.empty());
  CHECK(report.unexpected.empty());
  REQUIRE(report.mismatched.size() == 2);
  CHECK(report.mismatched[0].name == "head.weight");
  CHECK(report.mismatched[0].expected == Shape{7, f.config.embed_dim});
  CHECK(report.mismatched[0].actual == Shape{10, f.config.embed_dim});
  CHECK(report.mismatched[1].name == "head.bias");
  CHECK(report.mismatched[1].expected == Shape{7});
  CHECK(report.mismatched[1].actual == Shape{10});
  std::vector<std::string> expected_loaded;
  for (const auto& [name, tensor] : f.params)
    if (name != "head.weight" && name != "head.bias") expected_loaded.push_back(name);
  CHECK(sorted(report.loaded) == sorted(expected_loaded));
  CHECK(max_abs_difference(seven.head.weight, head_before) == 0.0);  // the head keeps its own init

  const std::string summary = report.summary();
  CHECK(summary.find("loaded " + std::to_string(expected_loaded.size()) + " tensors") != std::string::npos);
  CHECK(summary.find("head.weight expected (7, 96) got (10, 96)") != std::string::npos);

  // Same class-token features after the final norm, bit for bit: only the head differs.
  CHECK(max_abs_difference(seven.forward_features(f.input), ten.forward_features(f.input)) == 0.0);
}

TEST_CASE("load_model_weights removes module. and model. prefixes and says so") {
  const Fixture f = read_fixture();
  const fs::path dir = temp_dir("prefix");
  for (const std::string prefix : {"", "module.", "model.", "module.model."}) {
    INFO("prefix '" << prefix << "'");
    write_weights(dir / "w.safetensors", f.params, prefix);
    nn::VisionTransformer<float> model(f.config, 3);
    const nn::LoadReport report = io::load_model_weights(dir / "w.safetensors", model, true);
    CHECK(report.ok());
    CHECK(report.loaded.size() == f.params.size());
    CHECK(report.notes.size() == (prefix == "module.model." ? 2u : prefix.empty() ? 0u : 1u));
    if (!prefix.empty()) CHECK(report.summary().find("removed the prefix") != std::string::npos);
    model.eval();
    CHECK(max_abs_difference(model(f.input), f.logits) < 1e-4);
  }
  fs::remove_all(dir);
}

TEST_CASE("load_model_weights into a model of another grid resamples pos_embed; strict still checks the rest") {
  const Fixture f = read_fixture();
  const fs::path dir = temp_dir("grid");
  write_weights(dir / "w.safetensors", f.params, "");

  nn::ViTConfig bigger = f.config;  // 32/4 = 8x8 -> 48/4 = 12x12
  bigger.img_size = 48;
  nn::VisionTransformer<float> model(bigger, 5);
  const nn::LoadReport report = io::load_model_weights(dir / "w.safetensors", model, true);
  CHECK(report.ok());
  REQUIRE(report.notes.size() == 1);
  CHECK(report.notes[0].find("resampled pos_embed from 64 patch positions to the model's 12x12 grid") !=
        std::string::npos);
  const Tensor<float> expected = nn::resample_abs_pos_embed(f.params.at("pos_embed"), nn::GridSize{12, 12});
  CHECK(max_abs_difference(model.pos_embed, expected) == 0.0);

  // Another patch size: the patch projection cannot be reused; strict names it, non-strict reports it.
  nn::ViTConfig other_patch = f.config;
  other_patch.patch_size = 8;  // 32/8 = 4x4
  nn::VisionTransformer<float> coarse(other_patch, 6);
  check_error([&] { io::load_model_weights(dir / "w.safetensors", coarse, true); },
              {"w.safetensors", "patch_embed.proj.weight"});
  const nn::LoadReport loose = io::load_model_weights(dir / "w.safetensors", coarse, false);
  REQUIRE(loose.mismatched.size() == 1);
  CHECK(loose.mismatched[0].name == "patch_embed.proj.weight");
  CHECK(loose.notes.size() == 1);  // pos_embed resampled 8x8 -> 4x4

  // A missing file is named.
  check_error([&] { io::load_model_weights(dir / "absent.safetensors", model, false); }, {"absent.safetensors"});
  fs::remove_all(dir);
}

TEST_CASE("load_model_weights with skip patterns leaves those tensors as initialised (a new head)") {
  const Fixture f = read_fixture();
  const fs::path dir = temp_dir("skip");
  write_weights(dir / "w.safetensors", f.params, "");
  nn::VisionTransformer<float> model(f.config, 7);
  const Tensor<float> head_before = model.head.weight.clone();
  const nn::LoadReport report = io::load_model_weights(dir / "w.safetensors", model, false, {"head.*"});
  CHECK(report.ok());
  CHECK(report.loaded.size() == f.params.size() - 2);
  REQUIRE(report.notes.size() == 1);
  CHECK(report.notes[0] == "kept as initialised (skipped): head.weight head.bias");
  CHECK(max_abs_difference(model.head.weight, head_before) == 0.0);
  CHECK(max_abs_difference(model.pos_embed, f.params.at("pos_embed")) == 0.0);
  check_error([&] { io::load_model_weights(dir / "w.safetensors", model, true, {"head.*"}); }, {"strict = false"});
  fs::remove_all(dir);
}
