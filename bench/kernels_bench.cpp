// Benchmarks of the row kernels (layer_norm, softmax, gelu, cross_entropy, adamw, patchify) at ViT sizes: the
// fast kernels against their plain references, with a parallel memcpy as the memory-bandwidth yardstick.
// The bytes counter counts bytes read plus bytes written per call, a rate printed per second (bytes=20.1G/s).
// Threads: OMP_NUM_THREADS.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstring>
#include <memory>
#include <string>
#include <tessera/core/rng.hpp>
#include <tessera/core/storage.hpp>
#include <tessera/kernels/adamw.hpp>
#include <tessera/kernels/cross_entropy.hpp>
#include <tessera/kernels/gelu.hpp>
#include <tessera/kernels/layer_norm.hpp>
#include <tessera/kernels/patchify.hpp>
#include <tessera/kernels/reference/adamw.hpp>
#include <tessera/kernels/reference/cross_entropy.hpp>
#include <tessera/kernels/reference/gelu.hpp>
#include <tessera/kernels/reference/layer_norm.hpp>
#include <tessera/kernels/reference/patchify.hpp>
#include <tessera/kernels/reference/softmax.hpp>
#include <tessera/kernels/softmax.hpp>
#include <vector>

namespace k = tessera::kernels;
namespace ref = tessera::kernels::reference;

namespace {

// A movable handle to a 64-byte aligned, zeroed float buffer.
class Buffer {
 public:
  explicit Buffer(int64_t n) : storage_(std::make_unique<tessera::AlignedBuffer<float>>(n)) {}
  float* data() { return storage_->data(); }

 private:
  std::unique_ptr<tessera::AlignedBuffer<float>> storage_;
};

const bool kContextAdded = [] {
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  return true;
}();

Buffer random_buffer(int64_t n, uint64_t seed, double stddev = 1.0) {
  Buffer b(n);
  tessera::Generator gen(seed);
  for (int64_t i = 0; i < n; ++i) b.data()[i] = static_cast<float>(gen.normal(0.0, stddev));
  return b;
}

void set_bandwidth(benchmark::State& state, double bytes_per_call) {
  state.counters["bytes"] = benchmark::Counter(bytes_per_call, benchmark::Counter::kIsIterationInvariantRate);
}

constexpr double kF = sizeof(float);

// ---------------------------------------------------------------------------------------------- yardstick

// dst = src with the calling thread only.
void BM_copy_memcpy(benchmark::State& state) {
  const int64_t n = state.range(0);
  Buffer src = random_buffer(n, 1), dst(n);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), n * sizeof(float));
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, 2 * kF * n);
}

// dst = src in blocks spread over the OpenMP threads, as the kernels spread their work.
void BM_copy_parallel(benchmark::State& state) {
  const int64_t n = state.range(0);
  Buffer src = random_buffer(n, 1), dst(n);
  for (auto _ : state) {
    k::simd::parallel_flat_blocks(n, [&](int64_t begin, int64_t count) {
      std::memcpy(dst.data() + begin, src.data() + begin, count * sizeof(float));
    });
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, 2 * kF * n);
}

// ---------------------------------------------------------------------------------------------- layer_norm

template <bool fast>
void BM_layer_norm_forward(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), cols = static_cast<int>(state.range(1));
  const int64_t n = int64_t{rows} * cols;
  Buffer inp = random_buffer(n, 2), out(n), w = random_buffer(cols, 3), b = random_buffer(cols, 4);
  Buffer mean(rows), rstd(rows);
  for (auto _ : state) {
    if constexpr (fast)
      k::layer_norm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), rows, cols, 1e-5f);
    else
      ref::layer_norm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), rows, cols, 1e-5f);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, kF * (2.0 * n + 2.0 * rows));  // read inp, write out, mean, rstd
}

