// Multi-head self-attention, forward and forward+backward, at the CIFAR ViT shape and at ViT-B/16's: the fused kernel
// against the composed kernel path (permute copies, batched GEMMs, a scale pass, softmax, permute back), and
// ops::attention against the same attention composed from differentiable ops (autograd included).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tessera/autograd/engine.hpp>
#include <tessera/core/rng.hpp>
#include <tessera/core/storage.hpp>
#include <tessera/kernels/attention.hpp>
#include <tessera/kernels/gemm/gemm.hpp>
#include <tessera/ops/activation.hpp>
#include <tessera/ops/attention.hpp>
#include <tessera/ops/elementwise.hpp>
#include <tessera/ops/matmul.hpp>
#include <tessera/ops/reshape.hpp>
#include <tessera/ops/shape_ops.hpp>

namespace {

using tessera::AlignedBuffer;
using tessera::Tensor;
namespace kernels = tessera::kernels;
namespace ops = tessera::ops;

struct Dims {
  int B, N, H, d;
  int64_t C() const { return int64_t(H) * d; }
  int64_t qkv() const { return int64_t(B) * N * 3 * C(); }
  int64_t out() const { return int64_t(B) * N * C(); }
  int64_t heads() const { return int64_t(B) * H * N * d; }  // one of q, k, v as (B, H, N, d)
  int64_t scores() const { return int64_t(B) * H * N * N; }
  double matmul_flops() const { return 2.0 * B * H * double(N) * N * d; }  // one of the four products
};

// shape 0: CIFAR ViT (dim 192, 3 heads, 8x8 patches + cls); shape 1: ViT-B/16 at 224 (dim 768, 12 heads).
const Dims kShapes[] = {{128, 65, 3, 64}, {32, 197, 12, 64}};

void fill_uniform(float* p, int64_t n, uint64_t seed) {
  tessera::Generator gen(seed);
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(gen.uniform(-1.0, 1.0));
}

// The unfused path, as separate ops would run it: every step reads and writes whole (B, H, ...) tensors.
struct Composed {
  Dims s;
  AlignedBuffer<float> q, k, v, S, P, O, dO, dP, dq, dk, dv;
  explicit Composed(const Dims& dims)
      : s(dims), q(s.heads()), k(s.heads()), v(s.heads()), S(s.scores()), P(s.scores()), O(s.heads()),
        dO(s.heads()), dP(s.scores()), dq(s.heads()), dk(s.heads()), dv(s.heads()) {}

  // heads[which] (B, H, N, d) = qkv (B, N, 3, H, d) for which in {q, k, v}.
  void split_heads(const float* qkv) {
    float* dst[3] = {q.data(), k.data(), v.data()};
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h)
        for (int which = 0; which < 3; ++which)
          for (int n = 0; n < s.N; ++n)
            std::copy_n(qkv + ((int64_t(b) * s.N + n) * 3 + which) * s.C() + int64_t(h) * s.d, s.d,
                        dst[which] + ((int64_t(b) * s.H + h) * s.N + n) * s.d);
  }

