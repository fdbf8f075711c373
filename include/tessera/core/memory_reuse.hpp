// Keeping freed memory for reuse: a training step allocates and frees the same large activation buffers every time.
// glibc's defaults serve large blocks with mmap (under a threshold that moves) and hand freed memory at the top of
// the heap back to the kernel, so every step faults the same pages in again: 57 million page faults in a 60-minute
// run of the fast recipe (2 threads, AMD EPYC Zen 3; /usr/bin/time), 2.6% of its time in the kernel.
#pragma once

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tessera {

// Fixes glibc's mmap threshold at its largest value (32 MB: larger blocks still come from mmap) and keeps up to 1 GB
// of freed memory in the process. Process-wide, so the library never calls it itself: the example programs that
// train call it at start; call it in your own. Returns false where it does nothing (a C library other than glibc).
inline bool keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
#else
  return false;
#endif
}

}  // namespace tessera
