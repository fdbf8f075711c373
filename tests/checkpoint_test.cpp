// Tests of io/checkpoint.hpp: what a checkpoint holds, save -> load -> save byte identity, exact restoration of model,
// optimizer and generators, and clear errors (naming the file) for truncated, corrupt and mismatching checkpoints.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <tessera/io/checkpoint.hpp>
#include <tessera/tessera.hpp>

#include "test_helpers.hpp"

namespace fs = std::filesystem;
using namespace tessera;

namespace {

using test::check_error;
using test::read_text;
using test::TempDir;
using test::write_text;

nn::ViTConfig tiny_config() { return test::tiny_vit_config(); }

using Model = nn::VisionTransformer<float>;

optim::AdamW<float> make_optimizer(const Model& model) {
  return optim::AdamW<float>(optim::param_groups_weight_decay(model.named_parameters(), 0.05), {.weight_decay = 0.05});
}

// Two AdamW steps on random data, so every parameter has optimizer state.
void train_two_steps(Model& model, optim::AdamW<float>& optimizer) {
  Generator gen(7);
  const auto images = Tensor<float>::normal(Shape{4, 3, 8, 8}, 0.0f, 1.0f, gen);
  const std::vector<int64_t> labels = {0, 2, 1, 2};
  for (int i = 0; i < 2; ++i) {
    optimizer.zero_grad();
    ops::cross_entropy(model.forward(images), labels, 0.1).backward();
    optimizer.step();
  }
}

io::CheckpointState sample_state() {
  io::CheckpointState state;
  state.epoch = 3;
  state.global_step = 123;
  Generator gen(99);
  gen.normal();  // leaves a spare normal, so the snapshot has every field set
  state.generators.emplace("model", gen.snapshot());
  state.generators.emplace("other", Generator(5).snapshot());
  state.schedule = {{"base_lr", 1e-3}, {"position", 123}, {"lr", 0.1 + 0.2}};
  state.trainer = {{"epoch_loss_sum", 1.0 / 3.0}, {"recipe", {{"seed", 18446744073709551615ull}}}};
  return state;
}

void check_same_tensors(const nn::StateDict<float>& a, const nn::StateDict<float>& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [key, tensor] : a) {
    const auto& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
    const Tensor<float> other = b.find(name);
    REQUIRE_MESSAGE(other.defined(), name);
    REQUIRE(other.shape() == tensor.shape());
    CHECK_MESSAGE(std::memcmp(other.data(), tensor.data(), sizeof(float) * static_cast<size_t>(tensor.numel())) == 0, name);
  }
}

}  // namespace

TEST_CASE("a checkpoint holds model. and optim. tensors and the documented metadata") {
  TempDir dir;
  Model model(tiny_config(), 1);
  auto optimizer = make_optimizer(model);
  train_two_steps(model, optimizer);
  io::save_checkpoint(dir / "a.safetensors", model, &optimizer, sample_state());

  const auto file = io::SafetensorsFile::read(dir / "a.safetensors");
  int64_t model_tensors = 0, optimizer_tensors = 0;
  for (const auto& name : file.names()) {
    if (name.rfind("model.", 0) == 0) ++model_tensors;
    else if (name.rfind("optim.", 0) == 0) ++optimizer_tensors;
    else FAIL("unexpected tensor " << name);
  }
  CHECK(model_tensors == static_cast<int64_t>(model.state_dict().size()));
  CHECK(optimizer_tensors == 3 * static_cast<int64_t>(model.named_parameters().size()));
  CHECK(file.contains("model.blocks.1.attn.qkv.weight"));
  CHECK(file.contains("optim.exp_avg_sq.pos_embed"));
  const auto& meta = file.metadata();
  CHECK(meta.at("format") == "tessera.checkpoint");
  CHECK(meta.at("format_version") == "1");
  CHECK(meta.at("epoch") == "3");
  CHECK(meta.at("global_step") == "123");
  CHECK(nn::ViTConfig::from_json_string(meta.at("config")) == tiny_config());
  CHECK(nlohmann::json::parse(meta.at("rng")).contains("model"));
  CHECK(nlohmann::json::parse(meta.at("schedule")).at("position") == 123);
  CHECK(nlohmann::json::parse(meta.at("trainer")).at("recipe").at("seed") == 18446744073709551615ull);
  CHECK(io::read_checkpoint_vit_config(dir / "a.safetensors") == tiny_config());
  std::vector<fs::path> leftovers;
  for (const auto& entry : fs::directory_iterator(dir.path)) leftovers.push_back(entry.path().filename());
  CHECK(leftovers == std::vector<fs::path>{"a.safetensors"});  // no temporary file left behind
}

