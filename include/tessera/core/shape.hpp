// Shape: the dimensions of a tensor (rank 0 to 6), with contiguous row-major strides.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <span>
#include <string>

#include "tessera/core/error.hpp"

namespace tessera {

inline constexpr int kMaxRank = 6;

class Shape {
 public:
  Shape() = default;  // rank 0: a scalar with one element
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.size()); }
  explicit Shape(std::span<const int64_t> dims) { assign(dims.data(), dims.size()); }

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  std::span<const int64_t> dims() const { return {dims_.data(), static_cast<size_t>(rank_)}; }

  // Size of a dimension; negative indices count from the end.
  int64_t size(int dim) const { return dims_[static_cast<size_t>(normalize_dim(dim, "Shape::size"))]; }

  // Cannot overflow: assign() and with_dim() check that the product of the non-zero dimensions fits int64.
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
    return n;
  }

  // Row-major strides in elements. Each is a product of non-zero dimensions or zero, so it fits int64 too.
  std::array<int64_t, kMaxRank> strides() const {
    std::array<int64_t, kMaxRank> s{};
    int64_t stride = 1;
    for (int i = rank_ - 1; i >= 0; --i) {
      s[static_cast<size_t>(i)] = stride;
      stride *= dims_[static_cast<size_t>(i)];
    }
    return s;
  }

  // Maps a possibly negative dimension index into [0, rank); throws naming `op` when out of range.
  int normalize_dim(int dim, const char* op) const {
    TESSERA_CHECK(dim >= -rank_ && dim < rank_, op, ": dimension ", dim, " is out of range for shape ", str(),
                  " (rank ", rank_, ")");
    return dim < 0 ? dim + rank_ : dim;
  }

  Shape with_dim(int dim, int64_t size) const {
    std::array<int64_t, kMaxRank> dims = dims_;
    dims[static_cast<size_t>(normalize_dim(dim, "Shape::with_dim"))] = size;
    Shape s;
    s.assign(dims.data(), static_cast<size_t>(rank_));
    return s;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[static_cast<size_t>(i)] != b.dims_[static_cast<size_t>(i)]) return false;
    return true;
  }

  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[static_cast<size_t>(i)]);
    }
    return s + ")";
  }

  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

 private:
  void assign(const int64_t* dims, size_t n) {
    TESSERA_CHECK(n <= static_cast<size_t>(kMaxRank), "Shape: rank ", n, " exceeds the maximum rank ", kMaxRank);
    // The product of the non-zero dimensions must fit int64 wherever a zero sits: numel() multiplies in order
    // (so [2^32, 2^32, 0] would overflow before reaching the zero) and strides() from the end ([0, 2^32, 2^32]).
    int64_t nonzero_product = 1;
    for (size_t i = 0; i < n; ++i) {
      TESSERA_CHECK(dims[i] >= 0, "Shape: dimension ", i, " has negative size ", dims[i]);
      if (dims[i] == 0) continue;
      TESSERA_CHECK(nonzero_product <= std::numeric_limits<int64_t>::max() / dims[i], "Shape: dimensions ",
                    list(dims, n), " have more than 2^63 - 1 elements (counting the non-zero ones)");
      nonzero_product *= dims[i];
    }
    rank_ = static_cast<int>(n);
    for (size_t i = 0; i < n; ++i) dims_[i] = dims[i];
  }
  static std::string list(const int64_t* dims, size_t n) {
    std::string s = "(";
    for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + ")";
  }

  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

}  // namespace tessera
