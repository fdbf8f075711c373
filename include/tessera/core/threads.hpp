// The number of OpenMP threads tessera's kernels use, and the few OpenMP queries the kernels make. Without
// -fopenmp (no _OPENMP) everything runs on the calling thread: one thread, never inside a parallel region.
#pragma once

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "tessera/core/error.hpp"

namespace tessera {

inline void set_num_threads(int threads) {
  TESSERA_CHECK(threads >= 1, "set_num_threads: expected at least 1 thread, got ", threads);
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
}

// Threads a parallel region started now would get.
inline int num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Inside a parallel region: the calling thread's index and the size of its team; outside: 0 and 1.
inline int thread_index() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline int team_size() {
#if defined(_OPENMP)
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline bool in_parallel_region() {
#if defined(_OPENMP)
  return omp_in_parallel();
#else
  return false;
#endif
}

}  // namespace tessera
