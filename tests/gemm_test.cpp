// Tests of kernels/gemm (fast float GEMM, epilogues, batched, matmul_any) against kernels/reference/gemm.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tessera/kernels/gelu.hpp>
#include <tessera/kernels/gemm/gemm.hpp>
#include <tessera/kernels/reference/gemm.hpp>
#include <vector>

namespace {

namespace ref = tessera::kernels::reference;
namespace impl = tessera::kernels::gemm_impl;
using tessera::kernels::GemmEpilogue;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kSentinel = 12345.0f;      // fills the padding of C past column N: must survive every call
constexpr double kUnit = 1.0 / (1 << 24);  // float unit roundoff

std::vector<float> random_vector(size_t size, unsigned seed) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(size);
  for (float& x : v) x = dist(engine);
  return v;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

std::vector<double> absolute(const std::vector<double>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = std::fabs(v[i]);
  return out;
}

// One GEMM case with its operands stored row-major, row strides padded past the minimum by `pad`.
struct Case {
  bool trans_a = false, trans_b = false;
  int M = 1, N = 1, K = 1;
  float alpha = 1.0f, beta = 0.0f;
  int pad = 0;
  unsigned seed = 1;

  int lda() const { return (trans_a ? M : K) + pad; }
  int ldb() const { return (trans_b ? K : N) + pad; }
  int ldc() const { return N + pad; }
  size_t a_size() const { return size_t(trans_a ? K : M) * lda() + 1; }
  size_t b_size() const { return size_t(trans_b ? N : K) * ldb() + 1; }
  size_t c_size() const { return size_t(M) * ldc() + 1; }
};

struct Operands {
  std::vector<float> A, B, C;  // C holds the initial value: NaN when beta == 0, kSentinel in the padding
  std::vector<float> bias;
};

Operands make_operands(const Case& c) {
  Operands ops{random_vector(c.a_size(), c.seed), random_vector(c.b_size(), c.seed + 1),
               random_vector(c.c_size(), c.seed + 2), random_vector(size_t(c.N) + 1, c.seed + 3)};
  for (int i = 0; i < c.M; ++i)
    for (int j = 0; j < c.ldc(); ++j) {
      float& x = ops.C[size_t(i) * c.ldc() + j];
      if (j >= c.N)
        x = kSentinel;
      else if (c.beta == 0.0f)
        x = kNaN;
    }
  return ops;
}

// Expected result in double and a bound on the float error of each element: the sum of K products
// carries at most about K roundings of its magnitude sum_k |a||b|, then alpha and beta add a few more.
struct Expected {
  std::vector<double> value, bound;
};

Expected expect(const Case& c, const Operands& ops, const GemmEpilogue& epilogue) {
  const std::vector<double> A = to_double(ops.A), B = to_double(ops.B), C0 = to_double(ops.C);
  std::vector<double> bias = to_double(ops.bias);
  const std::vector<double> abs_a = absolute(A), abs_b = absolute(B), abs_c = absolute(C0), abs_bias = absolute(bias);
  Expected e{C0, abs_c};
  std::vector<double> pre(C0.size());
  ref::gemm_ex<double>(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), c.lda(), B.data(), c.ldb(), c.beta,
                       e.value.data(), c.ldc(), epilogue.bias ? bias.data() : nullptr, epilogue.gelu, pre.data());
  ref::gemm_ex<double>(c.trans_a, c.trans_b, c.M, c.N, c.K, std::fabs(c.alpha), abs_a.data(), c.lda(), abs_b.data(),
                       c.ldb(), std::fabs(c.beta), e.bound.data(), c.ldc(), epilogue.bias ? abs_bias.data() : nullptr,
                       false, nullptr);
  for (int i = 0; i < c.M; ++i)
    for (int j = 0; j < c.N; ++j) {
      const size_t at = size_t(i) * c.ldc() + j;
      e.bound[at] = 2.0 * (c.K + 4) * kUnit * e.bound[at] + 4.0 * kUnit * std::fabs(e.value[at]) + 1e-30;
    }
  return e;
}

