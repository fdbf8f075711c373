// nn::Module<T>: the base of every layer — named parameters and buffers (timm's state-dict names), submodules,
// train/eval, freezing by glob pattern, and state_dict / load_state_dict with a report of what matched.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tessera/autograd/engine.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::nn {

// An ordered name -> tensor map: iteration follows insertion order, lookup is by name.
template <class T>
class StateDict {
 public:
  using Entry = std::pair<std::string, Tensor<T>>;

  // Adds `name`, or replaces its tensor (keeping its place) when it is already present.
  void insert(const std::string& name, const Tensor<T>& tensor) {
    auto found = index_.find(name);
    if (found != index_.end()) {
      entries_[found->second].second = tensor;
      return;
    }
    index_.emplace(name, entries_.size());
    entries_.emplace_back(name, tensor);
  }

  bool contains(const std::string& name) const { return index_.count(name) != 0; }

  // The tensor under `name`, or an undefined tensor when there is none.
  Tensor<T> find(const std::string& name) const {
    auto found = index_.find(name);
    return found == index_.end() ? Tensor<T>() : entries_[found->second].second;
  }

  const Tensor<T>& at(const std::string& name) const {
    auto found = index_.find(name);
    TESSERA_CHECK(found != index_.end(), "StateDict::at: no entry named '", name, "'");
    return entries_[found->second].second;
  }

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const auto& entry : entries_) out.push_back(entry.first);
    return out;
  }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

// What load_state_dict did: which names were copied, which the module has but the dict lacks, which the dict
// has but the module lacks, and which exist in both with different shapes (never copied).
struct LoadReport {
  struct ShapeMismatch {
    std::string name;
    Shape expected;  // the module's shape
    Shape actual;    // the dict's shape
  };
  std::vector<std::string> loaded;
  std::vector<std::string> missing;
  std::vector<std::string> unexpected;
  std::vector<ShapeMismatch> mismatched;
  std::vector<std::string> notes;  // what the loader adapted on the way (a stripped prefix, a resampled pos_embed)

  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }

  // For people: how many tensors were loaded, the notes, then describe()'s problem lines.
  std::string summary() const {
    std::ostringstream out;
    out << "loaded " << loaded.size() << " tensors";
    if (ok()) out << "; nothing missing, unexpected or of another shape";
    out << '\n';
    for (const auto& note : notes) out << note << '\n';
    out << describe();
    return out.str();
  }

  // One line per problem, empty when ok().
  std::string describe() const {
    std::ostringstream out;
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      out << what << " (" << names.size() << "):";
      for (const auto& name : names) out << ' ' << name;
      out << '\n';
    };
    list("missing keys", missing);
    list("unexpected keys", unexpected);
    if (!mismatched.empty()) {
      out << "skipped for a shape mismatch (" << mismatched.size() << "):";
      for (const auto& m : mismatched) out << ' ' << m.name << " expected " << m.expected << " got " << m.actual;
      out << '\n';
    }
    return out.str();
  }
};

