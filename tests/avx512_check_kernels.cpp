// The 16-lane instantiations of the fused attention, the row kernels and the GEMM on VecAvx512, compiled with
// AVX-512 flags on every x86 machine (tests/CMakeLists.txt), so CI compiles the AVX-512 path even where it cannot
// run it. avx512_check.cpp calls avx512_kernel_mismatches() only when the CPU has AVX-512; only plain C types cross
// between the two files, so no code compiled here runs before that check.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <tessera/core/rng.hpp>
#include <tessera/kernels/attention.hpp>
#include <tessera/kernels/gelu.hpp>
#include <tessera/kernels/gemm/gemm.hpp>
#include <tessera/kernels/layer_norm.hpp>
#include <tessera/kernels/reference/attention.hpp>
#include <tessera/kernels/reference/gelu.hpp>
#include <tessera/kernels/reference/gemm.hpp>
#include <tessera/kernels/reference/layer_norm.hpp>
#include <tessera/kernels/reference/softmax.hpp>
#include <tessera/kernels/softmax.hpp>
#include <vector>

#if !defined(__AVX512F__)
#error "avx512_check_kernels.cpp must be compiled with -mavx512f (see tests/CMakeLists.txt)"
#endif

namespace {

namespace k = tessera::kernels;
using V = tessera::kernels::simd::VecAvx512;

std::vector<float> random_floats(int64_t n, uint64_t seed, double low = -1.0, double high = 1.0) {
  tessera::Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(gen.uniform(low, high));
  return v;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// Elements of got outside atol + rtol·|want|; the first is described in report.
int64_t mismatches(const std::vector<float>& got, const std::vector<double>& want, double atol, double rtol,
                   const char* what, char* report, int report_size) {
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= atol + rtol * std::fabs(want[i])) && bad++ == 0)
      std::snprintf(report, static_cast<size_t>(report_size), "%s: element %zu is %.9g, the reference %.9g", what, i,
                    double(got[i]), want[i]);
  return bad;
}

}  // namespace

