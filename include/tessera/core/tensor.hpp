// Tensor<T>: a contiguous, row-major, 64-byte aligned n-d array (T = float or double) that autograd can track.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <memory>
#include <ostream>
#include <sstream>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/storage.hpp"

namespace tessera {

namespace autograd {
template <class T>
struct Node;
}

namespace detail {

// What a Tensor handle points to. Several handles may share one impl; several impls may share one storage.
template <class T>
struct TensorImpl {
  std::shared_ptr<AlignedBuffer<T>> storage;
  int64_t offset = 0;  // first element within storage
  Shape shape;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl<T>> grad;             // accumulated gradient of a leaf
  std::shared_ptr<autograd::Node<T>> grad_fn;      // the op that made this tensor; null for leaves
};

}  // namespace detail

template <class T>
class Tensor {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "tessera::Tensor<T> supports float and double");

 public:
  using value_type = T;

  Tensor() = default;  // an undefined tensor: defined() is false
  explicit Tensor(const Shape& shape) : impl_(std::make_shared<detail::TensorImpl<T>>()) {
    impl_->storage = std::make_shared<AlignedBuffer<T>>(shape.numel());
    impl_->shape = shape;
  }
  explicit Tensor(std::shared_ptr<detail::TensorImpl<T>> impl) : impl_(std::move(impl)) {}

  // ---- factories -------------------------------------------------------------------------------
  static Tensor zeros(const Shape& shape) { return Tensor(shape); }
  // Elements left uninitialised: for outputs a kernel overwrites completely (saves a memset pass).
  static Tensor empty(const Shape& shape) {
    auto impl = std::make_shared<detail::TensorImpl<T>>();
    impl->storage = std::make_shared<AlignedBuffer<T>>(shape.numel(), AlignedBuffer<T>::Init::uninitialized);
    impl->shape = shape;
    return Tensor(std::move(impl));
  }
  static Tensor ones(const Shape& shape) { return full(shape, T(1)); }
  static Tensor full(const Shape& shape, T value) {
    Tensor t(shape);
    t.fill_(value);
    return t;
  }
  static Tensor zeros_like(const Tensor& other) { return Tensor(other.shape()); }

  // 1-D tensor start, start+step, ... below end (above end for a negative step).
  static Tensor arange(T start, T end, T step = T(1)) {
    TESSERA_CHECK(step != T(0), "arange: step must not be zero");
    const double count = std::ceil((static_cast<double>(end) - static_cast<double>(start)) / static_cast<double>(step));
    const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
    Tensor t(Shape{n});
    for (int64_t i = 0; i < n; ++i) t.data()[i] = start + static_cast<T>(i) * step;
    return t;
  }
  static Tensor arange(T end) { return arange(T(0), end, T(1)); }

