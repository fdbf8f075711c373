// Checkpoints: one safetensors file holding a model's parameters ("model.<timm name>"), its AdamW state
// ("optim.<AdamW key>") and the run's progress as metadata (config, epoch, step, schedule, RNG states, options).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/io/safetensors.hpp"
#include "tessera/nn/config.hpp"
#include "tessera/nn/json.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/pos_embed.hpp"
#include "tessera/nn/vision_transformer.hpp"
#include "tessera/optim/adamw.hpp"

namespace tessera::io {

// File layout (version 1):
//   tensors   "model.<name>"   every entry of model.state_dict(), timm's names behind the prefix, F32 (F64 for double)
//             "optim.<key>"    every entry of AdamW::state_dict(): exp_avg.<name>, exp_avg_sq.<name>, step.<name>
//   metadata  "format"         "tessera.checkpoint"
//             "format_version" "1"
//             "config"         the model's config as JSON (ViTConfig::to_json for a VisionTransformer)
//             "epoch"          epochs completed
//             "global_step"    optimizer steps taken
//             "rng"            JSON object: generator name -> {"state": [4 x 16 hex digits], "spare_normal": null or
//                              16 hex digits of the double's bits}
//             "schedule"       JSON object describing the learning-rate schedule (owner-defined)
//             "trainer"        JSON object: the options of the run and its progress inside an epoch (owner-defined)
// Every metadata value is compact JSON or an integer, and JSON objects keep sorted keys, so save -> load -> save
// gives the same bytes.
inline constexpr std::string_view kCheckpointFormat = "tessera.checkpoint";
inline constexpr int kCheckpointVersion = 1;
inline constexpr std::string_view kModelPrefix = "model.";
inline constexpr std::string_view kOptimizerPrefix = "optim.";

// What a checkpoint records besides tensors.
struct CheckpointState {
  int64_t epoch = 0;        // epochs completed
  int64_t global_step = 0;  // optimizer steps taken
  std::map<std::string, Generator::Snapshot> generators;
  nlohmann::json schedule = nlohmann::json::object();
  nlohmann::json trainer = nlohmann::json::object();
};

namespace detail {

inline std::string hex64(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

inline std::optional<uint64_t> parse_hex64(const nlohmann::json& value) {
  if (!value.is_string()) return std::nullopt;
  const std::string& text = value.get_ref<const std::string&>();
  if (text.size() != 16) return std::nullopt;
  uint64_t out = 0;
  for (char c : text) {
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (digit < 0) return std::nullopt;
    out = (out << 4) | static_cast<uint64_t>(digit);
  }
  return out;
}

inline nlohmann::json snapshot_to_json(const Generator::Snapshot& s) {
  nlohmann::json words = nlohmann::json::array();
  for (uint64_t word : s.state) words.push_back(hex64(word));
  uint64_t spare_bits = 0;
  std::memcpy(&spare_bits, &s.spare_normal, sizeof spare_bits);
  return {{"state", words}, {"spare_normal", s.has_spare_normal ? nlohmann::json(hex64(spare_bits)) : nlohmann::json()}};
}

inline std::optional<Generator::Snapshot> snapshot_from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("state") || !j.contains("spare_normal") || j.size() != 2) return std::nullopt;
  const nlohmann::json& words = j.at("state");
  if (!words.is_array() || words.size() != 4) return std::nullopt;
  Generator::Snapshot s{};
  for (size_t i = 0; i < 4; ++i) {
    const auto word = parse_hex64(words[i]);
    if (!word) return std::nullopt;
    s.state[i] = *word;
  }
  const nlohmann::json& spare = j.at("spare_normal");
  s.has_spare_normal = !spare.is_null();
  if (s.has_spare_normal) {
    const auto bits = parse_hex64(spare);
    if (!bits) return std::nullopt;
    std::memcpy(&s.spare_normal, &*bits, sizeof s.spare_normal);
  }
  return s;
}

// "key: checkpoint A, model B" for every top-level key whose values differ.
inline std::string describe_json_differences(const nlohmann::json& stored, const nlohmann::json& expected) {
  std::set<std::string> keys;
  for (const auto& [key, value] : stored.items()) keys.insert(key);
  for (const auto& [key, value] : expected.items()) keys.insert(key);
  std::ostringstream out;
  const char* separator = "";
  size_t shown = 0, differing = 0;
  for (const auto& key : keys) {
    const nlohmann::json a = stored.contains(key) ? stored.at(key) : nlohmann::json("(absent)");
    const nlohmann::json b = expected.contains(key) ? expected.at(key) : nlohmann::json("(absent)");
    if (a == b) continue;
    if (++differing > 8) continue;  // a message names the first eight, then counts the rest
    out << separator << clip(key) << ": checkpoint " << tessera::detail::json_excerpt(a) << ", model "
        << tessera::detail::json_excerpt(b);
    separator = "; ";
    ++shown;
  }
  if (differing > shown) out << "; and " << differing - shown << " more";
  return out.str();
}

class CheckpointReader {
 public:
  explicit CheckpointReader(const std::filesystem::path& path) : path_(path.string()), file_(read(path)) { check_format(); }
  // A file already read and validated as safetensors (SafetensorsFile::parse); `name` goes into messages.
  CheckpointReader(SafetensorsFile file, std::string name) : path_(std::move(name)), file_(std::move(file)) {
    check_format();
  }

  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    ::tessera::detail::fail("load_checkpoint: '", path_, "' ", std::forward<Parts>(parts)...);
  }

