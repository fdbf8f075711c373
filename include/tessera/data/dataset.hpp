// Dataset, the interface every image source implements (indexed samples of image + label, class names), the
// Split of a dataset, and InMemoryDataset, a dataset over images already in memory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/data/image.hpp"

namespace tessera::data {

enum class Split { train, test };

inline const char* split_name(Split split) { return split == Split::train ? "train" : "test"; }

inline Split parse_split(std::string_view name) {
  if (name == "train") return Split::train;
  if (name == "test") return Split::test;
  ::tessera::detail::fail("parse_split: expected \"train\" or \"test\", got \"", name, "\"");
}

// One example: uint8 HWC pixels and a class index in [0, num_classes).
struct Sample {
  Image image;
  int64_t label = 0;
};

// A fixed, indexed collection of labelled images. get, label and sample_name must be safe to call from several
// threads at once: DataLoader workers call them concurrently.
class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual int64_t size() const = 0;
  virtual const std::vector<std::string>& class_names() const = 0;
  int64_t num_classes() const { return static_cast<int64_t>(class_names().size()); }

  // The image and label at `index`, in [0, size()).
  virtual Sample get(int64_t index) const = 0;
  // The label alone, without decoding the image.
  virtual int64_t label(int64_t index) const = 0;
  // Where the sample comes from ("<file>" or "<file> record <r>"), for error messages.
  virtual std::string sample_name(int64_t index) const = 0;
  // One line saying what the dataset is, e.g. "CIFAR-10 binary, train split, 50000 images in <folder>".
  virtual std::string description() const = 0;

 protected:
  void check_index(int64_t index, const char* op) const {
    TESSERA_CHECK(index >= 0 && index < size(), op, ": index ", index, " is out of range for a dataset of ", size(),
                  " samples");
  }
};

// Images and labels held in memory; the tests' and small experiments' dataset.
class InMemoryDataset final : public Dataset {
 public:
  InMemoryDataset(std::vector<Image> images, std::vector<int64_t> labels, std::vector<std::string> class_names,
                  std::string name = "in-memory dataset")
      : images_(std::move(images)), labels_(std::move(labels)), class_names_(std::move(class_names)),
        name_(std::move(name)) {
    TESSERA_CHECK(images_.size() == labels_.size(), "InMemoryDataset: ", images_.size(), " images but ",
                  labels_.size(), " labels");
    for (size_t i = 0; i < labels_.size(); ++i)
      TESSERA_CHECK(labels_[i] >= 0 && labels_[i] < static_cast<int64_t>(class_names_.size()),
                    "InMemoryDataset: label ", labels_[i], " of sample ", i, " is outside [0, ",
                    class_names_.size(), ")");
  }

  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  const std::vector<std::string>& class_names() const override { return class_names_; }
  Sample get(int64_t index) const override {
    check_index(index, "InMemoryDataset::get");
    return {images_[static_cast<size_t>(index)], labels_[static_cast<size_t>(index)]};
  }
  int64_t label(int64_t index) const override {
    check_index(index, "InMemoryDataset::label");
    return labels_[static_cast<size_t>(index)];
  }
  std::string sample_name(int64_t index) const override { return name_ + " sample " + std::to_string(index); }
  std::string description() const override { return name_ + ", " + std::to_string(size()) + " images"; }

 private:
  std::vector<Image> images_;
  std::vector<int64_t> labels_;
  std::vector<std::string> class_names_;
  std::string name_;
};

}  // namespace tessera::data