// Glob match over a whole name: '*' matches any run of characters (dots included), '?' any one character.
inline bool glob_match(std::string_view pattern, std::string_view name) {
  size_t p = 0, n = 0, star = std::string_view::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// The base class. A layer registers its parameter and buffer members and its submodules in its constructor;
// names compose with dots ("blocks.3.attn.qkv.weight"). Registration keeps pointers to the members, so a module
// can be neither copied nor moved: hold models by value where they are built, or through a smart pointer.
template <class T>
class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;

  // The layer kind, e.g. "Linear", used in error messages.
  const std::string& type_name() const { return type_name_; }

  // The dotted name of this module inside the outermost module ("blocks.2.attn.qkv"); empty for the root.
  std::string path() const {
    if (!parent_) return "";
    const std::string above = parent_->path();
    return above.empty() ? name_ : above + "." + name_;
  }
  // How error messages name this module: its kind and, below the root, its path ("Linear 'blocks.0.attn.qkv'").
  std::string where() const {
    const std::string p = path();
    return p.empty() ? type_name_ : type_name_ + " '" + p + "'";
  }

  // Calls visit(path, module) for this module and every submodule, parents before children.
  void visit_modules(const std::function<void(const std::string&, Module&)>& visit) {
    visit_modules_below("", visit);
  }

  // ---- train / eval ------------------------------------------------------------------------------------
  // Sets training mode on this module and every submodule (dropout and drop-path act only in training).
  void train(bool mode = true) {
    training_ = mode;
    for (auto& child : children_) child.second->train(mode);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // The generator that dropout and drop-path draw from; set_generator applies to every submodule.
  // Without one, the process-wide default_generator() is used. The generator must outlive the module.
  void set_generator(Generator& generator) {
    generator_ = &generator;
    for (auto& child : children_) child.second->set_generator(generator);
  }
  Generator& generator() const { return generator_ ? *generator_ : default_generator(); }

  // ---- parameters ----------------------------------------------------------------------------------------
  // Every parameter in timm's order: a module's own parameters first, then each submodule's, recursively.
  std::vector<std::pair<std::string, Tensor<T>>> named_parameters() const {
    std::vector<std::pair<std::string, Tensor<T>>> out;
    visit_parameters("", [&](const std::string& name, Tensor<T>& p) { out.emplace_back(name, p); });
    return out;
  }
  std::vector<Tensor<T>> parameters() const {
    std::vector<Tensor<T>> out;
    visit_parameters("", [&](const std::string&, Tensor<T>& p) { out.push_back(p); });
    return out;
  }
  std::vector<std::pair<std::string, Tensor<T>>> named_buffers() const {
    std::vector<std::pair<std::string, Tensor<T>>> out;
    visit_buffers("", [&](const std::string& name, Tensor<T>& b) { out.emplace_back(name, b); });
    return out;
  }
  // The immediate submodules, in registration order.
  const std::vector<std::pair<std::string, Module*>>& children() const { return children_; }

  // The parameter under a full dotted name; throws naming the module when there is none.
  Tensor<T> parameter(const std::string& name) const {
    Tensor<T> found;
    visit_parameters("", [&](const std::string& n, Tensor<T>& p) {
      if (n == name) found = p;
    });
    TESSERA_CHECK(found.defined(), type_name_, "::parameter: no parameter named '", name, "'");
    return found;
  }

  int64_t num_parameters() const {
    int64_t n = 0;
    visit_parameters("", [&](const std::string&, Tensor<T>& p) { n += p.numel(); });
    return n;
  }
  int64_t num_trainable_parameters() const {
    int64_t n = 0;
    visit_parameters("", [&](const std::string&, Tensor<T>& p) {
      if (p.requires_grad()) n += p.numel();
    });
    return n;
  }

  // Sets requires_grad on every parameter whose full name matches the glob `pattern` ("head.*", "blocks.5.*",
  // "*" for all) and returns how many matched; a pattern that matches nothing is an error (a likely typo).
  int64_t set_requires_grad(const std::string& pattern, bool requires_grad) {
    int64_t matched = 0;
    visit_parameters("", [&](const std::string& name, Tensor<T>& p) {
      if (!glob_match(pattern, name)) return;
      p.set_requires_grad(requires_grad);
      if (!requires_grad) p.set_grad(Tensor<T>());
      ++matched;
    });
    TESSERA_CHECK(matched > 0, type_name_, "::", requires_grad ? "unfreeze" : "freeze", ": pattern '", pattern,
                  "' matches no parameter name");
    return matched;
  }
  int64_t freeze(const std::string& pattern = "*") { return set_requires_grad(pattern, false); }
  int64_t unfreeze(const std::string& pattern = "*") { return set_requires_grad(pattern, true); }

  // Clears every parameter's gradient (set_to_none) or fills it with zeros.
  void zero_grad(bool set_to_none = true) {
    visit_parameters("", [&](const std::string&, Tensor<T>& p) {
      if (set_to_none)
        p.set_grad(Tensor<T>());
      else
        p.zero_grad();
    });
  }

  // ---- state dict ----------------------------------------------------------------------------------------
  // Parameters and buffers by full name, in timm's order. The tensors share the module's elements.
  StateDict<T> state_dict() const {
    StateDict<T> out;
    visit_state("", [&](const std::string& name, Tensor<T>& t) { out.insert(name, t.detach()); });
    return out;
  }

  // Copies tensors from `dict` into the parameters and buffers of the same name and shape. Strict: any missing,
  // unexpected or shape-mismatched key throws tessera::Error listing them all, and nothing is copied. Not strict:
  // the matching keys are copied and the report lists the rest.
  LoadReport load_state_dict(const StateDict<T>& dict, bool strict = true) {
    LoadReport report;
    std::vector<std::pair<Tensor<T>, Tensor<T>>> copies;  // (destination, source)
    std::unordered_map<std::string, bool> own;
    visit_state("", [&](const std::string& name, Tensor<T>& t) {
      own.emplace(name, true);
      Tensor<T> source = dict.find(name);
      if (!source.defined()) {
        report.missing.push_back(name);
      } else if (!(source.shape() == t.shape())) {
        report.mismatched.push_back({name, t.shape(), source.shape()});
      } else {
        copies.emplace_back(t, source);
        report.loaded.push_back(name);
      }
    });
    for (const auto& entry : dict)
      if (!own.count(entry.first)) report.unexpected.push_back(entry.first);
    TESSERA_CHECK(!strict || report.ok(), type_name_, "::load_state_dict (strict): ", report.describe());
    for (auto& [destination, source] : copies)
      if (destination.data() != source.data()) destination.copy_(source);
    return report;
  }

 protected:
  // Registers a parameter member: it becomes a leaf that requires grad.
  Tensor<T>& register_parameter(const std::string& name, Tensor<T>& parameter) {
    check_new_name(name);
    TESSERA_CHECK(parameter.defined(), type_name_, "::register_parameter: '", name, "' is an undefined tensor");
    parameter.set_requires_grad(true);
    parameters_.emplace_back(name, &parameter);
    return parameter;
  }
  // Registers a buffer member: saved in the state dict, never trained.
  Tensor<T>& register_buffer(const std::string& name, Tensor<T>& buffer) {
    check_new_name(name);
    TESSERA_CHECK(buffer.defined(), type_name_, "::register_buffer: '", name, "' is an undefined tensor");
    buffers_.emplace_back(name, &buffer);
    return buffer;
  }
  // Registers a submodule member; its names are prefixed with `name` and a dot.
  template <class M>
  M& register_module(const std::string& name, M& module) {
    check_new_name(name);
    Module* child = &module;
    TESSERA_CHECK(child->parent_ == nullptr && child != this, type_name_, ": module '", name,
                  "' is already registered elsewhere");
    children_.emplace_back(name, child);
    child->parent_ = this;
    child->name_ = name;
    module.train(training_);
    if (generator_) module.set_generator(*generator_);
    return module;
  }

 private:
  using Visitor = std::function<void(const std::string&, Tensor<T>&)>;

  void check_new_name(const std::string& name) const {
    TESSERA_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name_, ": invalid member name '", name,
                  "' (must be non-empty and contain no dot)");
    auto taken = [&](const auto& list) {
      for (const auto& entry : list)
        if (entry.first == name) return true;
      return false;
    };
    TESSERA_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), type_name_, ": the name '", name,
                  "' is registered twice");
  }

  void visit_modules_below(const std::string& path, const std::function<void(const std::string&, Module&)>& visit) {
    visit(path, *this);
    for (const auto& [name, child] : children_) child->visit_modules_below(path.empty() ? name : path + "." + name, visit);
  }

  void visit_parameters(const std::string& prefix, const Visitor& visit) const {
    for (const auto& [name, p] : parameters_) visit(prefix + name, *p);
    for (const auto& [name, child] : children_) child->visit_parameters(prefix + name + ".", visit);
  }
  void visit_buffers(const std::string& prefix, const Visitor& visit) const {
    for (const auto& [name, b] : buffers_) visit(prefix + name, *b);
    for (const auto& [name, child] : children_) child->visit_buffers(prefix + name + ".", visit);
  }
  // torch's state-dict order: own parameters, own buffers, then each submodule.
  void visit_state(const std::string& prefix, const Visitor& visit) const {
    for (const auto& [name, p] : parameters_) visit(prefix + name, *p);
    for (const auto& [name, b] : buffers_) visit(prefix + name, *b);
    for (const auto& [name, child] : children_) child->visit_state(prefix + name + ".", visit);
  }

  std::string type_name_;
  std::string name_;          // the name under which the parent registered this module
  Module* parent_ = nullptr;  // null for the root
  bool training_ = true;
  Generator* generator_ = nullptr;
  std::vector<std::pair<std::string, Tensor<T>*>> parameters_;
  std::vector<std::pair<std::string, Tensor<T>*>> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
};

// A numbered list of submodules of one kind, named "0", "1", ... (timm's nn.Sequential of blocks).
template <class T, class M>
class ModuleList : public Module<T> {
 public:
  ModuleList() : Module<T>("ModuleList") {}

  // Appends a module built from `args` and returns it.
  template <class... Args>
  M& emplace_back(Args&&... args) {
    items_.push_back(std::make_unique<M>(std::forward<Args>(args)...));
    return this->register_module(std::to_string(items_.size() - 1), *items_.back());
  }

  size_t size() const { return items_.size(); }
  M& operator[](size_t i) { return *items_.at(i); }
  const M& operator[](size_t i) const { return *items_.at(i); }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::unique_ptr<M>> items_;
};

}  // namespace tessera::nn
