// Tests of core/tensor.hpp: factories, shapes, views, element access and printing.
#include <doctest/doctest.h>

#include <sstream>
// The allocator's page reuse is glibc's; a sanitizer's allocator replaces it.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TESSERA_TEST_SANITIZED_ALLOCATOR 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TESSERA_TEST_SANITIZED_ALLOCATOR 1
#endif
#if defined(__GLIBC__) && !defined(TESSERA_TEST_SANITIZED_ALLOCATOR)
#include <malloc.h>
#include <sys/resource.h>
#endif
#include <tessera/tessera.hpp>

using tessera::Shape;
using tessera::Tensor;

TEST_CASE("factories fill and shape tensors") {
  auto z = Tensor<float>::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.numel() == 6);
  for (float v : z.to_vector()) CHECK(v == 0.0f);
  auto o = Tensor<double>::full({4}, 2.5);
  for (double v : o.to_vector()) CHECK(v == 2.5);
  auto a = Tensor<float>::arange(0.0f, 1.0f, 0.25f);
  CHECK(a.to_vector() == std::vector<float>{0.0f, 0.25f, 0.5f, 0.75f});
  auto s = Tensor<double>::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(s.at({1, 0}) == 4.0);
  CHECK(Tensor<float>::zeros({}).numel() == 1);
  CHECK(reinterpret_cast<uintptr_t>(Tensor<float>::zeros({7}).data()) % 64 == 0);
}

TEST_CASE("seeded random tensors are reproducible") {
  tessera::Generator g1(42), g2(42), g3(43);
  auto a = Tensor<float>::normal({100}, 0.0f, 1.0f, g1);
  auto b = Tensor<float>::normal({100}, 0.0f, 1.0f, g2);
  auto c = Tensor<float>::normal({100}, 0.0f, 1.0f, g3);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  auto u = Tensor<double>::uniform({1000}, -1.0, 2.0, g1);
  for (double v : u.to_vector()) CHECK((v >= -1.0 && v < 2.0));
}

TEST_CASE("views share storage; clone does not") {
  auto t = Tensor<float>::arange(6.0f);
  auto v = t.view({2, 3});
  v.at({1, 2}) = 42.0f;
  CHECK(t.at({5}) == 42.0f);
  CHECK(v.shares_storage_with(t));
  auto c = t.clone();
  c.at({0}) = -1.0f;
  CHECK(t.at({0}) == 0.0f);
  auto r = v.rows(1, 1);
  CHECK(r.shape() == Shape{1, 3});
  CHECK(r.at({0, 0}) == 3.0f);
}

TEST_CASE("bad shapes and indices throw tessera::Error naming the problem") {
  CHECK_THROWS_AS(Tensor<float>::from_vector({1, 2, 3}, {2, 2}), tessera::Error);
  CHECK_THROWS_WITH_AS(Tensor<float>::zeros({2, 3}).view({4}), doctest::Contains("(2, 3)"), tessera::Error);
  CHECK_THROWS_AS(Tensor<float>::zeros({2}).at({2}), tessera::Error);
  CHECK_THROWS_AS(Tensor<float>::zeros({1, 1, 1, 1, 1, 1, 1}), tessera::Error);
  CHECK_THROWS_AS(Tensor<float>().numel(), tessera::Error);
  CHECK_THROWS_AS(Tensor<float>::zeros({2}).item(), tessera::Error);
}

TEST_CASE("printing shows values and shape") {
  std::ostringstream os;
  os << Tensor<float>::from_vector({1, 2, 3, 4}, {2, 2});
  CHECK(os.str().find("shape=(2, 2)") != std::string::npos);
  CHECK(os.str().find("4.0000") != std::string::npos);
  std::ostringstream big;
  big << Tensor<float>::zeros({100});
  CHECK(big.str().find("...") != std::string::npos);
}

#if defined(__GLIBC__) && !defined(TESSERA_TEST_SANITIZED_ALLOCATOR)
namespace {
// Page faults of allocating a 16-MB tensor, writing every element and freeing it (the second of two rounds).
long faults_of_a_reused_16_mb_tensor() {
  const auto minor_faults = [] {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_minflt;
  };
  long faults = 0;
  for (int round = 0; round < 2; ++round) {
    const long before = minor_faults();
    {
      Tensor<float> t = Tensor<float>::full({4 << 20}, 1.0f);
      CHECK(t.data()[(4 << 20) - 1] == 1.0f);
    }
    faults = minor_faults() - before;
  }
  return faults;
}
}  // namespace

TEST_CASE("keep_freed_memory_for_reuse: a freed large tensor's pages are reused instead of faulted in again") {
  constexpr long pages = (16 << 20) / 4096;
  // glibc with a fixed small mmap threshold: every 16-MB block is a fresh mapping, every page faults again.
  REQUIRE(mallopt(M_MMAP_THRESHOLD, 128 << 10) == 1);
  CHECK(faults_of_a_reused_16_mb_tensor() > pages / 2);
  REQUIRE(tessera::keep_freed_memory_for_reuse());
  CHECK(faults_of_a_reused_16_mb_tensor() < pages / 10);
}
#endif
