// Benchmarks of the convolutional-stem kernels at CIFAR stem shapes: conv2d (im2col + GEMM) forward, backward and
// both, against the reference loops and against the forward's GEMM alone; batch_norm forward and backward in training mode, against the reference.
// The FLOP counter counts 2 B O (C kh kw) (Ho Wo) per direction (the backward computes dinp and dweight: twice the
// forward), bytes the bytes read plus written per call; both are rates, printed per second (FLOP=44.4G/s).
// Threads: OMP_NUM_THREADS.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <memory>
#include <string>
#include <tessera/core/rng.hpp>
#include <tessera/core/storage.hpp>
#include <tessera/kernels/batch_norm.hpp>
#include <tessera/kernels/conv2d.hpp>
#include <tessera/kernels/reference/batch_norm.hpp>
#include <tessera/kernels/reference/conv2d.hpp>

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

Buffer random_buffer(int64_t n, uint64_t seed) {
  Buffer b(n);
  tessera::Generator gen(seed);
  for (int64_t i = 0; i < n; ++i) b.data()[i] = static_cast<float>(gen.normal(0.0, 1.0));
  return b;
}

constexpr double kF = sizeof(float);

enum class Pass { forward, backward, forward_backward };

// Args: B, C, H (= W), O, kernel, stride, padding.
k::Conv2dSizes conv_sizes(const benchmark::State& state) {
  const int B = int(state.range(0)), C = int(state.range(1)), H = int(state.range(2)), O = int(state.range(3));
  const int kernel = int(state.range(4)), stride = int(state.range(5)), pad = int(state.range(6));
  return {B, C, H, H, O, kernel, kernel, stride, stride, pad, pad};
}

// ---------------------------------------------------------------------------------------------- conv2d

