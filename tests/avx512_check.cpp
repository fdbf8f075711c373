// Runs the AVX-512 kernels of avx512_check_kernels.cpp against the reference where the CPU has AVX-512, and says it
// skipped them elsewhere. This file is compiled without AVX-512 flags and includes no tessera header: the CPU check
// must come before any AVX-512 instruction.
#include <doctest/doctest.h>

int avx512_kernel_mismatches(char* report, int report_size);

TEST_CASE("the AVX-512 attention, row kernels and GEMM match the reference where the CPU has AVX-512") {
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))) {
    MESSAGE("skipped: this CPU has no AVX-512 (the AVX-512 kernels were compiled, not run)");
    return;
  }
  char report[256] = "";
  CHECK_MESSAGE(avx512_kernel_mismatches(report, int(sizeof report)) == 0, report);
}
