// Helpers shared by the tests: gradcheck assertions and random inputs.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <tessera/tessera.hpp>
#include <vector>

namespace test {

using TensorD = tessera::Tensor<double>;
using TensorF = tessera::Tensor<float>;

inline TensorD random_input(const tessera::Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  tessera::Generator gen(seed);
  return TensorD::uniform(shape, low, high, gen).set_requires_grad();
}

// Runs f, which must throw tessera::Error whose message contains every one of `parts`.
template <class F>
void check_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL("expected tessera::Error");
  } catch (const tessera::Error& e) {
    const std::string message = e.what();
    for (const auto& part : parts) CHECK_MESSAGE(message.find(part) != std::string::npos, "'" << part << "' not in: " << message);
  }
}

}  // namespace test

// CHECK that autograd's gradients of f at `inputs` agree with finite differences; prints the worst element.
#define CHECK_GRADCHECK(f, ...)                                              \
  do {                                                                       \
    auto gradcheck_result = ::tessera::testing::gradcheck(f, __VA_ARGS__);   \
    CHECK_MESSAGE(gradcheck_result.ok, gradcheck_result.message);           \
  } while (false)
