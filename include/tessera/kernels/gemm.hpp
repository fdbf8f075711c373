// The fast float GEMM (kernels/gemm/gemm.hpp): gemm, gemm_ex with fused epilogues, gemm_batched, matmul_any.
#pragma once

#include "tessera/kernels/gemm/gemm.hpp"