  // merged (B, N, H, d) (+)= heads (B, H, N, d); `which` and `row` place it inside a wider row (qkv's).
  void merge_heads(float* merged, const float* heads, int64_t row, int64_t which_offset, bool accumulate) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s.B; ++b)
      for (int n = 0; n < s.N; ++n)
        for (int h = 0; h < s.H; ++h) {
          const float* src = heads + ((int64_t(b) * s.H + h) * s.N + n) * s.d;
          float* dst = merged + (int64_t(b) * s.N + n) * row + which_offset + int64_t(h) * s.d;
          for (int c = 0; c < s.d; ++c) dst[c] = accumulate ? dst[c] + src[c] : src[c];
        }
  }

  void scale(float* x, int64_t n, float factor) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) x[i] *= factor;
  }

  void forward(float* out, const float* qkv) {
    const int N = s.N, d = s.d, BH = s.B * s.H;
    split_heads(qkv);
    kernels::gemm_batched(false, true, N, N, d, 1.0f, q.data(), d, int64_t(N) * d, k.data(), d, int64_t(N) * d, 0.0f,
                          S.data(), N, int64_t(N) * N, BH);
    scale(S.data(), s.scores(), 1.0f / std::sqrt(float(d)));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < int64_t(BH) * N; ++r) kernels::softmax_forward_row(P.data() + r * N, S.data() + r * N, N);
    kernels::gemm_batched(false, false, N, d, N, 1.0f, P.data(), N, int64_t(N) * N, v.data(), d, int64_t(N) * d, 0.0f,
                          O.data(), d, int64_t(N) * d, BH);
    merge_heads(out, O.data(), s.C(), 0, false);
  }

  void backward(float* dqkv, const float* dout) {
    const int N = s.N, d = s.d, BH = s.B * s.H;
    const int64_t Nd = int64_t(N) * d, NN = int64_t(N) * N;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h)
        for (int n = 0; n < N; ++n)
          std::copy_n(dout + (int64_t(b) * N + n) * s.C() + int64_t(h) * d, d,
                      dO.data() + ((int64_t(b) * s.H + h) * N + n) * d);
    kernels::gemm_batched(true, false, N, d, N, 1.0f, P.data(), N, NN, dO.data(), d, Nd, 0.0f, dv.data(), d, Nd, BH);
    kernels::gemm_batched(false, true, N, N, d, 1.0f, dO.data(), d, Nd, v.data(), d, Nd, 0.0f, dP.data(), N, NN, BH);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < int64_t(BH) * N; ++r) {
      const float* p = P.data() + r * N;
      float* g = dP.data() + r * N;
      float dot = 0.0f;
      for (int j = 0; j < N; ++j) dot += g[j] * p[j];
      for (int j = 0; j < N; ++j) g[j] = p[j] * (g[j] - dot);
    }
    scale(dP.data(), s.scores(), 1.0f / std::sqrt(float(d)));
    kernels::gemm_batched(false, false, N, d, N, 1.0f, dP.data(), N, NN, k.data(), d, Nd, 0.0f, dq.data(), d, Nd, BH);
    kernels::gemm_batched(true, false, N, d, N, 1.0f, dP.data(), N, NN, q.data(), d, Nd, 0.0f, dk.data(), d, Nd, BH);
    merge_heads(dqkv, dq.data(), 3 * s.C(), 0, true);
    merge_heads(dqkv, dk.data(), 3 * s.C(), s.C(), true);
    merge_heads(dqkv, dv.data(), 3 * s.C(), 2 * s.C(), true);
  }
};

struct Buffers {
  AlignedBuffer<float> qkv, out, probs, dout, dqkv;
  explicit Buffers(const Dims& s) : qkv(s.qkv()), out(s.out()), probs(s.scores()), dout(s.out()), dqkv(s.qkv()) {
    fill_uniform(qkv.data(), s.qkv(), 1);
    fill_uniform(dout.data(), s.out(), 2);
  }
};

// Arguments: shape index, threads. The FLOP counter counts the four (forward) or twelve (forward+backward) N²d
// products per call, a rate printed per second (FLOP=44.4G/s).
void set_up(benchmark::State& state, Dims& s) {
  s = kShapes[state.range(0)];
  omp_set_num_threads(static_cast<int>(state.range(1)));
  char label[96];
  std::snprintf(label, sizeof label, "B%d H%d N%d d%d, %d threads", s.B, s.H, s.N, s.d, static_cast<int>(state.range(1)));
  state.SetLabel(label);
}

void report(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP"] = benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_fused_forward(benchmark::State& state) {
  Dims s;
  set_up(state, s);
  Buffers buf(s);
  for (auto _ : state) {
    kernels::attention_forward(buf.out.data(), buf.probs.data(), buf.qkv.data(), s.B, s.N, s.H, s.d);
    benchmark::DoNotOptimize(buf.out.data());
  }
  report(state, 2 * s.matmul_flops());
}

