// Subset: a view of some samples of another dataset, and spread_subset, n samples spread evenly over a dataset (for
// smoke tests and quick experiments).
#pragma once

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

}  // namespace tessera::train