// Checks C (and the pre-activation when given) element by element, and that the padding is untouched;
// reports the first few bad elements.
void check_result(const Case& c, const std::vector<float>& C, const Expected& e, const std::vector<float>* pre,
                  const Expected* e_pre) {
  int failures = 0;
  for (int i = 0; i < c.M; ++i)
    for (int j = 0; j < c.ldc(); ++j) {
      const size_t at = size_t(i) * c.ldc() + j;
      if (j >= c.N) {
        if (C[at] != kSentinel && ++failures <= 5) FAIL_CHECK("padding of C written at (", i, ",", j, ")");
        continue;
      }
      const double error = std::fabs(double(C[at]) - e.value[at]);
      if (!(error <= e.bound[at]) && ++failures <= 5)
        FAIL_CHECK("C(", i, ",", j, ") = ", C[at], " expected ", e.value[at], " bound ", e.bound[at]);
      if (pre) {
        const double pre_error = std::fabs(double((*pre)[at]) - e_pre->value[at]);
        if (!(pre_error <= e_pre->bound[at]) && ++failures <= 5)
          FAIL_CHECK("pre_activation(", i, ",", j, ") = ", (*pre)[at], " expected ", e_pre->value[at]);
      }
    }
  CHECK(failures == 0);
}

// Runs `run(case, A, B, C, epilogue)` on one case and checks it against the reference.
template <class Run>
void check_case(const Case& c, const Run& run, bool bias = false, bool gelu = false) {
  CAPTURE(c.trans_a);
  CAPTURE(c.trans_b);
  CAPTURE(c.M);
  CAPTURE(c.N);
  CAPTURE(c.K);
  CAPTURE(c.alpha);
  CAPTURE(c.beta);
  CAPTURE(c.pad);
  CAPTURE(bias);
  CAPTURE(gelu);
  const Operands ops = make_operands(c);
  std::vector<float> C = ops.C;
  std::vector<float> pre(ops.C.size(), kNaN);
  GemmEpilogue epilogue;
  epilogue.bias = bias ? ops.bias.data() : nullptr;
  epilogue.gelu = gelu;
  epilogue.pre_activation = gelu ? pre.data() : nullptr;
  run(c, ops, C.data(), epilogue);

  GemmEpilogue no_gelu = epilogue;
  no_gelu.gelu = false;
  const Expected e = expect(c, ops, epilogue);
  if (gelu) {
    // gelu' is at most 1.13 in magnitude, so the pre-activation bound carries over with a small margin.
    Expected e_pre = expect(c, ops, no_gelu);
    Expected e_gelu = e;
    for (size_t at = 0; at < e_gelu.bound.size(); ++at)
      e_gelu.bound[at] = 1.2 * e_pre.bound[at] + 8.0 * kUnit * std::fabs(e.value[at]) + 1e-7;
    check_result(c, C, e_gelu, &pre, &e_pre);
  } else {
    check_result(c, C, e, nullptr, nullptr);
  }
}

auto public_gemm = [](const Case& c, const Operands& ops, float* C, const GemmEpilogue& epilogue) {
  if (epilogue.active())
    tessera::kernels::gemm_ex(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, ops.A.data(), c.lda(), ops.B.data(),
                              c.ldb(), c.beta, C, c.ldc(), epilogue);
  else
    tessera::kernels::gemm(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, ops.A.data(), c.lda(), ops.B.data(), c.ldb(),
                           c.beta, C, c.ldc());
};

// The driver with a chosen micro-kernel, so configurations this machine does not select still get tested.
template <class Kernel>
auto kernel_gemm(int threads) {
  return [threads](const Case& c, const Operands& ops, float* C, const GemmEpilogue& epilogue) {
    impl::gemm_with<Kernel>(impl::make_problem(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, ops.A.data(), c.lda(),
                                               ops.B.data(), c.ldb(), c.beta, C, c.ldc(), epilogue),
                            threads);
  };
}

constexpr int kOddSizes[] = {1, 3, 7, 31, 65, 97, 193};
constexpr float kAlphas[] = {1.0f, -0.5f, 2.0f, 0.0f};
constexpr float kBetas[] = {0.0f, 1.0f, -0.5f, 2.0f};

// Every transpose combination over odd M, N and a few K (including 1 and several depth blocks), with
// alpha/beta, padding and seeds cycling so that each combination meets many shapes.
template <class Run>
void check_odd_sizes(const Run& run, const std::vector<int>& depths) {
  unsigned counter = 0;
  for (int t = 0; t < 4; ++t)
    for (int M : kOddSizes)
      for (int N : kOddSizes)
        for (int K : depths) {
          Case c;
          c.trans_a = t & 1;
          c.trans_b = t & 2;
          c.M = M;
          c.N = N;
          c.K = K;
          c.alpha = kAlphas[counter % 3];
          c.beta = kBetas[(counter / 3) % 4];
          c.pad = int(counter % 3) * 7;
          c.seed = ++counter;
          check_case(c, run);
        }
}

}  // namespace

