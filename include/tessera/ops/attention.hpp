// Differentiable fused multi-head self-attention over a packed qkv projection (timm's Attention between its two
// Linears): softmax(q kᵀ · d^-1/2) v per head, with optional attention dropout and attention-probability output.
#pragma once

#include <cstdint>
#include <limits>

#include "tessera/autograd/grad_mode.hpp"
#include "tessera/autograd/node.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/kernels/dispatch.hpp"

namespace tessera::ops {

// qkv is (B, N, 3·H·d) — the qkv Linear's output, columns [q heads | k heads | v heads], each head d wide — or the
// same elements as (B, N, 3, H, d). Returns (B, N, H·d), heads side by side (ready for the proj Linear).
// When training and dropout_p > 0, attention probabilities are dropped with probability dropout_p (kept ones scaled
// by 1/(1-dropout_p)); the mask comes from one draw of `generator` (default_generator() when null), so a seeded
// generator repeats it. probs_out, when given, receives the probabilities before dropout, (B, H, N, N); it shares
// the copy that backward reads, so leave it unchanged until backward has run. float runs the fused kernel, double
// the reference loops.
template <class T>
Tensor<T> attention(const Tensor<T>& qkv, int num_heads, double dropout_p = 0.0, bool training = false,
                    Generator* generator = nullptr, Tensor<T>* probs_out = nullptr) {
  TESSERA_CHECK(qkv.rank() == 3 || qkv.rank() == 5, "attention: qkv must be (B, N, 3*H*d) or (B, N, 3, H, d), got shape ",
                qkv.shape());
  TESSERA_CHECK(num_heads >= 1, "attention: num_heads must be at least 1, got ", num_heads, " (qkv shape ",
                qkv.shape(), ")");
  const int64_t B = qkv.size(0), N = qkv.size(1), H = num_heads;
  int64_t d = 0;
  if (qkv.rank() == 3) {
    const int64_t width = qkv.size(2);
    TESSERA_CHECK(width > 0 && width % (3 * H) == 0, "attention: the last dimension of qkv shape ", qkv.shape(),
                  " must be 3 * num_heads * head_dim = 3 * ", H, " * d with d >= 1, got ", width);
    d = width / (3 * H);
  } else {
    TESSERA_CHECK(qkv.size(2) == 3 && qkv.size(3) == H && qkv.size(4) >= 1, "attention: qkv shape ", qkv.shape(),
                  " must be (B, N, 3, ", H, ", d) with d >= 1 for num_heads = ", H);
    d = qkv.size(4);
  }
  TESSERA_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "attention: dropout_p must be in [0, 1), got ", dropout_p,
                " (qkv shape ", qkv.shape(), ")");
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  TESSERA_CHECK(B <= kMax && N <= kMax && 3 * H * d <= kMax, "attention: qkv shape ", qkv.shape(),
                " exceeds the kernel's int range");

  const bool use_dropout = training && dropout_p > 0.0;
  const double p = use_dropout ? dropout_p : 0.0;
  const uint64_t seed = use_dropout ? (generator ? *generator : default_generator()).next_u64() : 0;
  const bool records = autograd::grad_mode_enabled() && qkv.requires_grad();

  Tensor<T> out = Tensor<T>::empty(Shape{B, N, H * d});
  Tensor<T> probs;
  if (records || probs_out) probs = Tensor<T>::empty(Shape{B, H, N, N});
  const int b = int(B), n = int(N), h = int(H), hd = int(d);
  kernels::dispatch::attention_forward(out.data(), probs.defined() ? probs.data() : nullptr, qkv.data(), b, n, h, hd,
                                       p, seed);
  if (probs_out) *probs_out = probs;

  autograd::record<T>(out, "attention", {qkv},
                      [qkv = qkv.detach(), probs, b, n, h, hd, p, seed](const Tensor<T>& g, const autograd::NeedsGrad&) {
                        Tensor<T> dqkv(qkv.shape());  // zeros: the backward adds into it
                        kernels::dispatch::attention_backward(dqkv.data(), g.data(), qkv.data(), probs.data(), b, n,
                                                              h, hd, p, seed);
                        return autograd::Grads<T>{dqkv};
                      });
  return out;
}

}  // namespace tessera::ops
