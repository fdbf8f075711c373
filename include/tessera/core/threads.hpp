// The number of OpenMP threads tessera's kernels use.
#pragma once

#include <omp.h>

#include "tessera/core/error.hpp"

namespace tessera {

inline void set_num_threads(int threads) {
  TESSERA_CHECK(threads >= 1, "set_num_threads: expected at least 1 thread, got ", threads);
  omp_set_num_threads(threads);
}

inline int num_threads() { return omp_get_max_threads(); }

}  // namespace tessera