TEST_CASE("reference gemm on a hand-computed product, all transposes") {
  // op(A) = [[1,2,3],[4,5,6]], op(B) = [[1,0],[0,1],[2,-1]]: op(A) op(B) = [[7,-1],[16,-1]].
  const double a[] = {1, 2, 3, 4, 5, 6}, a_t[] = {1, 4, 2, 5, 3, 6};
  const double b[] = {1, 0, 0, 1, 2, -1}, b_t[] = {1, 0, 2, 0, 1, -1};
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    double c[] = {1, 1, 1, 1};
    ref::gemm<double>(ta, tb, 2, 2, 3, 2.0, ta ? a_t : a, ta ? 2 : 3, tb ? b_t : b, tb ? 3 : 2, 0.5, c, 2);
    CHECK(c[0] == 14.5);
    CHECK(c[1] == -1.5);
    CHECK(c[2] == 32.5);
    CHECK(c[3] == -1.5);
  }
  double c[] = {std::nan(""), std::nan(""), std::nan(""), std::nan("")};
  ref::gemm<double>(false, false, 2, 2, 3, 1.0, a, 3, b, 2, 0.0, c, 2);
  CHECK(c[0] == 7.0);
  CHECK(c[3] == -1.0);
  const double bias[] = {1.0, -2.0};
  double pre[4];
  ref::gemm_ex<double>(false, false, 2, 2, 3, 1.0, a, 3, b, 2, 0.0, c, 2, bias, true, pre);
  CHECK(pre[0] == 8.0);
  CHECK(pre[1] == -3.0);
  CHECK(c[0] == doctest::Approx(8.0 * 0.5 * (1.0 + std::erf(8.0 / std::sqrt(2.0)))));
  CHECK(c[1] == doctest::Approx(-3.0 * 0.5 * (1.0 + std::erf(-3.0 / std::sqrt(2.0)))));
}

TEST_CASE("gemm matches the reference at odd sizes for all transposes") {
  check_odd_sizes(public_gemm, {1, 7, 65, 193});
}

TEST_CASE("gemm matches the reference across several depth blocks and micro-tile edges") {
  unsigned counter = 100;
  for (int t = 0; t < 4; ++t)
    for (int shape = 0; shape < 6; ++shape) {
      const int shapes[6][3] = {{150, 40, 300}, {17, 333, 517}, {290, 5, 1},
                                {6, 16, 777},   {12, 32, 257},  {145, 17, 512}};
      Case c;
      c.trans_a = t & 1;
      c.trans_b = t & 2;
      c.M = shapes[shape][0];
      c.N = shapes[shape][1];
      c.K = shapes[shape][2];
      c.alpha = kAlphas[counter % 3];
      c.beta = kBetas[counter % 4];
      c.pad = int(counter % 2) * 5;
      c.seed = ++counter;
      check_case(c, public_gemm);
    }
}

TEST_CASE("gemm honours every alpha and beta, including zeros, with padded strides") {
  unsigned seed = 500;
  for (float alpha : kAlphas)
    for (float beta : kBetas)
      for (int t = 0; t < 4; ++t) {
        Case c;
        c.trans_a = t & 1;
        c.trans_b = t & 2;
        c.M = 31;
        c.N = 65;
        c.K = 97;
        c.alpha = alpha;
        c.beta = beta;
        c.pad = 9;
        c.seed = ++seed;
        check_case(c, public_gemm);
      }
}

TEST_CASE("gemm with K = 0 scales C by beta and empty shapes touch nothing") {
  for (float beta : kBetas) {
    Case c;
    c.M = 7;
    c.N = 31;
    c.K = 0;
    c.beta = beta;
    c.pad = 3;
    check_case(c, public_gemm);
    check_case(c, public_gemm, true, true);
  }
  std::vector<float> C(4, kSentinel);
  const float A[1] = {1.0f}, B[1] = {1.0f};
  tessera::kernels::gemm(false, false, 0, 2, 1, 1.0f, A, 1, B, 2, 0.0f, C.data(), 2);
  tessera::kernels::gemm(false, false, 2, 0, 1, 1.0f, A, 1, B, 1, 0.0f, C.data(), 1);
  for (float x : C) CHECK(x == kSentinel);
}

