// nn::TransformerBlock (timm's Block): pre-norm residual attention and MLP,
//   x = x + drop_path(attn(norm1(x)));  x = x + drop_path(mlp(norm2(x))),
// each residual add fused into the branch's last Linear when nothing random sits between them.
#pragma once

#include <cstdint>

#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/attention.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/layer_norm.hpp"
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
    this->register_module("norm1", norm1);
    this->register_module("attn", attn);
    this->register_module("drop_path1", drop_path1);
    this->register_module("norm2", norm2);
    this->register_module("mlp", mlp);
    this->register_module("drop_path2", drop_path2);
  }

  // x is (B, N, dim); returns the same shape. When a branch's last dropout and drop-path are the identity (eval
  // mode or rate 0), its residual add is fused into the branch's last Linear (ops::linear_residual).
  Tensor<T> forward(const Tensor<T>& x) {
    const Tensor<T> h = attn.proj_drop.is_identity() && drop_path1.is_identity()
                            ? ops::linear_residual(attn.attend(norm1(x)), attn.proj.weight, attn.proj.bias, x)
                            : ops::add(x, drop_path1(attn(norm1(x))));
    return mlp.drop2.is_identity() && drop_path2.is_identity()
               ? ops::linear_residual(mlp.hidden(norm2(h)), mlp.fc2.weight, mlp.fc2.bias, h)
               : ops::add(h, drop_path2(mlp(norm2(h))));
  }
  Tensor<T> operator()(const Tensor<T>& x) { return forward(x); }

  LayerNorm<T> norm1;
  MultiHeadAttention<T> attn;
  DropPath<T> drop_path1;
  LayerNorm<T> norm2;
  MLP<T> mlp;
  DropPath<T> drop_path2;
};

}  // namespace tessera::nn