  const std::string& text(const std::string& key) const {
    const auto found = file_.metadata().find(key);
    if (found == file_.metadata().end()) fail("lacks the metadata entry \"", key, "\" (truncated or not written by tessera)");
    return found->second;
  }

  int64_t integer(const std::string& key) const {
    const std::string& value = text(key);
    size_t used = 0;
    int64_t out = 0;
    try {
      out = std::stoll(value, &used);
    } catch (const std::exception&) {  // not a number, or out of int64's range
      used = 0;
    }
    if (used == 0 || used != value.size() || out < 0)
      fail("has metadata \"", key, "\" = \"", clip(value), "\", expected a non-negative integer");
    return out;
  }

  // The metadata entry `key` parsed as JSON, nesting at most kMaxJsonDepth levels.
  nlohmann::json json(const std::string& key) const {
    return tessera::detail::parse_json(text(key), "load_checkpoint: '" + path_ + "' has metadata \"" + key + "\" that");
  }

 private:
  void check_format() const {
    const Metadata& meta = file_.metadata();
    const auto format = meta.find("format");
    if (format == meta.end() || format->second != kCheckpointFormat)
      fail("is not a tessera checkpoint (its metadata has no \"format\": \"", kCheckpointFormat,
           "\"); a file of plain model weights loads with io::load_model_weights");
    const int64_t version = integer("format_version");
    if (version < 1 || version > kCheckpointVersion)
      fail("has format_version ", version, ", this build of tessera reads versions 1 to ", kCheckpointVersion);
  }
  static std::string clip(const std::string& text) { return text.size() <= 80 ? text : text.substr(0, 80) + "..."; }

 public:
  CheckpointState state() const {
    CheckpointState s;
    s.epoch = integer("epoch");
    s.global_step = integer("global_step");
    s.schedule = json("schedule");
    s.trainer = json("trainer");
    if (!s.schedule.is_object()) fail("has metadata \"schedule\" that is not a JSON object");
    if (!s.trainer.is_object()) fail("has metadata \"trainer\" that is not a JSON object");
    const nlohmann::json rng = json("rng");
    if (!rng.is_object()) fail("has metadata \"rng\" that is not a JSON object");
    for (const auto& [name, value] : rng.items()) {
      const auto snapshot = snapshot_from_json(value);
      if (!snapshot) fail("has a malformed RNG state \"", clip(name), "\": ", tessera::detail::json_excerpt(value));
      s.generators.emplace(name, *snapshot);
    }
    return s;
  }

  // The tensors under `prefix`, prefix removed, in the file's order.
  template <class T>
  nn::StateDict<T> tensors(std::string_view prefix) const {
    nn::StateDict<T> out;
    for (const auto& entry : file_.entries())
      if (entry.name.compare(0, prefix.size(), prefix) == 0)
        out.insert(entry.name.substr(prefix.size()), file_.tensor<T>(entry.name));
    return out;
  }

  const std::string& path() const { return path_; }
  const SafetensorsFile& file() const { return file_; }

 private:
  static SafetensorsFile read(const std::filesystem::path& path) {
    try {
      return SafetensorsFile::read(path);
    } catch (const Error& e) {
      ::tessera::detail::fail("load_checkpoint: cannot read '", path.string(), "': ", e.what());
    }
  }

  std::string path_;
  SafetensorsFile file_;
};

