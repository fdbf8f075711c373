// GEMM benchmarks: tessera's kernels::gemm vs Eigen 3.4 (row-major Maps, same flags and thread count)
// vs the reference loops (small shapes only), at the ViT-on-CIFAR shapes and 1024^3. Counter: FLOP, 2MNK
// per call, a rate printed per second (FLOP=44.4G/s).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <Eigen/Core>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <tessera/kernels/gelu.hpp>
#include <tessera/kernels/gemm/gemm.hpp>
#include <tessera/kernels/reference/gemm.hpp>
#include <vector>

namespace {

enum class Impl { Ours, Eigen, Reference };

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct AlignedFree {
  void operator()(float* p) const { ::operator delete(p, std::align_val_t{64}); }
};
using Buffer = std::unique_ptr<float[], AlignedFree>;

Buffer random_buffer(int64_t size, unsigned seed) {
  Buffer buffer(static_cast<float*>(::operator new(size_t(size) * sizeof(float), std::align_val_t{64})));
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < size; ++i) buffer[i] = dist(engine);
  return buffer;
}

// C (M,N) = op(A) op(B), A stored (M,K) or (K,M) when trans_a, B stored (K,N) or (N,K) when trans_b.
void bench_gemm(benchmark::State& state, Impl impl, bool trans_a, bool trans_b, int M, int N, int K) {
  const Buffer A = random_buffer(int64_t(M) * K, 1), B = random_buffer(int64_t(K) * N, 2),
               C = random_buffer(int64_t(M) * N, 3);
  const int lda = trans_a ? M : K, ldb = trans_b ? K : N;
  Eigen::setNbThreads(omp_get_max_threads());
  const Eigen::Map<const RowMajor> a(A.get(), trans_a ? K : M, trans_a ? M : K);
  const Eigen::Map<const RowMajor> b(B.get(), trans_b ? N : K, trans_b ? K : N);
  Eigen::Map<RowMajor> c(C.get(), M, N);
  for (auto _ : state) {
    switch (impl) {
      case Impl::Ours:
        tessera::kernels::gemm(trans_a, trans_b, M, N, K, 1.0f, A.get(), lda, B.get(), ldb, 0.0f, C.get(), N);
        break;
      case Impl::Eigen:
        if (trans_a && trans_b)
          c.noalias() = a.transpose() * b.transpose();
        else if (trans_a)
          c.noalias() = a.transpose() * b;
        else if (trans_b)
          c.noalias() = a * b.transpose();
        else
          c.noalias() = a * b;
        break;
      case Impl::Reference:
        tessera::kernels::reference::gemm<float>(trans_a, trans_b, M, N, K, 1.0f, A.get(), lda, B.get(), ldb, 0.0f,
                                                 C.get(), N);
        break;
    }
    benchmark::DoNotOptimize(C.get());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}

// Attention's per-head products as one strided batch, vs Eigen looping over the heads.
void bench_batched(benchmark::State& state, Impl impl, bool trans_b, int M, int N, int K, int batch) {
  const Buffer A = random_buffer(int64_t(M) * K * batch, 1), B = random_buffer(int64_t(K) * N * batch, 2),
               C = random_buffer(int64_t(M) * N * batch, 3);
  const int ldb = trans_b ? K : N;
  for (auto _ : state) {
    if (impl == Impl::Ours) {
      tessera::kernels::gemm_batched(false, trans_b, M, N, K, 1.0f, A.get(), K, int64_t(M) * K, B.get(), ldb,
                                     int64_t(K) * N, 0.0f, C.get(), N, int64_t(M) * N, batch);
    } else {
      Eigen::setNbThreads(1);
#pragma omp parallel for schedule(static)
      for (int item = 0; item < batch; ++item) {
        const Eigen::Map<const RowMajor> a(A.get() + int64_t(item) * M * K, M, K);
        const Eigen::Map<const RowMajor> b(B.get() + int64_t(item) * K * N, trans_b ? N : K, trans_b ? K : N);
        Eigen::Map<RowMajor> c(C.get() + int64_t(item) * M * N, M, N);
        if (trans_b)
          c.noalias() = a * b.transpose();
        else
          c.noalias() = a * b;
      }
    }
    benchmark::DoNotOptimize(C.get());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP"] = benchmark::Counter(2.0 * M * N * K * batch, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}

// fc1 forward, Y = gelu(X W^T + b) keeping the pre-activation: fused in gemm_ex, or composed from gemm_ex
// with bias, a copy of the pre-activation and kernels::gelu_forward.
void bench_fc1_gelu(benchmark::State& state, bool fused) {
  const int M = 8320, N = 384, K = 192;
  const Buffer X = random_buffer(int64_t(M) * K, 1), W = random_buffer(int64_t(N) * K, 2), bias = random_buffer(N, 3),
               Y = random_buffer(int64_t(M) * N, 4), pre = random_buffer(int64_t(M) * N, 5);
  for (auto _ : state) {
    if (fused) {
      tessera::kernels::gemm_ex(false, true, M, N, K, 1.0f, X.get(), K, W.get(), K, 0.0f, Y.get(), N,
                                {bias.get(), true, pre.get()});
    } else {
      tessera::kernels::gemm_ex(false, true, M, N, K, 1.0f, X.get(), K, W.get(), K, 0.0f, pre.get(), N,
                                {bias.get(), false, nullptr});
      tessera::kernels::gelu_forward(Y.get(), pre.get(), int64_t(M) * N);
    }
    benchmark::DoNotOptimize(Y.get());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}

const char* name(Impl impl) { return impl == Impl::Ours ? "ours" : impl == Impl::Eigen ? "eigen" : "reference"; }

// ViT on CIFAR: batch 128 x 65 tokens = 8320 rows; Linear layers (in K -> out N): qkv 192->576,
// attention projection 192->192, fc1 192->384, fc2 384->192. Forward Y = X W^T (W stored (N,K));
// backward dX = dY W, dW = dY^T X.
const int kRows = 8320;
const int kLinear[][2] = {{192, 576}, {192, 192}, {192, 384}, {384, 192}};
const char* kLayer[] = {"qkv", "proj", "fc1", "fc2"};

int register_benchmarks() {
  auto add = [](const std::string& label, Impl impl, bool ta, bool tb, int M, int N, int K) {
    benchmark::RegisterBenchmark(("gemm/" + label + "/" + name(impl)).c_str(), bench_gemm, impl, ta, tb, M, N, K)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (int layer = 0; layer < 4; ++layer) {
    const int K = kLinear[layer][0], N = kLinear[layer][1];
    const std::string shape = std::string(kLayer[layer]) + "_" + std::to_string(K) + "to" + std::to_string(N);
    for (Impl impl : {Impl::Ours, Impl::Eigen}) {
      add("fwd_" + shape, impl, false, true, kRows, N, K);  // Y (8320,N) = X (8320,K) W^T
      add("dX_" + shape, impl, false, false, kRows, K, N);  // dX (8320,K) = dY (8320,N) W (N,K)
      add("dW_" + shape, impl, true, false, N, K, kRows);   // dW (N,K) = dY^T X
    }
  }
  for (Impl impl : {Impl::Ours, Impl::Eigen}) add("square_1024", impl, false, false, 1024, 1024, 1024);
  // Small shapes where the reference loops finish in reasonable time.
  for (Impl impl : {Impl::Ours, Impl::Eigen, Impl::Reference}) {
    add("small_fwd_520x576x192", impl, false, true, 520, 576, 192);
    add("small_256", impl, false, false, 256, 256, 256);
  }
  for (bool fused : {true, false})
    benchmark::RegisterBenchmark(fused ? "gemm_ex/fc1_bias_gelu/fused" : "gemm_ex/fc1_bias_gelu/unfused",
                                 bench_fc1_gelu, fused)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  // Attention: 128 images x 3 heads, 65 tokens, head dim 64: scores = q k^T and out = p v.
  for (Impl impl : {Impl::Ours, Impl::Eigen}) {
    benchmark::RegisterBenchmark((std::string("gemm_batched/attn_qk/") + name(impl)).c_str(), bench_batched, impl, true,
                                 65, 65, 64, 384)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((std::string("gemm_batched/attn_pv/") + name(impl)).c_str(), bench_batched, impl,
                                 false, 65, 64, 65, 384)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return 0;
}

const int registered = register_benchmarks();

}  // namespace