template <bool fast>
void BM_layer_norm_backward(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), cols = static_cast<int>(state.range(1));
  const int64_t n = int64_t{rows} * cols;
  Buffer inp = random_buffer(n, 2), out(n), w = random_buffer(cols, 3), b = random_buffer(cols, 4);
  Buffer mean(rows), rstd(rows), dout = random_buffer(n, 5), dinp(n), dw(cols), db(cols);
  k::layer_norm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), rows, cols, 1e-5f);
  for (auto _ : state) {
    if constexpr (fast)
      k::layer_norm_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), mean.data(),
                             rstd.data(), rows, cols);
    else
      ref::layer_norm_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), mean.data(),
                               rstd.data(), rows, cols);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, kF * 4.0 * n);  // read dout, inp, dinp; write dinp
}

// ---------------------------------------------------------------------------------------------- softmax

template <bool fast>
void BM_softmax_forward(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), cols = static_cast<int>(state.range(1));
  const int64_t n = int64_t{rows} * cols;
  Buffer inp = random_buffer(n, 6, 3.0), out(n);
  for (auto _ : state) {
    if constexpr (fast)
      k::softmax_forward(out.data(), inp.data(), rows, cols);
    else
      ref::softmax_forward(out.data(), inp.data(), rows, cols);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, kF * 2.0 * n);
}

template <bool fast>
void BM_softmax_backward(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), cols = static_cast<int>(state.range(1));
  const int64_t n = int64_t{rows} * cols;
  Buffer inp = random_buffer(n, 6, 3.0), out(n), dout = random_buffer(n, 7), dinp(n);
  k::softmax_forward(out.data(), inp.data(), rows, cols);
  for (auto _ : state) {
    if constexpr (fast)
      k::softmax_backward(dinp.data(), dout.data(), out.data(), rows, cols);
    else
      ref::softmax_backward(dinp.data(), dout.data(), out.data(), rows, cols);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, kF * 4.0 * n);  // read dout, out, dinp; write dinp
}

// ---------------------------------------------------------------------------------------------- gelu

template <bool fast>
void BM_gelu_forward(benchmark::State& state) {
  const int64_t n = state.range(0) * state.range(1);
  Buffer inp = random_buffer(n, 8, 2.0), out(n);
  for (auto _ : state) {
    if constexpr (fast)
      k::gelu_forward(out.data(), inp.data(), n);
    else
      ref::gelu_forward(out.data(), inp.data(), n);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, kF * 2.0 * n);
}

template <bool fast>
void BM_gelu_backward(benchmark::State& state) {
  const int64_t n = state.range(0) * state.range(1);
  Buffer inp = random_buffer(n, 8, 2.0), dout = random_buffer(n, 9), dinp(n);
  for (auto _ : state) {
    if constexpr (fast)
      k::gelu_backward(dinp.data(), dout.data(), inp.data(), n);
    else
      ref::gelu_backward(dinp.data(), dout.data(), inp.data(), n);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, kF * 4.0 * n);  // read dout, inp, dinp; write dinp
}

// ---------------------------------------------------------------------------------------------- cross_entropy

template <bool fast>
void BM_cross_entropy_forward_backward(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), classes = static_cast<int>(state.range(1));
  const int64_t n = int64_t{rows} * classes;
  Buffer logits = random_buffer(n, 10, 3.0), probs(n), dlogits(n), losses(rows), dlosses(rows);
  std::vector<int64_t> targets(rows);
  tessera::Generator gen(11);
  for (auto& t : targets) t = static_cast<int64_t>(gen.below(static_cast<uint64_t>(classes)));
  for (int r = 0; r < rows; ++r) dlosses.data()[r] = 1.0f / static_cast<float>(rows);
  for (auto _ : state) {
    if constexpr (fast) {
      k::cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), rows, classes, 0.1f);
      k::cross_entropy_backward(dlogits.data(), dlosses.data(), probs.data(), targets.data(), rows, classes, 0.1f);
    } else {
      ref::cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), rows, classes, 0.1f);
      ref::cross_entropy_backward(dlogits.data(), dlosses.data(), probs.data(), targets.data(), rows, classes, 0.1f);
    }
    benchmark::ClobberMemory();
  }
  set_bandwidth(state,
                kF * 5.0 * n);  // forward: read logits, write probs; backward: read probs, dlogits, write dlogits
}

// ---------------------------------------------------------------------------------------------- adamw

