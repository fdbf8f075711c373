// AlignedBuffer: a 64-byte aligned block of elements that tensors share, zero-initialised unless asked not to be.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "tessera/core/error.hpp"

namespace tessera {

inline constexpr size_t kStorageAlignment = 64;

template <class T>
class AlignedBuffer {
 public:
  enum class Init { zeros, uninitialized };

  explicit AlignedBuffer(int64_t size, Init init = Init::zeros) : size_(size) {
    TESSERA_CHECK(size >= 0, "AlignedBuffer: negative size ", size);
    if (size_ == 0) return;
    TESSERA_CHECK(static_cast<uint64_t>(size) <= (std::numeric_limits<size_t>::max() - kStorageAlignment) / sizeof(T),
                  "AlignedBuffer: ", size, " elements of ", sizeof(T), " bytes exceed the address space");
    // at least one block: aligned_alloc may return null for 0 bytes
    const size_t bytes = round_up(std::max<size_t>(1, static_cast<size_t>(size_) * sizeof(T)));
    // C's aligned_alloc rather than the aligned operator new: in a test with GCC 12's libstdc++ and glibc 2.36, a
    // 16-MB block freed by the aligned operator delete was not handed out again for the next block of that size (a
    // training step's activations), so each step faulted fresh pages in, while aligned_alloc's blocks were reused
    // (tests/tensor_test.cpp checks the reuse).
    data_ = static_cast<T*>(std::aligned_alloc(kStorageAlignment, bytes));
    if (data_ == nullptr) throw std::bad_alloc();
    if (init == Init::zeros) std::memset(static_cast<void*>(data_), 0, bytes);
  }
  ~AlignedBuffer() {
    std::free(static_cast<void*>(data_));
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }

 private:
  static size_t round_up(size_t bytes) { return (bytes + kStorageAlignment - 1) / kStorageAlignment * kStorageAlignment; }

  T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace tessera