  // Copies `values` into a tensor of `shape`; the element counts must agree.
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
    TESSERA_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "from_vector: ", values.size(),
                  " values do not fill shape ", shape, " (", shape.numel(), " elements)");
    Tensor t(shape);
    std::copy(values.begin(), values.end(), t.data());
    return t;
  }
  static Tensor from_vector(const std::vector<T>& values) {
    return from_vector(values, Shape{static_cast<int64_t>(values.size())});
  }

  static Tensor uniform(const Shape& shape, T low, T high, Generator& gen = default_generator()) {
    Tensor t(shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(gen.uniform(low, high));
    return t;
  }
  static Tensor normal(const Shape& shape, T mean = T(0), T stddev = T(1), Generator& gen = default_generator()) {
    Tensor t(shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(gen.normal(mean, stddev));
    return t;
  }

  // ---- shape and data --------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return checked_impl().shape; }
  int rank() const { return shape().rank(); }
  int64_t numel() const { return shape().numel(); }
  int64_t size(int dim) const { return shape().size(dim); }

  // Tensors are handles: a const handle still gives write access to the shared elements.
  T* data() const {
    auto& impl = checked_impl();
    return impl.storage->data() + impl.offset;
  }

  T& at(std::initializer_list<int64_t> index) const {
    const Shape& s = shape();
    TESSERA_CHECK(static_cast<int>(index.size()) == s.rank(), "Tensor::at: ", index.size(),
                  " indices given for shape ", s);
    const auto strides = s.strides();
    int64_t flat = 0;
    int d = 0;
    for (int64_t i : index) {
      TESSERA_CHECK(i >= 0 && i < s[d], "Tensor::at: index ", i, " is out of range for dimension ", d, " of shape ", s);
      flat += i * strides[static_cast<size_t>(d)];
      ++d;
    }
    return data()[flat];
  }

  T item() const {
    TESSERA_CHECK(numel() == 1, "Tensor::item: expected a tensor with one element, got shape ", shape());
    return data()[0];
  }

  std::vector<T> to_vector() const { return std::vector<T>(data(), data() + numel()); }

  Tensor& fill_(T value) {
    std::fill(data(), data() + numel(), value);
    return *this;
  }

  // Copies the elements of `source` (same shape) into this tensor's storage.
  Tensor& copy_(const Tensor& source) {
    TESSERA_CHECK(source.shape() == shape(), "Tensor::copy_: source shape ", source.shape(),
                  " differs from destination shape ", shape());
    std::copy(source.data(), source.data() + numel(), data());
    return *this;
  }

  // A new tensor with its own copy of the elements, outside any graph.
  Tensor clone() const {
    Tensor t(shape());
    std::copy(data(), data() + numel(), t.data());
    return t;
  }

  // Shares the elements but not the graph: the result is a leaf that requires no gradient.
  Tensor detach() const { return view(shape()); }

  // Shares the elements under another shape with the same element count. Not recorded by autograd:
  // differentiable code uses ops::reshape, which is built on this.
  Tensor view(const Shape& new_shape) const {
    TESSERA_CHECK(new_shape.numel() == numel(), "view: cannot view shape ", shape(), " (", numel(),
                  " elements) as ", new_shape, " (", new_shape.numel(), " elements)");
    auto impl = std::make_shared<detail::TensorImpl<T>>();
    impl->storage = checked_impl().storage;
    impl->offset = checked_impl().offset;
    impl->shape = new_shape;
    return Tensor(std::move(impl));
  }

  // Shares the rows [start, start + count) of dimension 0 (contiguous, so no copy).
  Tensor rows(int64_t start, int64_t count) const {
    const Shape& s = shape();
    TESSERA_CHECK(s.rank() >= 1, "Tensor::rows: needs rank >= 1, got shape ", s);
    TESSERA_CHECK(start >= 0 && count >= 0 && start + count <= s[0], "Tensor::rows: rows [", start, ", ",
                  start + count, ") are out of range for shape ", s);
    auto impl = std::make_shared<detail::TensorImpl<T>>();
    impl->storage = checked_impl().storage;
    impl->offset = checked_impl().offset + start * (s[0] ? s.numel() / s[0] : 0);
    impl->shape = s.with_dim(0, count);
    return Tensor(std::move(impl));
  }

  bool shares_storage_with(const Tensor& other) const {
    return defined() && other.defined() && impl_->storage == other.impl_->storage;
  }

  // ---- autograd --------------------------------------------------------------------------------
  bool requires_grad() const { return checked_impl().requires_grad; }

  // Marks a leaf as a parameter or input whose gradient backward() accumulates.
  Tensor& set_requires_grad(bool enabled = true) {
    TESSERA_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can change requires_grad; this tensor was made by ",
                  "an op (use detach() first)");
    checked_impl().requires_grad = enabled;
    return *this;
  }

  bool is_leaf() const { return checked_impl().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node<T>>& grad_fn() const { return checked_impl().grad_fn; }

  // The gradient accumulated by backward(); undefined until one reaches this tensor.
  Tensor grad() const {
    auto& g = checked_impl().grad;
    return g ? Tensor(g) : Tensor();
  }
  void set_grad(const Tensor& gradient) const {
    if (gradient.defined())
      TESSERA_CHECK(gradient.shape() == shape(), "set_grad: gradient shape ", gradient.shape(),
                    " differs from tensor shape ", shape());
    checked_impl().grad = gradient.impl_;
  }
  // Sets the accumulated gradient to zeros (keeping its memory).
  void zero_grad() const {
    if (auto& g = checked_impl().grad) std::fill(g->storage->data() + g->offset, g->storage->data() + g->offset + g->shape.numel(), T(0));
  }

  // Back-propagates from this tensor. Without an argument it must hold one element (a loss); the graph is
  // released afterwards unless retain_graph is set. Defined in autograd/engine.hpp.
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;

  const std::shared_ptr<detail::TensorImpl<T>>& impl() const { return impl_; }

 private:
  detail::TensorImpl<T>& checked_impl() const {
    TESSERA_CHECK(impl_ != nullptr, "Tensor: operation on an undefined tensor");
    return *impl_;
  }

  std::shared_ptr<detail::TensorImpl<T>> impl_;
};

namespace detail {

template <class T>
void print_block(std::ostream& os, const T* data, const Shape& shape, int dim, int indent) {
  constexpr int64_t kEdgeItems = 3;
  const int64_t n = shape[dim];
  const int64_t inner = [&] {
    int64_t s = 1;
    for (int d = dim + 1; d < shape.rank(); ++d) s *= shape[d];
    return s;
  }();
  const bool summarize = n > 2 * kEdgeItems + 1;
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && i == kEdgeItems) {
      os << (dim + 1 == shape.rank() ? "..., " : "...,\n" + std::string(static_cast<size_t>(indent + 1), ' '));
      i = n - kEdgeItems;
    }
    if (dim + 1 == shape.rank()) {
      os << std::setw(10) << data[i];
    } else {
      print_block(os, data + i * inner, shape, dim + 1, indent + 1);
    }
    if (i + 1 < n) os << (dim + 1 == shape.rank() ? ", " : ",\n" + std::string(static_cast<size_t>(indent + 1), ' '));
  }
  os << ']';
}

}  // namespace detail

template <class T>
std::ostream& operator<<(std::ostream& os, const Tensor<T>& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  std::ostringstream body;
  body << std::setprecision(4) << std::fixed;
  if (t.rank() == 0)
    body << t.data()[0];
  else
    detail::print_block(body, t.data(), t.shape(), 0, 7);
  os << "tensor(" << body.str() << ", shape=" << t.shape();
  if (t.requires_grad()) os << ", requires_grad";
  return os << ')';
}

}  // namespace tessera