template <bool fast, Pass pass>
void BM_conv2d(benchmark::State& state) {
  const k::Conv2dSizes s = conv_sizes(state);
  const int64_t in_n = int64_t{s.B} * s.C * s.H * s.W, w_n = s.O * s.patch_size(), out_n = s.B * s.O * s.out_pixels();
  Buffer inp = random_buffer(in_n, 1), weight = random_buffer(w_n, 2), bias = random_buffer(s.O, 3), out(out_n);
  Buffer dout = random_buffer(out_n, 4), dinp(in_n), dweight(w_n), dbias(s.O);
  for (auto _ : state) {
    if constexpr (pass != Pass::backward) {
      if constexpr (fast)
        k::conv2d_forward(out.data(), inp.data(), weight.data(), bias.data(), s);
      else
        ref::conv2d_forward<float>(out.data(), inp.data(), weight.data(), bias.data(), s);
    }
    if constexpr (pass != Pass::forward) {
      if constexpr (fast)
        k::conv2d_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(), s);
      else
        ref::conv2d_backward<float>(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(),
                                    s);
    }
    benchmark::ClobberMemory();
  }
  const double directions = pass == Pass::forward ? 1.0 : pass == Pass::backward ? 2.0 : 3.0;
  const double flops = directions * 2.0 * s.B * s.O * double(s.patch_size()) * double(s.out_pixels());
  state.counters["FLOP"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// The yardstick: the forward's GEMM alone, weight (O, K) times the whole batch's columns (K, B P) built beforehand,
// the same multiply-adds as the forward in one large GEMM without im2col.
void BM_conv2d_gemm_only(benchmark::State& state) {
  const k::Conv2dSizes s = conv_sizes(state);
  const int64_t K = s.patch_size(), N = s.B * s.out_pixels();
  Buffer col = random_buffer(K * N, 1), weight = random_buffer(s.O * K, 2), out(s.O * N);
  for (auto _ : state) {
    k::gemm(false, false, s.O, int(N), int(K), 1.0f, weight.data(), int(K), col.data(), int(N), 0.0f, out.data(),
            int(N));
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * s.O * double(K) * double(N);
  state.counters["FLOP"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// ---------------------------------------------------------------------------------------------- batch_norm

// Args: B, C, HW.
template <bool fast>
void BM_batch_norm_forward(benchmark::State& state) {
  const int B = int(state.range(0)), C = int(state.range(1)), HW = int(state.range(2));
  const int64_t n = int64_t{B} * C * HW;
  Buffer inp = random_buffer(n, 5), out(n), w = random_buffer(C, 6), b = random_buffer(C, 7);
  Buffer mean(C), rstd(C), running_mean(C), running_var(C);
  for (auto _ : state) {
    if constexpr (fast)
      k::batch_norm_forward(out.data(), mean.data(), rstd.data(), running_mean.data(), running_var.data(), inp.data(),
                            w.data(), b.data(), B, C, HW, 1e-5f, 0.1f);
    else
      ref::batch_norm_forward<float>(out.data(), mean.data(), rstd.data(), running_mean.data(), running_var.data(),
                                     inp.data(), w.data(), b.data(), B, C, HW, 1e-5f, 0.1f);
    benchmark::ClobberMemory();
  }
  state.counters["bytes"] = benchmark::Counter(kF * 2.0 * n, benchmark::Counter::kIsIterationInvariantRate);
}

template <bool fast>
void BM_batch_norm_backward(benchmark::State& state) {
  const int B = int(state.range(0)), C = int(state.range(1)), HW = int(state.range(2));
  const int64_t n = int64_t{B} * C * HW;
  Buffer inp = random_buffer(n, 5), out(n), w = random_buffer(C, 6), b = random_buffer(C, 7);
  Buffer mean(C), rstd(C), dout = random_buffer(n, 8), dinp(n), dw(C), db(C);
  k::batch_norm_forward(out.data(), mean.data(), rstd.data(), nullptr, nullptr, inp.data(), w.data(), b.data(), B, C,
                        HW, 1e-5f, 0.1f);
  for (auto _ : state) {
    if constexpr (fast)
      k::batch_norm_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), mean.data(),
                             rstd.data(), B, C, HW);
    else
      ref::batch_norm_backward<float>(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(),
                                      mean.data(), rstd.data(), B, C, HW);
    benchmark::ClobberMemory();
  }
  state.counters["bytes"] = benchmark::Counter(kF * 4.0 * n, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

// The two convolutions of a CIFAR stem at batch 128: 3 -> 32 channels 3x3 stride 1 on 32x32, then 32 -> 64 channels
// 3x3 stride 2 (to 16x16); and a 1x1 projection 64 -> 192 on 16x16.
#define TESSERA_STEM_SHAPES                 \
  Args({128, 3, 32, 32, 3, 1, 1})           \
      ->Args({128, 32, 32, 64, 3, 2, 1})    \
      ->Args({128, 64, 16, 192, 1, 1, 0})   \
      ->ArgNames({"B", "C", "HW", "O", "k", "s", "p"})

BENCHMARK(BM_conv2d<true, Pass::forward>)->TESSERA_STEM_SHAPES->UseRealTime();
BENCHMARK(BM_conv2d<true, Pass::backward>)->TESSERA_STEM_SHAPES->UseRealTime();
BENCHMARK(BM_conv2d<true, Pass::forward_backward>)->TESSERA_STEM_SHAPES->UseRealTime();
BENCHMARK(BM_conv2d_gemm_only)->TESSERA_STEM_SHAPES->UseRealTime();
BENCHMARK(BM_conv2d<false, Pass::forward_backward>)->TESSERA_STEM_SHAPES->UseRealTime()->Iterations(1);

BENCHMARK(BM_batch_norm_forward<true>)->Args({128, 32, 32 * 32})->Args({128, 64, 16 * 16})->UseRealTime();
BENCHMARK(BM_batch_norm_forward<false>)->Args({128, 32, 32 * 32})->Args({128, 64, 16 * 16})->UseRealTime();
BENCHMARK(BM_batch_norm_backward<true>)->Args({128, 32, 32 * 32})->Args({128, 64, 16 * 16})->UseRealTime();
BENCHMARK(BM_batch_norm_backward<false>)->Args({128, 32, 32 * 32})->Args({128, 64, 16 * 16})->UseRealTime();
