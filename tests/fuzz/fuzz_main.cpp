// One libFuzzer target: TESSERA_FUZZ_TARGET names an entry function of fuzz_entries.hpp (tests/fuzz/CMakeLists.txt
// builds one executable per entry). A tessera::Error is the expected answer to bad input; everything else is a crash.
#include "fuzz_entries.hpp"

#include <tessera/core/threads.hpp>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::set_num_threads(1);  // one input at a time on one core; OpenMP teams would only add noise
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    tessera::fuzz::TESSERA_FUZZ_TARGET(data, size);
  } catch (const tessera::Error&) {
  }
  return 0;
}
