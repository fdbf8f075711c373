// Subset: a view of some samples of another dataset; spread_subset, n samples spread evenly over a dataset (for
// smoke tests and quick experiments); split_validation, a validation set held out of a training set.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/dataset.hpp"

namespace tessera::train {

class Subset final : public data::Dataset {
 public:
  // Sample i of the subset is sample indices[i] of `base`.
  Subset(std::shared_ptr<const data::Dataset> base, std::vector<int64_t> indices)
      : base_(std::move(base)), indices_(std::move(indices)) {
    TESSERA_CHECK(base_ != nullptr, "Subset: base dataset is null");
    for (int64_t index : indices_)
      TESSERA_CHECK(index >= 0 && index < base_->size(), "Subset: index ", index, " is out of range for ",
                    base_->description());
  }

  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }
  data::Sample get(int64_t index) const override { return base_->get(base_index(index, "Subset::get")); }
  int64_t label(int64_t index) const override { return base_->label(base_index(index, "Subset::label")); }
  std::string sample_name(int64_t index) const override {
    return base_->sample_name(base_index(index, "Subset::sample_name"));
  }
  std::string description() const override {
    return std::to_string(size()) + " samples of " + base_->description();
  }

 private:
  int64_t base_index(int64_t index, const char* op) const {
    check_index(index, op);
    return indices_[static_cast<size_t>(index)];
  }

  std::shared_ptr<const data::Dataset> base_;
  std::vector<int64_t> indices_;
};

// n samples spread evenly over `dataset` (indices floor(i * size / n) for i in [0, n)), or `dataset` itself when n is
// 0 or not smaller than its size. Evenly spread rather than the first n: an image folder lists its samples class
// by class, so its first n samples would hold only the first classes.
inline std::shared_ptr<const data::Dataset> spread_subset(std::shared_ptr<const data::Dataset> dataset, int64_t n) {
  TESSERA_CHECK(dataset != nullptr, "spread_subset: dataset is null");
  TESSERA_CHECK(n >= 0, "spread_subset: n must be non-negative, got ", n);
  const int64_t size = dataset->size();
  if (n == 0 || n >= size) return dataset;
  std::vector<int64_t> indices(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    indices[static_cast<size_t>(i)] = i * size / n;
  return std::make_shared<Subset>(std::move(dataset), std::move(indices));
}

// A training set split into what is trained on and a held-out validation set of about n samples: of each class,
// its last samples in the dataset's order (its share of n, rounded), so both parts keep the class balance whether
// the dataset lists its samples class by class (an image folder) or mixed (the CIFAR-10 binary batches).
struct ValidationSplit {
  std::shared_ptr<const data::Dataset> train, validation;
};

inline ValidationSplit split_validation(std::shared_ptr<const data::Dataset> dataset, int64_t n) {
  TESSERA_CHECK(dataset != nullptr, "split_validation: dataset is null");
  const int64_t size = dataset->size();
  TESSERA_CHECK(n > 0 && n < size, "split_validation: the validation split must hold between 1 and ", size - 1,
                " of the ", size, " training samples, got ", n);
  const auto classes = static_cast<size_t>(dataset->num_classes());
  std::vector<std::vector<int64_t>> by_class(classes);
  for (int64_t i = 0; i < size; ++i) by_class[static_cast<size_t>(dataset->label(i))].push_back(i);
  std::vector<bool> held_out(static_cast<size_t>(size), false);
  for (const auto& members : by_class) {
    const auto count = static_cast<int64_t>(members.size());
    const auto share = static_cast<int64_t>(std::llround(static_cast<double>(n) * static_cast<double>(count) /
                                                         static_cast<double>(size)));
    for (int64_t k = count - std::min(share, count); k < count; ++k)
      held_out[static_cast<size_t>(members[static_cast<size_t>(k)])] = true;
  }
  std::vector<int64_t> train_indices, validation_indices;
  for (int64_t i = 0; i < size; ++i)
    (held_out[static_cast<size_t>(i)] ? validation_indices : train_indices).push_back(i);
  TESSERA_CHECK(!train_indices.empty() && !validation_indices.empty(), "split_validation: holding out ", n, " of ",
                size, " samples leaves one part empty");
  return {std::make_shared<Subset>(dataset, std::move(train_indices)),
          std::make_shared<Subset>(dataset, std::move(validation_indices))};
}

}  // namespace tessera::train
