// Second translation unit including all of tessera (see odr_check_a.cpp).
#include <tessera/tessera.hpp>

int odr_check_b() { return static_cast<int>(tessera::Tensor<double>::zeros({2, 2}).numel()); }