TEST_CASE("save -> load -> save is byte-identical and restores model, optimizer and generators exactly") {
  TempDir dir;
  Model model(tiny_config(), 1);
  auto optimizer = make_optimizer(model);
  train_two_steps(model, optimizer);
  const io::CheckpointState saved = sample_state();
  io::save_checkpoint(dir / "a.safetensors", model, &optimizer, saved);

  Model restored(tiny_config(), 2);  // another init: everything must come from the file
  auto restored_optimizer = make_optimizer(restored);
  const io::CheckpointState loaded = io::load_checkpoint(dir / "a.safetensors", restored, &restored_optimizer);
  check_same_tensors(model.state_dict(), restored.state_dict());
  check_same_tensors(optimizer.state_dict(), restored_optimizer.state_dict());
  CHECK(loaded.epoch == saved.epoch);
  CHECK(loaded.global_step == saved.global_step);
  CHECK(loaded.schedule == saved.schedule);
  CHECK(loaded.trainer == saved.trainer);
  REQUIRE(loaded.generators.size() == 2);
  for (const auto& [name, snapshot] : saved.generators) {
    const auto& other = loaded.generators.at(name);
    CHECK(other.state == snapshot.state);
    CHECK(other.has_spare_normal == snapshot.has_spare_normal);
    CHECK(std::memcmp(&other.spare_normal, &snapshot.spare_normal, sizeof(double)) == 0);
  }
  Generator a(1), b(2);
  a.restore(saved.generators.at("model"));
  b.restore(loaded.generators.at("model"));
  for (int i = 0; i < 5; ++i) CHECK(a.normal() == b.normal());

  io::save_checkpoint(dir / "b.safetensors", restored, &restored_optimizer, loaded);
  CHECK(read_text(dir / "a.safetensors") == read_text(dir / "b.safetensors"));

  // The restored optimizer continues exactly as the original.
  train_two_steps(model, optimizer);
  train_two_steps(restored, restored_optimizer);
  check_same_tensors(model.state_dict(), restored.state_dict());
}

TEST_CASE("a checkpoint without optimizer state loads into a model alone") {
  TempDir dir;
  Model model(tiny_config(), 1);
  io::save_checkpoint(dir / "m.safetensors", model, nullptr, {});
  Model other(tiny_config(), 2);
  io::load_checkpoint(dir / "m.safetensors", other, nullptr);
  check_same_tensors(model.state_dict(), other.state_dict());
  auto optimizer = make_optimizer(other);
  io::load_checkpoint(dir / "m.safetensors", other, &optimizer);  // step 0: no state is expected
  CHECK(optimizer.state_dict().empty());

  io::CheckpointState later;
  later.global_step = 10;
  io::save_checkpoint(dir / "n.safetensors", model, nullptr, later);
  check_error([&] { io::load_checkpoint(dir / "n.safetensors", other, &optimizer); },
              {"n.safetensors", "no optimizer state"});
}