TEST_CASE("gemm_ex fuses bias, exact GELU with pre-activation, and accumulation") {
  unsigned seed = 900;
  for (int t = 0; t < 4; ++t)
    for (int M : {1, 7, 65, 193})
      for (int N : {3, 31, 97})
        for (int variant = 0; variant < 3; ++variant) {
          Case c;
          c.trans_a = t & 1;
          c.trans_b = t & 2;
          c.M = M;
          c.N = N;
          c.K = 65 + 128 * (variant == 2);
          c.alpha = variant == 1 ? -0.5f : 1.0f;
          c.beta = variant == 2 ? 1.0f : 0.0f;
          c.pad = variant * 4;
          c.seed = ++seed;
          check_case(c, public_gemm, true, false);
          check_case(c, public_gemm, variant != 1, true);
        }
  // GELU without a pre-activation buffer.
  Case c;
  c.M = 33;
  c.N = 40;
  c.K = 20;
  const Operands ops = make_operands(c);
  std::vector<float> C1 = ops.C, C2 = ops.C, pre(ops.C.size());
  GemmEpilogue with_pre{ops.bias.data(), true, pre.data()}, without_pre{ops.bias.data(), true, nullptr};
  tessera::kernels::gemm_ex(false, false, c.M, c.N, c.K, 1.0f, ops.A.data(), c.lda(), ops.B.data(), c.ldb(), 0.0f,
                            C1.data(), c.ldc(), with_pre);
  tessera::kernels::gemm_ex(false, false, c.M, c.N, c.K, 1.0f, ops.A.data(), c.lda(), ops.B.data(), c.ldb(), 0.0f,
                            C2.data(), c.ldc(), without_pre);
  CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)) == 0);
}

