// The SIMD layer every fast kernel is written on: one float-vector interface over AVX-512 (VecAvx512, 16 lanes),
// AVX2+FMA (VecAvx2, 8 lanes), plain scalars (VecScalar) and pairs of any of them (VecPair), with one exp, one erf,
// one horizontal reduction, one in-register transpose and one tail mask; and row loops written once on it.
// A new width is one header under simd/.
#pragma once

// Every vector type has the same interface:
//   members  zero(), load(p), load_partial(p, n, fill) (lanes >= n read as fill, memory there is not touched),
//            load_broadcast(p) (*p in every lane), store(p), store_partial(p, n) (only lanes < n are written),
//            broadcast(x), first_n(n) (the tail mask: lanes < n), width, Mask;
//   free     + - * / and unary -, fmadd(a,b,c) = a*b+c, fnmadd(a,b,c) = c-a*b, fmsub(a,b,c) = a*b-c,
//            max/min (both return a when either operand is NaN, so NaN in a propagates), abs, sqrt,
//            round_nearest, trunc, lt, gt (masks), select(mask, a, b), copy_sign(magnitude, sign),
//            pow2(n) = 2^n for integral n in [-126, 127], reduce_add, reduce_max, transpose(V (&rows)[width])
//            (in place: rows[k] becomes what was column k), no_contract, exp, exp_nonpositive, erf,
//            normal_cdf_pdf.
// fmadd and friends round once on the SIMD types; on VecScalar they are a*b+c as the compiler contracts it.
#include "tessera/kernels/simd/polynomials.hpp"
#include "tessera/kernels/simd/vec_scalar.hpp"
#include "tessera/kernels/simd/vec_avx2.hpp"
#include "tessera/kernels/simd/vec_avx512.hpp"
#include "tessera/kernels/simd/vec_pair.hpp"
#include "tessera/kernels/simd/rows.hpp"

namespace tessera::kernels::simd {

// The widest vector this translation unit was compiled for; kernels take it as their default.
#if defined(__AVX512F__)
using VecNative = VecAvx512;
#elif defined(__AVX2__) && defined(__FMA__)
using VecNative = VecAvx2;
#else
using VecNative = VecScalar;
#endif

}  // namespace tessera::kernels::simd