// Throws unless every name of `dict` is a state entry of `model` with the same shape and none is missing.
template <class T>
void check_model_tensors(const CheckpointReader& reader, const nn::Module<T>& model, const nn::StateDict<T>& dict) {
  nn::LoadReport report;
  const nn::StateDict<T> own = model.state_dict();
  for (const auto& [name, tensor] : own) {
    const Tensor<T> stored = dict.find(name);
    if (!stored.defined()) report.missing.push_back(name);
    else if (!(stored.shape() == tensor.shape())) report.mismatched.push_back({name, tensor.shape(), stored.shape()});
  }
  for (const auto& [name, tensor] : dict)
    if (!own.contains(name)) report.unexpected.push_back(name);
  if (!report.ok()) reader.fail("does not fit the model (", model.type_name(), "): ", report.describe());
}

}  // namespace detail

// Writes `model` (and `optimizer`'s state when given) with `config` and `state` to `path`, atomically. `extra`
// tensors are written under their own full names (which must not start with "model." or "optim."), for the
// owner's use (the Trainer keeps the trained weights there when "model." holds their moving average).
template <class T>
void save_checkpoint(const std::filesystem::path& path, const nn::Module<T>& model, const nlohmann::json& config,
                     const std::type_identity_t<optim::AdamW<T>>* optimizer, const CheckpointState& state,
                     const std::vector<std::pair<std::string, Tensor<T>>>& extra = {}) {
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, tensor] : model.state_dict())
    entries.push_back({std::string(kModelPrefix) + name, TensorBytes(tensor)});
  if (optimizer)
    for (const auto& [name, tensor] : optimizer->state_dict())
      entries.push_back({std::string(kOptimizerPrefix) + name, TensorBytes(tensor)});
  for (const auto& [name, tensor] : extra) {
    TESSERA_CHECK(!name.starts_with(kModelPrefix) && !name.starts_with(kOptimizerPrefix), "save_checkpoint: '",
                  path.string(), "': the extra tensor name '", name, "' uses a reserved prefix");
    entries.push_back({name, TensorBytes(tensor)});
  }
  nlohmann::json rng = nlohmann::json::object();
  for (const auto& [name, snapshot] : state.generators) rng[name] = detail::snapshot_to_json(snapshot);
  TESSERA_CHECK(state.epoch >= 0 && state.global_step >= 0, "save_checkpoint: '", path.string(),
                "': epoch and global_step must be non-negative, got ", state.epoch, " and ", state.global_step);
  TESSERA_CHECK(state.schedule.is_object() && state.trainer.is_object(), "save_checkpoint: '", path.string(),
                "': schedule and trainer must be JSON objects");
  const Metadata metadata = {{"format", std::string(kCheckpointFormat)},
                             {"format_version", std::to_string(kCheckpointVersion)},
                             {"config", config.dump()},
                             {"epoch", std::to_string(state.epoch)},
                             {"global_step", std::to_string(state.global_step)},
                             {"rng", rng.dump()},
                             {"schedule", state.schedule.dump()},
                             {"trainer", state.trainer.dump()}};
  save_safetensors(path, entries, metadata);
}

template <class T>
void save_checkpoint(const std::filesystem::path& path, const nn::VisionTransformer<T>& model,
                     const std::type_identity_t<optim::AdamW<T>>* optimizer, const CheckpointState& state) {
  save_checkpoint(path, static_cast<const nn::Module<T>&>(model), model.config().to_json(), optimizer, state);
}

// Reads the progress of a checkpoint without loading any tensor into a model.
inline CheckpointState read_checkpoint_state(const std::filesystem::path& path) {
  return detail::CheckpointReader(path).state();
}

// The tensors of a checkpoint whose names start with `prefix`, prefix removed (for example the extra tensors of
// save_checkpoint).
template <class T>
nn::StateDict<T> read_checkpoint_tensors(const std::filesystem::path& path, std::string_view prefix) {
  return detail::CheckpointReader(path).tensors<T>(prefix);
}

// The model config stored in a checkpoint, as JSON.
inline nlohmann::json read_checkpoint_config(const std::filesystem::path& path) {
  return detail::CheckpointReader(path).json("config");
}

// The ViTConfig stored in a checkpoint: what to build before load_checkpoint.
inline nn::ViTConfig read_checkpoint_vit_config(const std::filesystem::path& path) {
  const detail::CheckpointReader reader(path);
  try {
    return nn::ViTConfig::from_json(reader.json("config"));
  } catch (const Error& e) {
    reader.fail("holds a config that is not a ViTConfig: ", e.what());
  }
}