void BM_composed_forward(benchmark::State& state) {
  Dims s;
  set_up(state, s);
  Buffers buf(s);
  Composed composed(s);
  for (auto _ : state) {
    composed.forward(buf.out.data(), buf.qkv.data());
    benchmark::DoNotOptimize(buf.out.data());
  }
  report(state, 2 * s.matmul_flops());
}

void BM_fused_forward_backward(benchmark::State& state) {
  Dims s;
  set_up(state, s);
  Buffers buf(s);
  for (auto _ : state) {
    kernels::attention_forward(buf.out.data(), buf.probs.data(), buf.qkv.data(), s.B, s.N, s.H, s.d);
    std::fill_n(buf.dqkv.data(), s.qkv(), 0.0f);
    kernels::attention_backward(buf.dqkv.data(), buf.dout.data(), buf.qkv.data(), buf.probs.data(), s.B, s.N, s.H, s.d);
    benchmark::DoNotOptimize(buf.dqkv.data());
  }
  report(state, 6 * s.matmul_flops());
}

void BM_composed_forward_backward(benchmark::State& state) {
  Dims s;
  set_up(state, s);
  Buffers buf(s);
  Composed composed(s);
  for (auto _ : state) {
    composed.forward(buf.out.data(), buf.qkv.data());
    std::fill_n(buf.dqkv.data(), s.qkv(), 0.0f);
    composed.backward(buf.dqkv.data(), buf.dout.data());
    benchmark::DoNotOptimize(buf.dqkv.data());
  }
  report(state, 6 * s.matmul_flops());
}

// timm's unfused attention from differentiable ops: qkv (B, N, 3·H·d) -> (B, N, H·d).
Tensor<float> composed_ops_attention(const Tensor<float>& qkv, int H) {
  const int64_t B = qkv.size(0), N = qkv.size(1), d = qkv.size(2) / (3 * H);
  const Tensor<float> heads = ops::permute(ops::reshape(qkv, {B, N, 3, H, d}), {2, 0, 3, 1, 4});  // (3, B, H, N, d)
  const Tensor<float> q = ops::select(heads, 0, 0), k = ops::select(heads, 0, 1), v = ops::select(heads, 0, 2);
  const Tensor<float> scores = ops::matmul(q, ops::transpose(k, -2, -1)) * (1.0f / std::sqrt(float(d)));
  const Tensor<float> o = ops::matmul(ops::softmax(scores), v);  // (B, H, N, d)
  return ops::reshape(ops::transpose(o, 1, 2), {B, N, H * d});
}

template <bool kFused>
void BM_op_forward_backward(benchmark::State& state) {
  Dims s;
  set_up(state, s);
  tessera::Generator gen(1);
  Tensor<float> qkv = Tensor<float>::uniform({s.B, s.N, 3 * s.C()}, -1.0f, 1.0f, gen).set_requires_grad();
  const Tensor<float> g = Tensor<float>::uniform({s.B, s.N, s.C()}, -1.0f, 1.0f, gen);
  for (auto _ : state) {
    qkv.set_grad(Tensor<float>());
    const Tensor<float> out = kFused ? ops::attention(qkv, s.H) : composed_ops_attention(qkv, s.H);
    out.backward(g);
    benchmark::DoNotOptimize(qkv.grad().data());
  }
  report(state, 6 * s.matmul_flops());
}

void BM_fused_op_forward_backward(benchmark::State& state) { BM_op_forward_backward<true>(state); }
void BM_composed_ops_forward_backward(benchmark::State& state) { BM_op_forward_backward<false>(state); }

void shapes_and_threads(benchmark::internal::Benchmark* b) {
  for (int shape : {0, 1})
    for (int threads : {1, 2}) b->Args({shape, threads});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_fused_forward)->Apply(shapes_and_threads);
BENCHMARK(BM_composed_forward)->Apply(shapes_and_threads);
BENCHMARK(BM_fused_forward_backward)->Apply(shapes_and_threads);
BENCHMARK(BM_composed_forward_backward)->Apply(shapes_and_threads);
BENCHMARK(BM_fused_op_forward_backward)->Apply(shapes_and_threads);
BENCHMARK(BM_composed_ops_forward_backward)->Apply(shapes_and_threads);