TEST_CASE("the fused GELU gives the same bits as gemm with bias followed by kernels::gelu_forward") {
  for (int N : {1, 7, 16, 37, 97}) {
    CAPTURE(N);
    const int M = 23, K = 70;
    const std::vector<float> A = random_vector(size_t(M) * K, 11), B = random_vector(size_t(K) * N, 12),
                             bias = random_vector(N, 13);
    std::vector<float> fused(size_t(M) * N, kNaN), pre(fused.size(), kNaN), separate(fused.size(), kNaN);
    tessera::kernels::gemm_ex(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, fused.data(), N,
                              {bias.data(), true, pre.data()});
    tessera::kernels::gemm_ex(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, separate.data(), N,
                              {bias.data(), false, nullptr});
    CHECK(std::memcmp(pre.data(), separate.data(), pre.size() * sizeof(float)) == 0);
    tessera::kernels::gelu_forward(separate.data(), separate.data(), int64_t(separate.size()));
    CHECK(std::memcmp(fused.data(), separate.data(), fused.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("the portable scalar micro-kernel and the 12x32 register tile agree with the reference") {
  check_odd_sizes(kernel_gemm<impl::ScalarKernel<4, 8>>(2), {1, 65});
  check_odd_sizes(kernel_gemm<impl::ScalarKernel<3, 5>>(1), {7});
#if defined(__AVX2__) && defined(__FMA__)
  // The AVX-512 kernel, SimdKernel<V, 12, 2> on 16-lane vectors, run here on pairs of AVX2 vectors.
  using Wide = impl::SimdKernel<tessera::kernels::simd::VecPair<tessera::kernels::simd::VecAvx2>, 12, 2>;
  check_odd_sizes(kernel_gemm<Wide>(2), {1, 65, 300});
  Case c;
  c.M = 31;
  c.N = 65;
  c.K = 97;
  c.beta = 1.0f;
  check_case(c, kernel_gemm<Wide>(2), true, true);
#endif
}

// pack_transposed<W, V> against its definition, for sliver widths below, equal to and above the vector width;
// the floats after the sliver must stay untouched.
template <int W, class V>
void check_pack_transposed() {
  for (int lines : {1, W / 2 + 1, W})
    for (int len : {1, 7, 16, 17, 40}) {
      CAPTURE(W);
      CAPTURE(V::width);
      CAPTURE(lines);
      CAPTURE(len);
      const int64_t ld = len + 3;
      const std::vector<float> src = random_vector(size_t(lines * ld), 77);
      std::vector<float> dst(size_t(len * W + 64), kNaN);
      impl::pack_transposed<W, V>(src.data(), ld, lines, len, dst.data());
      int bad = 0;
      for (int k = 0; k < len; ++k)
        for (int r = 0; r < W; ++r) {
          const float expected = r < lines ? src[size_t(r * ld + k)] : 0.0f;
          bad += std::memcmp(&dst[size_t(k * W + r)], &expected, sizeof(float)) != 0;
        }
      for (size_t i = size_t(len * W); i < dst.size(); ++i) bad += !std::isnan(dst[i]);
      CHECK(bad == 0);
    }
}

template <class V>
void check_pack_transposed_widths() {
  check_pack_transposed<3, V>();
  check_pack_transposed<6, V>();
  check_pack_transposed<12, V>();
  check_pack_transposed<16, V>();
  check_pack_transposed<32, V>();
}

TEST_CASE("packing through in-register transposes of every vector width matches its definition") {
  namespace simd = tessera::kernels::simd;
  check_pack_transposed_widths<simd::VecScalar>();
  check_pack_transposed_widths<simd::VecPair<simd::VecPair<simd::VecScalar>>>();
#if defined(__AVX2__) && defined(__FMA__)
  check_pack_transposed_widths<simd::VecAvx2>();
  check_pack_transposed_widths<simd::VecPair<simd::VecAvx2>>();
#endif
#if defined(__AVX512F__)
  check_pack_transposed_widths<simd::VecAvx512>();
#endif
}

TEST_CASE("gemm_batched matches per-item reference products") {
  struct BatchShape {
    int M, N, K, batch;
  };
  unsigned seed = 1300;
  for (const BatchShape& s :
       {BatchShape{65, 65, 64, 7}, BatchShape{1, 3, 7, 5}, BatchShape{97, 31, 1, 3}, BatchShape{193, 65, 31, 2},
        BatchShape{300, 200, 600, 2}, BatchShape{33, 17, 9, 1}, BatchShape{7, 5, 0, 3}})
    for (int t = 0; t < 4; ++t) {
      Case c;
      c.trans_a = t & 1;
      c.trans_b = t & 2;
      c.M = s.M;
      c.N = s.N;
      c.K = s.K;
      c.alpha = kAlphas[seed % 3];
      c.beta = kBetas[seed % 4];
      c.pad = int(seed % 2) * 3;
      CAPTURE(s.batch);
      std::vector<Case> items(s.batch, c);
      std::vector<Operands> ops;
      for (int b = 0; b < s.batch; ++b) {
        items[b].seed = ++seed;
        ops.push_back(make_operands(items[b]));
      }
      // Items laid out with strides a little larger than one item.
      const int64_t stride_a = c.a_size() + 5, stride_b = c.b_size() + 3, stride_c = c.c_size() + 2;
      std::vector<float> A(stride_a * s.batch), B(stride_b * s.batch), C(stride_c * s.batch);
      for (int b = 0; b < s.batch; ++b) {
        std::copy(ops[b].A.begin(), ops[b].A.end(), A.begin() + b * stride_a);
        std::copy(ops[b].B.begin(), ops[b].B.end(), B.begin() + b * stride_b);
        std::copy(ops[b].C.begin(), ops[b].C.end(), C.begin() + b * stride_c);
      }
      tessera::kernels::gemm_batched(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), c.lda(), stride_a,
                                     B.data(), c.ldb(), stride_b, c.beta, C.data(), c.ldc(), stride_c, s.batch);
      for (int b = 0; b < s.batch; ++b) {
        CAPTURE(b);
        const std::vector<float> item(C.begin() + b * stride_c, C.begin() + b * stride_c + c.c_size());
        check_result(items[b], item, expect(items[b], ops[b], GemmEpilogue{}), nullptr, nullptr);
      }
    }
}

TEST_CASE("a deep product is the sum of its two depth groups, each multiplied as a GEMM of its own") {
  // K = 2100 is 9 depth blocks of 234; the groups are blocks 0-3 (K 936) and 4-8 (K 1164), neither deep itself.
  for (int t = 0; t < 4; ++t) {
    Case c;
    c.trans_a = t & 1;
    c.trans_b = t & 2;
    c.M = 37;
    c.N = 53;
    c.K = 2100;
    c.alpha = 0.75f;
    c.beta = 0.5f;
    c.seed = 3000 + t;
    CAPTURE(t);
    const Operands ops = make_operands(c);
    std::vector<float> whole = ops.C, first = ops.C, second(ops.C.size(), 0.0f);
    tessera::kernels::gemm(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, ops.A.data(), c.lda(), ops.B.data(), c.ldb(),
                           c.beta, whole.data(), c.ldc());
    const int split = 936;
    const float* A2 = c.trans_a ? ops.A.data() + split * c.lda() : ops.A.data() + split;
    const float* B2 = c.trans_b ? ops.B.data() + split : ops.B.data() + split * c.ldb();
    tessera::kernels::gemm(c.trans_a, c.trans_b, c.M, c.N, split, c.alpha, ops.A.data(), c.lda(), ops.B.data(), c.ldb(),
                           c.beta, first.data(), c.ldc());
    tessera::kernels::gemm(c.trans_a, c.trans_b, c.M, c.N, c.K - split, c.alpha, A2, c.lda(), B2, c.ldb(), 0.0f,
                           second.data(), c.ldc());
    for (int i = 0; i < c.M; ++i)
      for (int j = 0; j < c.N; ++j) first[i * c.ldc() + j] += second[i * c.ldc() + j];
    CHECK(std::memcmp(whole.data(), first.data(), whole.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("results are bit-identical with 1, 2 and 3 threads") {
  const int saved = omp_get_max_threads();
  struct Shape {
    int M, N, K;
  };
  unsigned seed = 2000;
  // The last two are deep (K of 9 depth blocks): summed in two depth groups, each cut into slices of rows (then of
  // columns) when there are more threads than groups.
  for (const Shape& s : {Shape{500, 300, 600}, Shape{7, 1000, 300}, Shape{1000, 7, 513}, Shape{97, 193, 65},
                         Shape{200, 45, 2100}, Shape{40, 200, 2100}})
    for (int t = 0; t < 4; ++t) {
      Case c;
      c.trans_a = t & 1;
      c.trans_b = t & 2;
      c.M = s.M;
      c.N = s.N;
      c.K = s.K;
      c.alpha = 0.75f;
      c.beta = t == 3 ? 0.0f : 0.5f;
      c.pad = 2;
      c.seed = ++seed;
      CAPTURE(c.M);
      CAPTURE(c.N);
      CAPTURE(c.K);
      CAPTURE(t);
      const Operands ops = make_operands(c);
      std::vector<float> bias = random_vector(c.N, seed);
      std::vector<float> results[3], pre[3];
      for (int threads = 1; threads <= 3; ++threads) {
        omp_set_num_threads(threads);
        std::vector<float>& C = results[threads - 1];
        C = ops.C;
        pre[threads - 1].assign(C.size(), 0.0f);
        const GemmEpilogue epilogue{bias.data(), t >= 2, pre[threads - 1].data()};
        tessera::kernels::gemm_ex(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, ops.A.data(), c.lda(), ops.B.data(),
                                  c.ldb(), c.beta, C.data(), c.ldc(), epilogue);
      }
      for (int threads = 2; threads <= 3; ++threads) {
        CAPTURE(threads);
        CHECK(std::memcmp(results[0].data(), results[threads - 1].data(), results[0].size() * sizeof(float)) == 0);
        CHECK(std::memcmp(pre[0].data(), pre[threads - 1].data(), pre[0].size() * sizeof(float)) == 0);
      }
      check_case(c, public_gemm);
    }
  // Batched: many small items, few small items (row slices), few large items (each threaded).
  for (const Shape& s : {Shape{65, 65, 64}, Shape{130, 40, 70}, Shape{400, 300, 500}}) {
    const int batch = s.M == 65 ? 12 : 2;
    const std::vector<float> A = random_vector(size_t(s.M) * s.K * batch, 1),
                             B = random_vector(size_t(s.K) * s.N * batch, 2);
    std::vector<float> results[2];
    for (int threads = 1; threads <= 2; ++threads) {
      omp_set_num_threads(threads);
      results[threads - 1].assign(size_t(s.M) * s.N * batch, kNaN);
      tessera::kernels::gemm_batched(false, true, s.M, s.N, s.K, 1.0f, A.data(), s.K, int64_t(s.M) * s.K, B.data(), s.K,
                                     int64_t(s.K) * s.N, 0.0f, results[threads - 1].data(), s.N, int64_t(s.M) * s.N,
                                     batch);
    }
    CHECK(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
    // Batched items equal single calls bit for bit.
    std::vector<float> single(size_t(s.M) * s.N * batch, kNaN);
    for (int b = 0; b < batch; ++b)
      tessera::kernels::gemm(false, true, s.M, s.N, s.K, 1.0f, A.data() + size_t(b) * s.M * s.K, s.K,
                             B.data() + size_t(b) * s.K * s.N, s.K, 0.0f, single.data() + size_t(b) * s.M * s.N, s.N);
    CHECK(std::memcmp(results[0].data(), single.data(), single.size() * sizeof(float)) == 0);
  }
  omp_set_num_threads(saved);
}

TEST_CASE("an element of C has the same bits whether its micro-tile is cut by the edge or not") {
  // The same leading rows and columns computed as part of a larger C (full tiles) and of a smaller one
  // (edge tiles through the temporary tile): results must match bit for bit, with beta, bias and GELU.
  const int big_M = 30, big_N = 64, small_M = 13, small_N = 37, K = 300;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    CAPTURE(t);
    const std::vector<float> A = random_vector(size_t(big_M) * K, 7), B = random_vector(size_t(big_N) * K, 8),
                             bias = random_vector(big_N, 9), C0 = random_vector(size_t(big_M) * big_N, 10);
    const int lda = ta ? big_M : K, ldb = tb ? K : big_N;
    std::vector<float> big = C0, small = C0, pre_big(C0.size()), pre_small(C0.size());
    tessera::kernels::gemm_ex(ta, tb, big_M, big_N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, big.data(), big_N,
                              {bias.data(), true, pre_big.data()});
    tessera::kernels::gemm_ex(ta, tb, small_M, small_N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, small.data(),
                              big_N, {bias.data(), true, pre_small.data()});
    int mismatches = 0;
    for (int i = 0; i < small_M; ++i)
      for (int j = 0; j < small_N; ++j) {
        const size_t at = size_t(i) * big_N + j;
        mismatches += std::memcmp(&big[at], &small[at], sizeof(float)) != 0;
        mismatches += std::memcmp(&pre_big[at], &pre_small[at], sizeof(float)) != 0;
      }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("matmul_any sends float to the fast gemm and double to the reference") {
  const int M = 7, N = 31, K = 65;
  const std::vector<float> A = random_vector(M * K, 3), B = random_vector(K * N, 4), bias = random_vector(N, 5);
  std::vector<float> fast(M * N, kNaN), any(M * N, kNaN);
  tessera::kernels::gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, fast.data(), N);
  tessera::kernels::matmul_any<float>(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, any.data(), N);
  CHECK(fast == any);

  const std::vector<double> Ad = to_double(A), Bd = to_double(B), biasd = to_double(bias);
  std::vector<double> expected(M * N, std::nan("")), got(M * N, std::nan(""));
  ref::gemm<double>(false, true, M, N, K, 2.0, Ad.data(), K, Bd.data(), K, 0.0, expected.data(), N);
  tessera::kernels::matmul_any<double>(false, true, M, N, K, 2.0, Ad.data(), K, Bd.data(), K, 0.0, got.data(), N);
  CHECK(expected == got);

  std::vector<double> pre_expected(M * N), pre_got(M * N);
  ref::gemm_ex<double>(true, false, M, N, K, 1.0, Ad.data(), M, Bd.data(), N, 0.0, expected.data(), N, biasd.data(),
                       true, pre_expected.data());
  tessera::kernels::matmul_any_ex<double>(true, false, M, N, K, 1.0, Ad.data(), M, Bd.data(), N, 0.0, got.data(), N,
                                          {biasd.data(), true, pre_got.data()});
  CHECK(expected == got);
  CHECK(pre_expected == pre_got);

  std::vector<double> batched(2 * M * N, std::nan(""));
  tessera::kernels::matmul_any_batched<double>(false, false, M, N, K / 2, 1.0, Ad.data(), K / 2, M * (K / 2), Bd.data(),
                                               N, (K / 2) * N, 0.0, batched.data(), N, M * N, 2);
  ref::gemm<double>(false, false, M, N, K / 2, 1.0, Ad.data() + M * (K / 2), K / 2, Bd.data() + (K / 2) * N, N, 0.0,
                    expected.data(), N);
  CHECK(std::equal(expected.begin(), expected.end(), batched.begin() + M * N));
}