namespace detail {

template <class T>
CheckpointState load_checkpoint_from(const CheckpointReader& reader, nn::Module<T>& model, optim::AdamW<T>* optimizer) {
  CheckpointState state = reader.state();
  const nn::StateDict<T> weights = reader.tensors<T>(kModelPrefix);
  check_model_tensors(reader, model, weights);
  if (optimizer) {
    const nn::StateDict<T> optimizer_state = reader.tensors<T>(kOptimizerPrefix);
    if (optimizer_state.empty() && state.global_step > 0)
      reader.fail("holds no optimizer state (no \"", kOptimizerPrefix, "\" tensors) after ", state.global_step,
                  " steps");
    try {
      optimizer->load_state_dict(optimizer_state);
    } catch (const Error& e) {
      reader.fail("has optimizer state that does not fit the optimizer: ", e.what());
    }
  }
  model.load_state_dict(weights, true);
  return state;
}

}  // namespace detail

// Loads `path` into `model` (and `optimizer` when given) and returns the recorded progress. The stored config must
// equal `config` and the tensors must fit the model and the optimizer exactly; everything is checked before the
// model or the optimizer changes. Errors are tessera::Error naming the file.
template <class T>
CheckpointState load_checkpoint(const std::filesystem::path& path, nn::Module<T>& model, const nlohmann::json& config,
                                std::type_identity_t<optim::AdamW<T>>* optimizer) {
  const detail::CheckpointReader reader(path);
  const nlohmann::json stored = reader.json("config");
  if (stored != config)
    reader.fail("was saved from a different model config: ", detail::describe_json_differences(stored, config));
  return detail::load_checkpoint_from(reader, model, optimizer);
}

// The same for a VisionTransformer: the stored ViTConfig must equal model.config() (fields left out of the stored
// JSON take timm's defaults).
template <class T>
CheckpointState load_checkpoint(const std::filesystem::path& path, nn::VisionTransformer<T>& model,
                                std::type_identity_t<optim::AdamW<T>>* optimizer) {
  const detail::CheckpointReader reader(path);
  nn::ViTConfig stored;
  try {
    stored = nn::ViTConfig::from_json(reader.json("config"));
  } catch (const Error& e) {
    reader.fail("holds a config that is not a ViTConfig: ", e.what());
  }
  if (!(stored == model.config()))
    reader.fail("was saved from a different model config: ",
                detail::describe_json_differences(stored.to_json(), model.config().to_json()));
  return detail::load_checkpoint_from(reader, static_cast<nn::Module<T>&>(model), optimizer);
}

