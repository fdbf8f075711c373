// Tests of testing/gradcheck.hpp itself: it passes a correct op and catches a wrong backward.
#include "test_helpers.hpp"

using namespace tessera;
using test::TensorD;

namespace {
// x * x with a deliberately wrong backward (x instead of 2x).
TensorD square_with_wrong_backward(const TensorD& x) {
  TensorD out = x.clone();
  for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] *= x.data()[i];
  autograd::record<double>(out, "wrong_square", {x}, [x = x.detach()](const TensorD& g, const autograd::NeedsGrad&) {
    return autograd::Grads<double>{g * x};
  });
  return out;
}
}  // namespace

TEST_CASE("gradcheck reports the worst element of a wrong backward") {
  auto x = test::random_input({3, 7}, 5, 0.5, 1.0);
  auto result = testing::gradcheck([](const std::vector<TensorD>& in) { return square_with_wrong_backward(in[0]); }, {x});
  CHECK_FALSE(result.ok);
  CHECK(result.message.find("input 0 of shape (3, 7)") != std::string::npos);
  CHECK(result.message.find("analytic") != std::string::npos);
  auto good = testing::gradcheck([](const std::vector<TensorD>& in) { return in[0] * in[0]; }, {x});
  CHECK_MESSAGE(good.ok, good.message);
}