TEST_CASE("truncated and corrupt checkpoints are errors naming the file") {
  TempDir dir;
  Model model(tiny_config(), 1);
  auto optimizer = make_optimizer(model);
  train_two_steps(model, optimizer);
  io::save_checkpoint(dir / "good.safetensors", model, &optimizer, sample_state());
  const std::string bytes = read_text(dir / "good.safetensors");

  for (size_t keep : {size_t{0}, size_t{5}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    CAPTURE(keep);
    write_text(dir / "cut.safetensors", bytes.substr(0, keep));
    Model target(tiny_config(), 3);
    auto target_optimizer = make_optimizer(target);
    check_error([&] { io::load_checkpoint(dir / "cut.safetensors", target, &target_optimizer); }, {"cut.safetensors"});
  }

  std::string corrupt = bytes;
  corrupt[10] = '\x01';  // inside the JSON header
  write_text(dir / "corrupt.safetensors", corrupt);
  check_error([&] { io::load_checkpoint(dir / "corrupt.safetensors", model, &optimizer); }, {"corrupt.safetensors"});

  check_error([&] { io::load_checkpoint(dir / "missing.safetensors", model, &optimizer); }, {"missing.safetensors"});
}

TEST_CASE("a checkpoint of another config is refused, naming the file and the differing fields") {
  TempDir dir;
  Model model(tiny_config(), 1);
  auto optimizer = make_optimizer(model);
  io::save_checkpoint(dir / "a.safetensors", model, &optimizer, {});

  nn::ViTConfig wider = tiny_config();
  wider.embed_dim = 12;
  wider.depth = 1;
  Model other(wider, 1);
  auto other_optimizer = make_optimizer(other);
  const auto before = other.state_dict().at("pos_embed").clone();
  check_error([&] { io::load_checkpoint(dir / "a.safetensors", other, &other_optimizer); },
              {"a.safetensors", "different model config", "embed_dim: checkpoint 8, model 12", "depth: checkpoint 2, model 1"});
  CHECK(std::memcmp(before.data(), other.state_dict().at("pos_embed").data(), sizeof(float) * before.numel()) == 0);

  // The generic overload compares the JSON config it is given.
  check_error([&] { io::load_checkpoint(dir / "a.safetensors", other, wider.to_json(), &other_optimizer); },
              {"a.safetensors", "different model config", "embed_dim"});
}

TEST_CASE("tensors that do not fit the model or the optimizer are refused before anything changes") {
  TempDir dir;
  Model model(tiny_config(), 1);
  auto optimizer = make_optimizer(model);
  train_two_steps(model, optimizer);
  io::save_checkpoint(dir / "a.safetensors", model, &optimizer, {});
  const auto file = io::SafetensorsFile::read(dir / "a.safetensors");

  // A file claiming the model's config but lacking a weight and holding an extra one.
  std::vector<io::SafetensorsEntry> entries;
  for (const auto& entry : file.entries())
    if (entry.name != "model.head.bias") entries.push_back(entry);
  entries.push_back({"model.extra", io::TensorBytes(Tensor<float>::zeros(Shape{2}))});
  io::save_safetensors(dir / "b.safetensors", entries, file.metadata());
  Model target(tiny_config(), 5);
  auto target_optimizer = make_optimizer(target);
  const auto before = target.state_dict().at("head.weight").clone();
  check_error([&] { io::load_checkpoint(dir / "b.safetensors", target, &target_optimizer); },
              {"b.safetensors", "does not fit the model", "head.bias", "extra"});
  CHECK(std::memcmp(before.data(), target.state_dict().at("head.weight").data(), sizeof(float) * before.numel()) == 0);

  // Optimizer state of a parameter the optimizer does not have: refused, the model keeps its weights.
  entries.clear();
  for (const auto& entry : file.entries()) entries.push_back(entry);
  entries.push_back({"optim.exp_avg.nothing", io::TensorBytes(Tensor<float>::zeros(Shape{2}))});
  io::save_safetensors(dir / "c.safetensors", entries, file.metadata());
  check_error([&] { io::load_checkpoint(dir / "c.safetensors", target, &target_optimizer); },
              {"c.safetensors", "optimizer", "nothing"});
  CHECK(std::memcmp(before.data(), target.state_dict().at("head.weight").data(), sizeof(float) * before.numel()) == 0);
  CHECK(target_optimizer.state_dict().empty());
}

TEST_CASE("metadata problems: not a checkpoint, newer version, malformed fields") {
  TempDir dir;
  Model model(tiny_config(), 1);
  io::save_safetensors(dir / "plain.safetensors", model.named_parameters());
  check_error([&] { io::load_checkpoint(dir / "plain.safetensors", model, nullptr); },
              {"plain.safetensors", "not a tessera checkpoint", "load_model_weights"});

  io::save_checkpoint(dir / "a.safetensors", model, nullptr, sample_state());
  const auto file = io::SafetensorsFile::read(dir / "a.safetensors");
  const auto with = [&](const std::string& key, const std::string& value) {
    io::Metadata meta = file.metadata();
    if (value.empty()) meta.erase(key);
    else meta[key] = value;
    io::save_safetensors(dir / "m.safetensors", file.entries(), meta);
  };
  with("format_version", "2");
  check_error([&] { io::load_checkpoint(dir / "m.safetensors", model, nullptr); }, {"m.safetensors", "format_version 2"});
  with("epoch", "");
  check_error([&] { io::load_checkpoint(dir / "m.safetensors", model, nullptr); }, {"m.safetensors", "\"epoch\""});
  with("global_step", "12x");
  check_error([&] { io::load_checkpoint(dir / "m.safetensors", model, nullptr); }, {"m.safetensors", "global_step", "12x"});
  with("rng", "{\"model\": {\"state\": [\"00\"], \"spare_normal\": null}}");
  check_error([&] { io::load_checkpoint(dir / "m.safetensors", model, nullptr); }, {"m.safetensors", "RNG state"});
  with("config", "{not json");
  check_error([&] { io::load_checkpoint(dir / "m.safetensors", model, nullptr); }, {"m.safetensors", "\"config\"", "JSON"});
  check_error([&] { io::read_checkpoint_state(dir / "nowhere" / "x.safetensors"); }, {"x.safetensors"});
}

TEST_CASE("load_model_weights reads checkpoints and plain timm-named files, strictly or not") {
  TempDir dir;
  Model model(tiny_config(), 1);
  auto optimizer = make_optimizer(model);
  train_two_steps(model, optimizer);
  io::save_checkpoint(dir / "ckpt.safetensors", model, &optimizer, {});
  io::save_safetensors(dir / "plain.safetensors", model.named_parameters());

  for (const char* name : {"ckpt.safetensors", "plain.safetensors"}) {
    CAPTURE(name);
    Model other(tiny_config(), 2);
    CHECK(io::load_model_weights(dir / name, other).ok());
    check_same_tensors(model.state_dict(), other.state_dict());
  }

  nn::ViTConfig five_classes = tiny_config();
  five_classes.num_classes = 5;
  Model head5(five_classes, 3);
  check_error([&] { io::load_model_weights(dir / "ckpt.safetensors", head5); }, {"ckpt.safetensors", "head.weight"});
  const nn::LoadReport report = io::load_model_weights(dir / "ckpt.safetensors", head5, false);
  REQUIRE(report.mismatched.size() == 2);
  CHECK(report.mismatched[0].name == "head.weight");
  CHECK(std::memcmp(head5.state_dict().at("pos_embed").data(), model.state_dict().at("pos_embed").data(),
                    sizeof(float) * static_cast<size_t>(model.pos_embed.numel())) == 0);
}