// The number of checks that failed (0 when all pass); report describes the first failure.
int avx512_kernel_mismatches(char* report, int report_size) {
  int64_t bad = 0;

  // 16 x 16 transpose.
  float m[256], t[256];
  for (int i = 0; i < 256; ++i) m[i] = float(i);
  V rows[16];
  for (int r = 0; r < 16; ++r) rows[r] = V::load(m + 16 * r);
  k::simd::transpose(rows);
  for (int r = 0; r < 16; ++r) rows[r].store(t + 16 * r);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      if (t[16 * r + c] != m[16 * c + r] && bad++ == 0)
        std::snprintf(report, static_cast<size_t>(report_size), "transpose");

  // Fused attention, forward and backward, with and without dropout; probs are softmax_forward of the scores.
  struct Dims {
    int B, N, H, d;
  };
  uint64_t seed = 500;
  for (Dims s : {Dims{1, 1, 1, 1}, Dims{2, 7, 3, 16}, Dims{2, 17, 2, 33}, Dims{2, 65, 3, 64}, Dims{1, 197, 2, 64}})
    for (double p : {0.0, 0.3}) {
      const int64_t nqkv = int64_t(s.B) * s.N * 3 * s.H * s.d, nout = int64_t(s.B) * s.N * s.H * s.d,
                    nprobs = int64_t(s.B) * s.H * s.N * s.N;
      const auto qkv = random_floats(nqkv, seed += 10), dout = random_floats(nout, seed + 1),
                 init = random_floats(nqkv, seed + 2);
      std::vector<float> out(static_cast<size_t>(nout)), probs(static_cast<size_t>(nprobs)),
          dqkv = init, scores(static_cast<size_t>(nprobs));
      k::attention_forward<V>(out.data(), probs.data(), qkv.data(), s.B, s.N, s.H, s.d, p, seed + 3);
      k::attention_backward<V>(dqkv.data(), dout.data(), qkv.data(), probs.data(), s.B, s.N, s.H, s.d, p, seed + 3);
      const auto qkv_d = to_double(qkv), dout_d = to_double(dout);
      std::vector<double> out_r(static_cast<size_t>(nout)), probs_r(static_cast<size_t>(nprobs)),
          dqkv_r = to_double(init);
      k::reference::attention_forward<double>(out_r.data(), probs_r.data(), qkv_d.data(), s.B, s.N, s.H, s.d, p,
                                              seed + 3);
      k::reference::attention_backward<double>(dqkv_r.data(), dout_d.data(), qkv_d.data(), probs_r.data(), s.B, s.N,
                                               s.H, s.d, p, seed + 3);
      bad += mismatches(out, out_r, 2e-5, 1e-4, "attention out", report, report_size) > 0;
      bad += mismatches(probs, probs_r, 1e-6, 1e-4, "attention probs", report, report_size) > 0;
      bad += mismatches(dqkv, dqkv_r, 5e-5, 2e-4, "attention dqkv", report, report_size) > 0;
      k::attention_scores<V>(scores.data(), qkv.data(), s.B, s.N, s.H, s.d);
      k::softmax_forward<V>(scores.data(), scores.data(), s.B * s.H * s.N, s.N);
      if (std::memcmp(scores.data(), probs.data(), probs.size() * sizeof(float)) != 0 && bad++ == 0)
        std::snprintf(report, static_cast<size_t>(report_size),
                      "attention probs differ from softmax_forward of the scores");
    }

  // Row kernels at odd sizes.
  for (int cols : {1, 7, 15, 16, 17, 65, 197}) {
    const int rows = 3;
    const int64_t n = int64_t(rows) * cols;
    const auto x = random_floats(n, seed += 10, -5.0, 5.0), w = random_floats(cols, seed + 1),
               b = random_floats(cols, seed + 2);
    std::vector<float> y(static_cast<size_t>(n)), mean(rows), rstd(rows);
    std::vector<double> y_r(static_cast<size_t>(n)), mean_r(rows), rstd_r(rows);
    k::softmax_forward<V>(y.data(), x.data(), rows, cols);
    k::reference::softmax_forward(y_r.data(), to_double(x).data(), rows, cols);
    bad += mismatches(y, y_r, 1e-7, 4e-6, "softmax", report, report_size) > 0;
    k::gelu_forward<V>(y.data(), x.data(), n);
    k::reference::gelu_forward(y_r.data(), to_double(x).data(), n);
    bad += mismatches(y, y_r, 1e-6, 1e-5, "gelu", report, report_size) > 0;
    k::layer_norm_forward<V>(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, cols, 1e-5f);
    k::reference::layer_norm_forward(y_r.data(), mean_r.data(), rstd_r.data(), to_double(x).data(), to_double(w).data(),
                                     to_double(b).data(), rows, cols, 1e-5);
    bad += mismatches(y, y_r, 1e-5, 1e-4, "layer_norm", report, report_size) > 0;
  }

  // The GEMM's AVX-512 micro-kernel (12 x 32) and packing, both operand orders.
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const int M = 37, N = 65, K = 97;
    const auto A = random_floats(int64_t(M) * K, seed += 10), B = random_floats(int64_t(K) * N, seed + 1);
    std::vector<float> C(static_cast<size_t>(M) * N);
    std::vector<double> C_r(C.size());
    k::gemm(ta, tb, M, N, K, 1.0f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0f, C.data(), N);
    k::reference::gemm<double>(ta, tb, M, N, K, 1.0, to_double(A).data(), ta ? M : K, to_double(B).data(), tb ? K : N,
                               0.0, C_r.data(), N);
    bad += mismatches(C, C_r, 1e-4, 1e-4, "gemm", report, report_size) > 0;
  }
  return int(bad);
}
