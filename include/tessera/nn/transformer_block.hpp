// nn::TransformerBlock (timm's Block): pre-norm residual attention and MLP with optional LayerScale (ls1, ls2),
//   x = x + drop_path(ls1(attn(norm1(x))));  x = x + drop_path(ls2(mlp(norm2(x)))),
// each residual add fused into the branch's last Linear when nothing random sits between them (a LayerScale is
// then folded into that Linear's weight and bias).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/attention.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/layer_norm.hpp"
#include "tessera/nn/layer_scale.hpp"
#include "tessera/nn/mlp.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/ops/elementwise.hpp"
#include "tessera/ops/matmul.hpp"

namespace tessera::nn {

struct TransformerBlockOptions {
  int64_t dim = 768;
  int64_t num_heads = 12;
  int64_t mlp_hidden_dim = 3072;
  bool qkv_bias = true;
  double attn_drop = 0.0;
  double proj_drop = 0.0;
  double drop_path = 0.0;
  double layer_norm_eps = 1e-6;
  double init_values = 0.0;  // LayerScale's starting gamma; 0 is no LayerScale (timm's init_values None)
};

template <class T>
class TransformerBlock : public Module<T> {
 public:
  explicit TransformerBlock(const TransformerBlockOptions& o, Generator& generator = default_generator())
      : Module<T>("Block"),
        norm1(o.dim, o.layer_norm_eps),
        attn(o.dim, o.num_heads, o.qkv_bias, o.attn_drop, o.proj_drop, generator),
        drop_path1(o.drop_path),
        norm2(o.dim, o.layer_norm_eps),
        mlp(o.dim, o.mlp_hidden_dim, o.proj_drop, generator),
        drop_path2(o.drop_path) {
    TESSERA_CHECK(o.init_values >= 0.0, "Block: init_values (LayerScale) must be 0 (off) or positive, got ",
                  o.init_values);
    if (o.init_values > 0.0) {
      ls1 = std::make_unique<LayerScale<T>>(o.dim, o.init_values);
      ls2 = std::make_unique<LayerScale<T>>(o.dim, o.init_values);
    }
    this->register_module("norm1", norm1);
    this->register_module("attn", attn);
    if (ls1) this->register_module("ls1", *ls1);
    this->register_module("drop_path1", drop_path1);
    this->register_module("norm2", norm2);
    this->register_module("mlp", mlp);
    if (ls2) this->register_module("ls2", *ls2);
    this->register_module("drop_path2", drop_path2);
  }

  // x is (B, N, dim); returns the same shape. When a branch's last dropout and drop-path are the identity (eval
  // mode or rate 0), its residual add is fused into the branch's last Linear (ops::linear_residual), with the
  // branch's LayerScale folded into that Linear's parameters.
  Tensor<T> forward(const Tensor<T>& x) {
    Tensor<T> h;
    if (attn.proj_drop.is_identity() && drop_path1.is_identity()) {
      const auto [weight, bias] = scaled(ls1.get(), attn.proj.weight, attn.proj.bias);
      h = ops::linear_residual(attn.attend(norm1(x)), weight, bias, x);
    } else {
      h = ops::add(x, drop_path1(scaled(ls1.get(), attn(norm1(x)))));
    }
    if (mlp.drop2.is_identity() && drop_path2.is_identity()) {
      const auto [weight, bias] = scaled(ls2.get(), mlp.fc2.weight, mlp.fc2.bias);
      return ops::linear_residual(mlp.hidden(norm2(h)), weight, bias, h);
    }
    return ops::add(h, drop_path2(scaled(ls2.get(), mlp(norm2(h)))));
  }
  Tensor<T> operator()(const Tensor<T>& x) { return forward(x); }

  bool has_layer_scale() const { return ls1 != nullptr; }

  LayerNorm<T> norm1;
  MultiHeadAttention<T> attn;
  std::unique_ptr<LayerScale<T>> ls1;  // null without LayerScale (timm's Identity)
  DropPath<T> drop_path1;
  LayerNorm<T> norm2;
  MLP<T> mlp;
  std::unique_ptr<LayerScale<T>> ls2;
  DropPath<T> drop_path2;

 private:
  static Tensor<T> scaled(const LayerScale<T>* scale, const Tensor<T>& x) { return scale ? (*scale)(x) : x; }
  static std::pair<Tensor<T>, Tensor<T>> scaled(const LayerScale<T>* scale, const Tensor<T>& weight,
                                                const Tensor<T>& bias) {
    return scale ? scale->fold_into(weight, bias) : std::pair<Tensor<T>, Tensor<T>>{weight, bias};
  }
};

}  // namespace tessera::nn
