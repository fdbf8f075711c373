// Bit-exact conversions between float and the 16-bit formats of safetensors files: IEEE 754 binary16 (F16)
// and bfloat16 (BF16). Widening is exact; narrowing rounds to nearest, ties to even, and keeps NaN a NaN.
#pragma once

#include <bit>
#include <cstdint>

namespace tessera::io::detail {

// binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits; subnormals are mantissa * 2^-24.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));  // inf, NaN
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24 is exact in float.
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
}

inline uint16_t float_to_half(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u)  // NaN: keep the top payload bits and force a quiet NaN
    return static_cast<uint16_t>(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));
  if (magnitude >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
  if (magnitude >= 0x38800000u) {  // normal half (>= 2^-14): rebias the exponent, round off 13 mantissa bits
    const uint32_t rounded = magnitude + 0xFFFu + ((magnitude >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
  }
  // Subnormal half: count units of 2^-24. The float is m * 2^(e - 150) with the 24-bit significand m,
  // so the count is m * 2^(e - 126), i.e. m shifted right by 126 - e >= 14, rounded to nearest even.
  const uint32_t biased_exponent = magnitude >> 23;
  if (biased_exponent < 102) return sign;  // below 2^-25: rounds to zero (ties to even included)
  const uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - biased_exponent;
  uint32_t units = significand >> shift;
  const uint32_t remainder = significand & ((1u << shift) - 1u);
  const uint32_t half_unit = 1u << (shift - 1u);
  if (remainder > half_unit || (remainder == half_unit && (units & 1u))) ++units;
  return static_cast<uint16_t>(sign | units);  // units == 1024 is the smallest normal, 0x0400
}

// bfloat16 is the top half of a float: 1 sign bit, 8 exponent bits, 7 mantissa bits.
inline float bfloat16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

inline uint16_t float_to_bfloat16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  const uint32_t rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);  // overflow past the max carries into inf
  return static_cast<uint16_t>(rounded >> 16);
}

}  // namespace tessera::io::detail
