// Differentiable element-wise ops: add, sub, mul, div with broadcasting, their scalar forms, and unary maps
// (neg, exp, log, sqrt, pow, tanh, relu), plus the arithmetic operators on Tensor.
#pragma once

#include <cmath>

#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/elementwise.hpp"
#include "tessera/ops/broadcast.hpp"

namespace tessera::ops {

namespace detail {

// out = f(a, b) over the broadcast shape of a and b.
template <class T, class F>
Tensor<T> broadcast_binary(const Tensor<T>& a, const Tensor<T>& b, const char* op, F f) {
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor<T> out = Tensor<T>::empty(out_shape);
  if (out.numel() == 0) return out;
  int64_t row = 0;
  if (a.shape() == b.shape()) {
    kernels::map_binary(out.data(), a.data(), b.data(), out.numel(), f);
  } else if (a.shape() == out_shape && (row = broadcast_row_length(b.shape(), out_shape)) > 0) {
    kernels::map_binary_rows(out.data(), row, a.data(), row, b.data(), out.numel() / row, row, f);  // a + bias
  } else if (b.shape() == out_shape && (row = broadcast_row_length(a.shape(), out_shape)) > 0) {
    kernels::map_binary_rows<true>(out.data(), row, b.data(), row, a.data(), out.numel() / row, row, f);
  } else if (out_shape.rank() == 0) {
    out.data()[0] = f(a.data()[0], b.data()[0]);
  } else {
    const auto sa = broadcast_strides(a.shape(), out_shape), sb = broadcast_strides(b.shape(), out_shape);
    kernels::map_binary_strided(out.data(), a.data(), sa.data(), b.data(), sb.data(), out_shape.dims().data(),
                                out_shape.rank(), f);
  }
  return out;
}

template <class T, class F>
Tensor<T> unary(const Tensor<T>& a, F f) {
  Tensor<T> out = Tensor<T>::empty(a.shape());
  kernels::map_unary(out.data(), a.data(), a.numel(), f);
  return out;
}

// g * df, element-wise, where df is computed from one saved tensor of the same shape.
template <class T, class F>
Tensor<T> chain(const Tensor<T>& grad_output, const Tensor<T>& saved, F local_derivative) {
  Tensor<T> out = Tensor<T>::empty(grad_output.shape());
  kernels::map_binary(out.data(), grad_output.data(), saved.data(), out.numel(),
                      [&](T g, T s) { return g * local_derivative(s); });
  return out;
}

}  // namespace detail

template <class T>
Tensor<T> add(const Tensor<T>& a, const Tensor<T>& b) {
  Tensor<T> out = detail::broadcast_binary(a, b, "add", [](T x, T y) { return x + y; });
  autograd::record<T>(out, "add", {a, b},
                      [sa = a.shape(), sb = b.shape()](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
                        return autograd::Grads<T>{needs[0] ? sum_to_shape(g, sa) : Tensor<T>(),
                                                  needs[1] ? sum_to_shape(g, sb) : Tensor<T>()};
                      });
  return out;
}

template <class T>
Tensor<T> sub(const Tensor<T>& a, const Tensor<T>& b) {
  Tensor<T> out = detail::broadcast_binary(a, b, "sub", [](T x, T y) { return x - y; });
  autograd::record<T>(out, "sub", {a, b},
                      [sa = a.shape(), sb = b.shape()](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
                        Tensor<T> gb;
                        if (needs[1]) gb = sum_to_shape(detail::unary(g, [](T x) { return -x; }), sb);
                        return autograd::Grads<T>{needs[0] ? sum_to_shape(g, sa) : Tensor<T>(), gb};
                      });
  return out;
}

template <class T>
Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b) {
  Tensor<T> out = detail::broadcast_binary(a, b, "mul", [](T x, T y) { return x * y; });
  autograd::record<T>(out, "mul", {a, b},
                      [a = a.detach(), b = b.detach()](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
                        auto times = [](T x, T y) { return x * y; };
                        Tensor<T> ga, gb;
                        if (needs[0]) ga = sum_to_shape(detail::broadcast_binary(g, b, "mul", times), a.shape());
                        if (needs[1]) gb = sum_to_shape(detail::broadcast_binary(g, a, "mul", times), b.shape());
                        return autograd::Grads<T>{ga, gb};
                      });
  return out;
}

template <class T>
Tensor<T> div(const Tensor<T>& a, const Tensor<T>& b) {
  Tensor<T> out = detail::broadcast_binary(a, b, "div", [](T x, T y) { return x / y; });
  autograd::record<T>(
      out, "div", {a, b},
      [a = a.detach(), b = b.detach(), out = out.detach()](const Tensor<T>& g, const autograd::NeedsGrad& needs) {
        Tensor<T> ga, gb;
        if (needs[0]) ga = sum_to_shape(detail::broadcast_binary(g, b, "div", [](T x, T y) { return x / y; }), a.shape());
        if (needs[1]) {
          // d(a/b)/db = -out / b
          Tensor<T> g_out = detail::broadcast_binary(g, out, "div", [](T x, T y) { return -x * y; });
          gb = sum_to_shape(detail::broadcast_binary(g_out, b, "div", [](T x, T y) { return x / y; }), b.shape());
        }
        return autograd::Grads<T>{ga, gb};
      });
  return out;
}

// ---- scalar forms ----------------------------------------------------------------------------------

template <class T>
Tensor<T> add(const Tensor<T>& a, T s) {
  Tensor<T> out = detail::unary(a, [s](T x) { return x + s; });
  autograd::record<T>(out, "add_scalar", {a},
                      [](const Tensor<T>& g, const autograd::NeedsGrad&) { return autograd::Grads<T>{g}; });
  return out;
}