namespace detail {

// The tensors of a weights file as a state dict with the model's names: a tessera checkpoint's "model." tensors, or
// every tensor of a plain file (timm / Hugging Face safetensors) with leading "module." (DataParallel) and "model."
// (wrapper) prefixes removed. Adds a note to `report` for each prefix removed.
template <class T>
nn::StateDict<T> read_weights_dict(const std::filesystem::path& path, nn::LoadReport& report) {
  SafetensorsFile file = [&] {
    try {
      return SafetensorsFile::read(path);
    } catch (const Error& e) {
      ::tessera::detail::fail("load_model_weights: cannot read '", path.string(), "': ", e.what());
    }
  }();
  const auto format = file.metadata().find("format");
  const bool checkpoint = format != file.metadata().end() && format->second == kCheckpointFormat;
  nn::StateDict<T> dict;
  std::map<std::string, int64_t> stripped;  // prefix -> how many names had it
  std::string integers;
  for (const auto& entry : file.entries()) {
    std::string_view name = entry.name;
    if (checkpoint) {
      if (!name.starts_with(kModelPrefix)) continue;
      name.remove_prefix(kModelPrefix.size());
    } else {
      for (bool again = true; again;) {
        again = false;
        for (std::string_view prefix : {std::string_view("module."), std::string_view("model.")})
          if (name.starts_with(prefix)) {
            name.remove_prefix(prefix.size());
            ++stripped[std::string(prefix)];
            again = true;
          }
      }
    }
    // BatchNorm's num_batches_tracked is an integer buffer (I64 in PyTorch), a floating-point one in tessera.
    const bool batch_count = name.ends_with("num_batches_tracked");
    if (!is_floating(entry.data.dtype()) && !batch_count) {  // e.g. a step counter: no parameter is an integer
      integers += " " + entry.name;
      continue;
    }
    dict.insert(std::string(name),
                file.tensor<T>(entry.name, batch_count ? IntegerDtypes::convert : IntegerDtypes::reject));
  }
  if (!integers.empty()) report.notes.push_back("ignored integer tensors:" + integers);
  for (const auto& [prefix, count] : stripped)
    report.notes.push_back("removed the prefix '" + prefix + "' from " + std::to_string(count) + " names");
  return dict;
}

// Loads `dict` into `model` except the names matching a glob of `skip`, which keep their values and are listed in
// a note instead of as missing.
template <class T>
nn::LoadReport load_weights_dict(const std::filesystem::path& path, nn::Module<T>& model, const nn::StateDict<T>& dict,
                                 nn::LoadReport notes, bool strict, const std::vector<std::string>& skip) {
  TESSERA_CHECK(!strict || skip.empty(), "load_model_weights: skipping names needs strict = false");
  const auto skipped = [&](const std::string& name) {
    return std::any_of(skip.begin(), skip.end(), [&](const std::string& p) { return nn::glob_match(p, name); });
  };
  nn::StateDict<T> kept;
  for (const auto& [name, tensor] : dict)
    if (!skipped(name)) kept.insert(name, tensor);
  nn::LoadReport report;
  try {
    report = model.load_state_dict(kept, strict);
  } catch (const Error& e) {
    ::tessera::detail::fail("load_model_weights: '", path.string(), "': ", e.what());
  }
  report.notes = std::move(notes.notes);
  std::string left;
  std::erase_if(report.missing, [&](const std::string& name) {
    if (!skipped(name)) return false;
    left += " " + name;
    return true;
  });
  if (!left.empty()) report.notes.push_back("kept as initialised (skipped):" + left);
  return report;
}

}  // namespace detail

// Copies model weights from a checkpoint ("model." tensors) or from a plain file of weights with timm's names (a
// timm or Hugging Face safetensors; "module." / "model." prefixes are removed) into `model`. strict: every model
// tensor must be there with its shape and nothing else; not strict: the matching tensors are copied and the report
// lists the rest (e.g. a head of another size, for fine-tuning) — print report.summary() to show it. Names matching
// a glob of `skip` (not strict only; e.g. "head.*" for a new head) are not loaded.
template <class T>
nn::LoadReport load_model_weights(const std::filesystem::path& path, nn::Module<T>& model, bool strict = true,
                                  const std::vector<std::string>& skip = {}) {
  nn::LoadReport notes;
  const nn::StateDict<T> dict = detail::read_weights_dict<T>(path, notes);
  return detail::load_weights_dict(path, model, dict, std::move(notes), strict, skip);
}

// The same for a VisionTransformer, which also takes weights trained at another patch grid: a pos_embed of another
// grid is resampled to the model's (bicubic, as timm's resample_abs_pos_embed; the class token's position is kept).
// A patch_embed.proj.weight of another patch size is not resampled: it is reported as a shape mismatch.
template <class T>
nn::LoadReport load_model_weights(const std::filesystem::path& path, nn::VisionTransformer<T>& model,
                                  bool strict = true, const std::vector<std::string>& skip = {}) {
  nn::LoadReport notes;
  nn::StateDict<T> dict = detail::read_weights_dict<T>(path, notes);
  const Tensor<T> old_pos_embed = dict.find("pos_embed");
  try {
    if (nn::resample_pos_embed_in_state_dict(dict, model.config()))
      notes.notes.push_back("resampled pos_embed from " +
                            std::to_string(old_pos_embed.size(1) - model.config().num_prefix_tokens()) +
                            " patch positions to the model's " + std::to_string(model.config().grid_size()) + "x" +
                            std::to_string(model.config().grid_size()) + " grid" +
                            (model.config().pos_embed == "sincos" ? " (sin-cos table recomputed)" : " (bicubic)"));
  } catch (const Error& e) {
    if (strict) ::tessera::detail::fail("load_model_weights: '", path.string(), "': ", e.what());
    // Not strict: a pos_embed that cannot be resampled (another width) stays for load_state_dict to report.
  }
  return detail::load_weights_dict(path, static_cast<nn::Module<T>&>(model), dict, std::move(notes), strict, skip);
}

}  // namespace tessera::io