template <bool fast>
void BM_adamw_step(benchmark::State& state) {
  const int64_t n = state.range(0);
  Buffer param = random_buffer(n, 12, 0.02), grad = random_buffer(n, 13, 1e-3), m(n), v(n);
  int step = 0;
  for (auto _ : state) {
    step = step % 1000 + 1;
    if constexpr (fast)
      k::adamw_step(param.data(), grad.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.999, 1e-8, 0.05, step);
    else
      ref::adamw_step(param.data(), grad.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.999, 1e-8, 0.05, step);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, kF * 7.0 * n);  // read param, grad, m, v; write param, m, v
}

// ---------------------------------------------------------------------------------------------- patchify

template <bool fast>
void BM_patchify_forward_backward(benchmark::State& state) {
  const int B = static_cast<int>(state.range(0)), C = 3, H = 32, W = 32, p = static_cast<int>(state.range(1));
  const int64_t n = int64_t{B} * C * H * W;
  Buffer image = random_buffer(n, 14), patches(n), dimage(n);
  for (auto _ : state) {
    if constexpr (fast) {
      k::patchify_forward(patches.data(), image.data(), B, C, H, W, p);
      k::patchify_backward(dimage.data(), patches.data(), B, C, H, W, p);
    } else {
      ref::patchify_forward(patches.data(), image.data(), B, C, H, W, p);
      ref::patchify_backward(dimage.data(), patches.data(), B, C, H, W, p);
    }
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, kF * 5.0 * n);  // forward: read image, write patches; backward: read patches, dimage, write
}

}  // namespace

// ViT-CIFAR sizes: batch 128, 65 tokens (64 patches + cls) -> 8320 rows; dim 192, MLP hidden 384; 3 heads.
// Copies of the kernels' buffer sizes (cache-resident on a 32 MiB L3) and of 128 MiB (main memory).
BENCHMARK(BM_copy_memcpy)->Arg(8320 * 192)->Arg(8320 * 384)->Arg(32 << 20)->UseRealTime();
BENCHMARK(BM_copy_parallel)->Arg(8320 * 192)->Arg(8320 * 384)->Arg(32 << 20)->UseRealTime();

BENCHMARK(BM_layer_norm_forward<true>)->Args({8320, 192})->Args({8320, 384})->UseRealTime();
BENCHMARK(BM_layer_norm_forward<false>)->Args({8320, 192})->Args({8320, 384})->UseRealTime();
BENCHMARK(BM_layer_norm_backward<true>)->Args({8320, 192})->Args({8320, 384})->UseRealTime();
BENCHMARK(BM_layer_norm_backward<false>)->Args({8320, 192})->Args({8320, 384})->UseRealTime();

BENCHMARK(BM_softmax_forward<true>)->Args({128 * 3 * 65, 65})->UseRealTime();
BENCHMARK(BM_softmax_forward<false>)->Args({128 * 3 * 65, 65})->UseRealTime();
BENCHMARK(BM_softmax_backward<true>)->Args({128 * 3 * 65, 65})->UseRealTime();
BENCHMARK(BM_softmax_backward<false>)->Args({128 * 3 * 65, 65})->UseRealTime();

BENCHMARK(BM_gelu_forward<true>)->Args({8320, 384})->UseRealTime();
BENCHMARK(BM_gelu_forward<false>)->Args({8320, 384})->UseRealTime();
BENCHMARK(BM_gelu_backward<true>)->Args({8320, 384})->UseRealTime();
BENCHMARK(BM_gelu_backward<false>)->Args({8320, 384})->UseRealTime();

BENCHMARK(BM_cross_entropy_forward_backward<true>)->Args({128, 10})->Args({8320, 1000})->UseRealTime();
BENCHMARK(BM_cross_entropy_forward_backward<false>)->Args({128, 10})->Args({8320, 1000})->UseRealTime();

BENCHMARK(BM_adamw_step<true>)->Arg(2'700'000)->UseRealTime();
BENCHMARK(BM_adamw_step<false>)->Arg(2'700'000)->UseRealTime();

BENCHMARK(BM_patchify_forward_backward<true>)->Args({128, 4})->UseRealTime();
BENCHMARK(BM_patchify_forward_backward<false>)->Args({128, 4})->UseRealTime();