template <class T>
Tensor<T> sub(const Tensor<T>& a, T s) {
  return add(a, -s);
}

template <class T>
Tensor<T> mul(const Tensor<T>& a, T s) {
  Tensor<T> out = detail::unary(a, [s](T x) { return x * s; });
  autograd::record<T>(out, "mul_scalar", {a}, [s](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{detail::unary(g, [s](T x) { return x * s; })};
  });
  return out;
}

template <class T>
Tensor<T> div(const Tensor<T>& a, T s) {
  return mul(a, T(1) / s);
}

// s - a and s / a, for the operators with the scalar on the left.
template <class T>
Tensor<T> rsub(T s, const Tensor<T>& a) {
  Tensor<T> out = detail::unary(a, [s](T x) { return s - x; });
  autograd::record<T>(out, "rsub_scalar", {a}, [](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{detail::unary(g, [](T x) { return -x; })};
  });
  return out;
}

template <class T>
Tensor<T> rdiv(T s, const Tensor<T>& a) {
  Tensor<T> out = detail::unary(a, [s](T x) { return s / x; });
  autograd::record<T>(out, "rdiv_scalar", {a},
                      [a = a.detach(), out = out.detach()](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        // d(s/a)/da = -(s/a) / a
                        Tensor<T> ga = detail::broadcast_binary(g, out, "rdiv", [](T x, T y) { return -x * y; });
                        return autograd::Grads<T>{detail::broadcast_binary(ga, a, "rdiv", [](T x, T y) { return x / y; })};
                      });
  return out;
}

// ---- unary maps ------------------------------------------------------------------------------------

template <class T>
Tensor<T> neg(const Tensor<T>& a) {
  return mul(a, T(-1));
}

template <class T>
Tensor<T> exp(const Tensor<T>& a) {
  Tensor<T> out = detail::unary(a, [](T x) { return std::exp(x); });
  autograd::record<T>(out, "exp", {a}, [out = out.detach()](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{detail::chain(g, out, [](T y) { return y; })};
  });
  return out;
}

template <class T>
Tensor<T> log(const Tensor<T>& a) {
  Tensor<T> out = detail::unary(a, [](T x) { return std::log(x); });
  autograd::record<T>(out, "log", {a}, [a = a.detach()](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{detail::chain(g, a, [](T x) { return T(1) / x; })};
  });
  return out;
}

template <class T>
Tensor<T> sqrt(const Tensor<T>& a) {
  Tensor<T> out = detail::unary(a, [](T x) { return std::sqrt(x); });
  autograd::record<T>(out, "sqrt", {a}, [out = out.detach()](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{detail::chain(g, out, [](T y) { return T(0.5) / y; })};
  });
  return out;
}

// a ** exponent, element-wise, for a scalar exponent.
template <class T>
Tensor<T> pow(const Tensor<T>& a, T exponent) {
  Tensor<T> out = detail::unary(a, [exponent](T x) { return std::pow(x, exponent); });
  autograd::record<T>(out, "pow", {a}, [a = a.detach(), exponent](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{
        detail::chain(g, a, [exponent](T x) { return exponent * std::pow(x, exponent - T(1)); })};
  });
  return out;
}

template <class T>
Tensor<T> tanh(const Tensor<T>& a) {
  Tensor<T> out = detail::unary(a, [](T x) { return std::tanh(x); });
  autograd::record<T>(out, "tanh", {a}, [out = out.detach()](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{detail::chain(g, out, [](T y) { return T(1) - y * y; })};
  });
  return out;
}

template <class T>
Tensor<T> relu(const Tensor<T>& a) {
  Tensor<T> out = detail::unary(a, [](T x) { return x > T(0) ? x : T(0); });
  autograd::record<T>(out, "relu", {a}, [a = a.detach()](const Tensor<T>& g, const autograd::NeedsGrad&) {
    return autograd::Grads<T>{detail::chain(g, a, [](T x) { return x > T(0) ? T(1) : T(0); })};
  });
  return out;
}

}  // namespace tessera::ops

namespace tessera {

template <class T> Tensor<T> operator+(const Tensor<T>& a, const Tensor<T>& b) { return ops::add(a, b); }
template <class T> Tensor<T> operator-(const Tensor<T>& a, const Tensor<T>& b) { return ops::sub(a, b); }
template <class T> Tensor<T> operator*(const Tensor<T>& a, const Tensor<T>& b) { return ops::mul(a, b); }
template <class T> Tensor<T> operator/(const Tensor<T>& a, const Tensor<T>& b) { return ops::div(a, b); }
template <class T> Tensor<T> operator-(const Tensor<T>& a) { return ops::neg(a); }
template <class T> Tensor<T> operator+(const Tensor<T>& a, std::type_identity_t<T> s) { return ops::add(a, s); }
template <class T> Tensor<T> operator-(const Tensor<T>& a, std::type_identity_t<T> s) { return ops::sub(a, s); }
template <class T> Tensor<T> operator*(const Tensor<T>& a, std::type_identity_t<T> s) { return ops::mul(a, s); }
template <class T> Tensor<T> operator/(const Tensor<T>& a, std::type_identity_t<T> s) { return ops::div(a, s); }
template <class T> Tensor<T> operator+(std::type_identity_t<T> s, const Tensor<T>& a) { return ops::add(a, s); }
template <class T> Tensor<T> operator-(std::type_identity_t<T> s, const Tensor<T>& a) { return ops::rsub(s, a); }
template <class T> Tensor<T> operator*(std::type_identity_t<T> s, const Tensor<T>& a) { return ops::mul(a, s); }
template <class T> Tensor<T> operator/(std::type_identity_t<T> s, const Tensor<T>& a) { return ops::rdiv(s, a); }

}  // namespace tessera
