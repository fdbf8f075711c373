// First of two translation units including all of tessera: a non-inline definition in a header breaks the link.
#include <tessera/tessera.hpp>

int odr_check_b();

int main() {
  tessera::Tensor<float> t = tessera::Tensor<float>::ones({2, 3});
  return (t.numel() == 6 && odr_check_b() == 4) ? 0 : 1;
}
