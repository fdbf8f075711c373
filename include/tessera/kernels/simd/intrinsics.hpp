// <immintrin.h> for the x86 vector headers, with the one warning it needs silenced.
#pragma once

#if (defined(__AVX2__) && defined(__FMA__)) || defined(__AVX512F__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics seed results with _mm512_undefined_*, which -W(maybe-)uninitialized reports at
// every inlining site (GCC bug 105593); the pragma covers the header's own lines.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif
