// DataLoader: batches of (B, C, H, W) float images and labels from a Dataset through a Compose transform, built
// ahead by background threads into a bounded queue, shuffled and augmented reproducibly from (seed, epoch).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/data/transforms.hpp"

namespace tessera::data {

struct DataLoaderOptions {
  int64_t batch_size = 128;
  // Visit the samples in a fresh random order each epoch, drawn from (seed, epoch).
  bool shuffle = true;
  // Leave out the last batch when it would be smaller than batch_size.
  bool drop_last = false;
  // Drives the shuffle and every sample's augmentation.
  uint64_t seed = 0;
  // Background threads that load, transform and batch; 0 builds each batch on the calling thread inside next().
  int num_workers = 1;
  // How many batches may be built or waiting ahead of the consumer; 0 takes 2 * num_workers.
  int prefetch_batches = 0;
  // Data-parallel sharding: of every batch that one process would get (batch_size is that global batch), this
  // loader delivers only rows [count * shard / num_shards, count * (shard + 1) / num_shards) of its count rows, with
  // the same order and augmentation. The shards of one batch together are exactly the batch of one process.
  int shard = 0;
  int num_shards = 1;
};

struct Batch {
  Tensor<float> images;          // (B, C, H, W)
  std::vector<int64_t> labels;   // B class indices
  std::vector<int64_t> indices;  // B dataset indices, in batch order
  int64_t epoch = 0;
  int64_t index = 0;  // position of the batch within its epoch
  // With sharding: the row of the global batch where this shard starts. A shard may be empty (a last batch with
  // fewer rows than shards); its images are then an undefined tensor.
  int64_t first_row = 0;

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

namespace detail {

inline constexpr uint64_t kShuffleStream = 0x53485546464C45ull;  // "SHUFFLE"
inline constexpr uint64_t kSampleStream = 0x53414D504C45ull;     // "SAMPLE"

}  // namespace detail

// The generator that augments dataset sample `index` in `epoch`: a splitmix64 hash of (seed, epoch, index), so it
// is the same whichever worker builds the sample and whenever.
inline Generator sample_generator(uint64_t seed, int64_t epoch, int64_t index) {
  return Generator(splitmix64(splitmix64(splitmix64(seed ^ detail::kSampleStream) ^ static_cast<uint64_t>(epoch)) ^
                              static_cast<uint64_t>(index)));
}

// The order in which an epoch visits the samples: 0..n-1, or a Fisher-Yates shuffle drawn from (seed, epoch).
inline std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  if (!shuffle) return order;
  Generator gen(splitmix64(splitmix64(seed ^ detail::kShuffleStream) ^ static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(gen.below(static_cast<uint64_t>(i + 1)))]);
  return order;
}

// Usage:
//   DataLoader loader(dataset, cifar10_train_transform(), {.batch_size = 128, .seed = 1, .num_workers = 1});
//   for (int64_t epoch = 0; epoch < epochs; ++epoch)
//     for (Batch& batch : loader.epoch(epoch)) { ... batch.images, batch.labels ... }
// Batch contents depend only on (dataset, transform, options without num_workers/prefetch_batches, epoch). An
// exception thrown while building a batch reaches the consumer, at that batch, as a tessera::Error.
class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, Compose transform, DataLoaderOptions options = {})
      : dataset_(std::move(dataset)), transform_(std::move(transform)), options_(options) {
    TESSERA_CHECK(dataset_ != nullptr, "DataLoader: dataset is null");
    TESSERA_CHECK(options_.batch_size >= 1, "DataLoader: batch_size must be at least 1, got ", options_.batch_size);
    TESSERA_CHECK(options_.num_workers >= 0, "DataLoader: num_workers must be non-negative, got ",
                  options_.num_workers);
    TESSERA_CHECK(options_.prefetch_batches >= 0, "DataLoader: prefetch_batches must be non-negative, got ",
                  options_.prefetch_batches);
    TESSERA_CHECK(options_.num_shards >= 1 && options_.shard >= 0 && options_.shard < options_.num_shards,
                  "DataLoader: shard ", options_.shard, " of ", options_.num_shards, " does not exist");
    const int64_t n = dataset_->size();
    TESSERA_CHECK(n > 0, "DataLoader: the dataset is empty (", dataset_->description(), ")");
    num_batches_ = options_.drop_last ? n / options_.batch_size : (n + options_.batch_size - 1) / options_.batch_size;
    TESSERA_CHECK(num_batches_ > 0, "DataLoader: drop_last with batch_size ", options_.batch_size,
                  " leaves no batch from ", n, " samples (", dataset_->description(), ")");
    capacity_ = options_.prefetch_batches > 0 ? options_.prefetch_batches : 2 * options_.num_workers;
    try {
      for (int w = 0; w < options_.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
    } catch (const std::exception& e) {
      shutdown();
      ::tessera::detail::fail("DataLoader: cannot start ", options_.num_workers, " worker threads: ", e.what());
    }
  }

  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;
  ~DataLoader() { shutdown(); }

  const Dataset& dataset() const { return *dataset_; }
  const Compose& transform() const { return transform_; }
  const DataLoaderOptions& options() const { return options_; }
  int64_t num_batches() const { return num_batches_; }

  // Begins `epoch` (any number, in any order) at batch `first_batch`: workers start building its batches from
  // there, and the batches before it are never built (a resumed run starts mid-epoch at once). An epoch still in
  // progress is abandoned.
  void start_epoch(int64_t epoch, int64_t first_batch = 0) {
    TESSERA_CHECK(first_batch >= 0 && first_batch <= num_batches_, "DataLoader::start_epoch: first_batch ",
                  first_batch, " is outside [0, ", num_batches_, "]");
    auto state = std::make_shared<EpochState>();
    state->epoch = epoch;
    state->order = epoch_order(dataset_->size(), options_.seed, epoch, options_.shuffle);
    {
      std::lock_guard lock(mutex_);
      state->generation = ++generation_;
      epoch_ = std::move(state);
      ready_.clear();
      next_claim_ = first_batch;
      next_deliver_ = first_batch;
    }
    work_cv_.notify_all();
  }

  // The next batch of the current epoch in order, or nothing once the epoch is over. Blocks while the batch is
  // being built; that time is added to wait_seconds().
  std::optional<Batch> next() {
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    TESSERA_CHECK(epoch_ != nullptr, "DataLoader::next: call start_epoch (or iterate epoch(e)) first");
    if (next_deliver_ >= num_batches_) return std::nullopt;
    const int64_t b = next_deliver_;
    Result result;
    if (workers_.empty()) {
      const auto state = epoch_;
      lock.unlock();
      result = build(*state, b);
      lock.lock();
    } else {
      ready_cv_.wait(lock, [&] { return ready_.count(b) > 0; });
      result = std::move(ready_.at(b));
      ready_.erase(b);
    }
    ++next_deliver_;
    lock.unlock();
    work_cv_.notify_all();
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!result.error.empty()) throw Error(result.error);
    return std::move(result.batch);
  }

  // Total seconds next() spent waiting for batches (including building them when num_workers is 0).
  double wait_seconds() const { return wait_seconds_; }
  // Returns wait_seconds() and starts counting again from 0, e.g. once per epoch for a log line.
  double take_wait_seconds() { return std::exchange(wait_seconds_, 0.0); }

  // for (Batch& batch : loader.epoch(e)): start_epoch(e), then next() until the epoch ends.
  class EpochRange {
   public:
    class iterator {
     public:
      using iterator_category = std::input_iterator_tag;
      using value_type = Batch;
      using difference_type = std::ptrdiff_t;
      using pointer = Batch*;
      using reference = Batch&;

      iterator() = default;
      explicit iterator(DataLoader* loader) : loader_(loader) { advance(); }
      Batch& operator*() { return *current_; }
      Batch* operator->() { return &*current_; }
      iterator& operator++() {
        advance();
        return *this;
      }
      void operator++(int) { advance(); }
      friend bool operator==(const iterator& a, const iterator& b) {
        return a.current_.has_value() == b.current_.has_value();
      }

     private:
      void advance() { current_ = loader_->next(); }
      DataLoader* loader_ = nullptr;
      std::optional<Batch> current_;
    };

    EpochRange(DataLoader& loader, int64_t epoch) : loader_(&loader), epoch_(epoch) {}
    iterator begin() {
      loader_->start_epoch(epoch_);
      return iterator(loader_);
    }
    iterator end() { return iterator(); }

   private:
    DataLoader* loader_;
    int64_t epoch_;
  };
  EpochRange epoch(int64_t epoch) { return EpochRange(*this, epoch); }

 private:
  struct EpochState {
    int64_t epoch = 0;
    uint64_t generation = 0;
    std::vector<int64_t> order;
  };
  struct Result {
    std::optional<Batch> batch;
    std::string error;  // non-empty when building the batch threw
  };

  // Loads, transforms and stacks batch b of an epoch; an exception becomes Result::error.
  Result build(const EpochState& state, int64_t b) const {
    Result result;
    const std::string context =
        std::string("DataLoader: building batch ") + std::to_string(b) + " of epoch " + std::to_string(state.epoch);
    try {
      result.batch = build_batch(state, b);
    } catch (const std::exception& e) {
      result.error = context + " failed: " + e.what();
    } catch (...) {
      result.error = context + " failed with an exception that is not a std::exception";
    }
    return result;
  }

  Batch build_batch(const EpochState& state, int64_t b) const {
    const int64_t n = dataset_->size();
    const int64_t begin = b * options_.batch_size;
    const int64_t global_count = std::min(options_.batch_size, n - begin);
    const int64_t lo = global_count * options_.shard / options_.num_shards;
    const int64_t hi = global_count * (options_.shard + 1) / options_.num_shards;
    const int64_t count = hi - lo;
    Batch batch;
    batch.epoch = state.epoch;
    batch.index = b;
    batch.first_row = lo;
    batch.labels.reserve(static_cast<size_t>(count));
    batch.indices.reserve(static_cast<size_t>(count));
    FloatImage first;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t index = state.order[static_cast<size_t>(begin + lo + k)];
      Sample sample = dataset_->get(index);
      Generator gen = sample_generator(options_.seed, state.epoch, index);
      FloatImage image = transform_(sample.image, gen);
      if (k == 0) {
        batch.images = Tensor<float>({count, image.channels, image.height, image.width});
        first = FloatImage(image.channels, image.height, image.width);
      }
      TESSERA_CHECK(image.channels == first.channels && image.height == first.height && image.width == first.width,
                    "DataLoader: sample ", dataset_->sample_name(index), " becomes a ", image.size_string(),
                    " image but the first sample of its batch became ", first.size_string(),
                    "; add a Resize/CenterCrop/RandomResizedCrop so every sample has one size");
      std::memcpy(batch.images.data() + k * image.numel(), image.data(),
                  static_cast<size_t>(image.numel()) * sizeof(float));
      batch.labels.push_back(sample.label);
      batch.indices.push_back(index);
    }
    return batch;
  }

  void worker_loop() {
    std::unique_lock lock(mutex_);
    while (true) {
      work_cv_.wait(lock, [&] {
        return stop_ || (epoch_ && next_claim_ < num_batches_ && next_claim_ < next_deliver_ + capacity_);
      });
      if (stop_) return;
      const std::shared_ptr<const EpochState> state = epoch_;
      const int64_t b = next_claim_++;
      lock.unlock();
      Result result = build(*state, b);
      lock.lock();
      if (state->generation == generation_) {
        ready_.emplace(b, std::move(result));
        ready_cv_.notify_all();
      }
    }
  }

  void shutdown() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& worker : workers_)
      if (worker.joinable()) worker.join();
    workers_.clear();
  }

  std::shared_ptr<const Dataset> dataset_;
  Compose transform_;
  DataLoaderOptions options_;
  int64_t num_batches_ = 0;
  int64_t capacity_ = 0;

  std::mutex mutex_;
  std::condition_variable work_cv_;   // workers wait here for a batch to claim
  std::condition_variable ready_cv_;  // the consumer waits here for its batch
  bool stop_ = false;
  uint64_t generation_ = 0;
  std::shared_ptr<const EpochState> epoch_;
  int64_t next_claim_ = 0;    // next batch a worker will build
  int64_t next_deliver_ = 0;  // next batch next() returns
  std::map<int64_t, Result> ready_;
  std::vector<std::thread> workers_;
  double wait_seconds_ = 0.0;
};

}  // namespace tessera::data
