// nn::MultiHeadAttention (timm's Attention): qkv Linear, scaled dot-product attention per head, proj Linear, with
// attention and projection dropout and, on request, each head's attention probabilities kept for visualisation.
// The attention math between the two Linears is one swappable function: by default the fused ops::attention kernel
// for float and composed_attention (differentiable ops) for double.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/activation.hpp"
#include "tessera/ops/attention.hpp"
#include "tessera/ops/dropout.hpp"
#include "tessera/ops/elementwise.hpp"
#include "tessera/ops/matmul.hpp"
#include "tessera/ops/reshape.hpp"
#include "tessera/ops/shape_ops.hpp"

namespace tessera::nn {

// The attention between the qkv and proj Linears: qkv (B, N, 3·H·d) -> (B, N, H·d). It drops attention
// probabilities with dropout_p when training (drawing from generator, default_generator() when null) and, when
// probs_out is given, stores there the probabilities before dropout, (B, H, N, N). ops::attention (the fused
// kernel) has this signature too.
template <class T>
using AttentionFn = std::function<Tensor<T>(const Tensor<T>& qkv, int num_heads, double dropout_p, bool training,
                                            Generator* generator, Tensor<T>* probs_out)>;

// The attention composed from differentiable ops, exactly timm's unfused path:
//   q, k, v = qkv.reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4);  attn = softmax((q·d^-½) kᵀ);  x = dropout(attn) v;
//   x.transpose(1, 2).reshape(B, N, H·d).
template <class T>
Tensor<T> composed_attention(const Tensor<T>& qkv, int num_heads, double dropout_p = 0.0, bool training = false,
                             Generator* generator = nullptr, Tensor<T>* probs_out = nullptr) {
  TESSERA_CHECK(qkv.rank() == 3, "composed_attention: qkv must be (B, N, 3*H*d), got shape ", qkv.shape());
  TESSERA_CHECK(num_heads >= 1 && qkv.size(2) > 0 && qkv.size(2) % (3 * num_heads) == 0,
                "composed_attention: the last dimension of qkv shape ", qkv.shape(), " must be 3 * num_heads * d with ",
                "num_heads = ", num_heads);
  const int64_t B = qkv.size(0), N = qkv.size(1), H = num_heads, d = qkv.size(2) / (3 * H);
  const Tensor<T> heads = ops::permute(ops::reshape(qkv, {B, N, 3, H, d}), {2, 0, 3, 1, 4});  // (3, B, H, N, d)
  const Tensor<T> q = ops::mul(ops::select(heads, 0, 0), static_cast<T>(std::pow(static_cast<double>(d), -0.5)));
  const Tensor<T> k = ops::select(heads, 0, 1);
  const Tensor<T> v = ops::select(heads, 0, 2);
  const Tensor<T> attn = ops::softmax(ops::matmul(q, ops::transpose(k, -2, -1)));  // (B, H, N, N)
  if (probs_out) *probs_out = attn.detach();
  const Tensor<T> dropped = ops::dropout(attn, dropout_p, training, generator ? *generator : default_generator());
  const Tensor<T> x = ops::matmul(dropped, v);                                         // (B, H, N, d)
  return ops::reshape(ops::transpose(x, 1, 2), {B, N, H * d});
}

// The attention MultiHeadAttention starts with, one overload per element type: the fused kernel (ops::attention)
// for float, where speed matters, and composed_attention for double, where gradient checks exercise the composed ops.
template <class T>
  requires std::same_as<T, float>
AttentionFn<T> default_attention_fn() {
  return &ops::attention<T>;
}

template <class T>
  requires std::same_as<T, double>
AttentionFn<T> default_attention_fn() {
  return &composed_attention<T>;
}

template <class T>
class MultiHeadAttention : public Module<T> {
 public:
  MultiHeadAttention(int64_t dim, int64_t num_heads, bool qkv_bias = true, double attn_drop = 0.0,
                     double proj_drop = 0.0, Generator& generator = default_generator())
      : Module<T>("Attention"),
        dim(dim),
        num_heads(num_heads),
        head_dim(num_heads > 0 ? dim / num_heads : 0),
        attn_drop(attn_drop),
        qkv(dim, 3 * dim, qkv_bias, generator),
        proj(dim, dim, true, generator),
        proj_drop(proj_drop) {
    TESSERA_CHECK(num_heads > 0 && dim % num_heads == 0, "Attention: dim ", dim, " is not divisible by num_heads ",
                  num_heads);
    TESSERA_CHECK(attn_drop >= 0.0 && attn_drop < 1.0, "Attention: attn_drop must be in [0, 1), got ", attn_drop);
    this->register_module("qkv", qkv);
    this->register_module("proj", proj);
    this->register_module("proj_drop", this->proj_drop);
  }

  // x is (B, N, dim); returns (B, N, dim).
  Tensor<T> forward(const Tensor<T>& x) { return proj_drop(proj(attend(x))); }

  // The heads' outputs side by side before the proj Linear: x (B, N, dim) -> (B, N, dim).
  Tensor<T> attend(const Tensor<T>& x) {
    TESSERA_CHECK(x.rank() == 3 && x.size(2) == dim, this->where(), ": expected input (B, N, ", dim, "), got shape ",
                  x.shape());
    Tensor<T> probs;
    const Tensor<T> mixed = attention_fn_(qkv(x), static_cast<int>(num_heads), attn_drop, this->is_training(),
                                          &this->generator(), keep_attention_ ? &probs : nullptr);
    if (keep_attention_) attention_probs_ = probs.clone();
    return mixed;
  }
  Tensor<T> operator()(const Tensor<T>& x) { return forward(x); }

  // When on, forward keeps a detached copy of the attention probabilities (B, num_heads, N, N), before dropout.
  void set_keep_attention(bool keep) {
    keep_attention_ = keep;
    if (!keep) attention_probs_ = Tensor<T>();
  }
  bool keeps_attention() const { return keep_attention_; }
  // The probabilities of the last forward while keeping was on; undefined otherwise.
  const Tensor<T>& attention_probs() const { return attention_probs_; }

  // Replaces the attention math (e.g. with nn::composed_attention<T>, or ops::attention<T>, the fused kernel).
  void set_attention_fn(AttentionFn<T> fn) {
    TESSERA_CHECK(static_cast<bool>(fn), this->where(), ": set_attention_fn needs a callable");
    attention_fn_ = std::move(fn);
  }

  const int64_t dim;
  const int64_t num_heads;
  const int64_t head_dim;
  const double attn_drop;
  Linear<T> qkv;
  Linear<T> proj;
  Dropout<T> proj_drop;

 private:
  AttentionFn<T> attention_fn_ = default_attention_fn<T>();
  bool keep_attention_ = false;
  Tensor<T> attention_probs_;
};

}  // namespace tessera::nn
