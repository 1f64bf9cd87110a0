// bf16 and f16 storage types. They are stored as 16 bits and computed in f32: every kernel
// converts on load and rounds (to nearest, ties to even) on store.
//
//   bf16: 1 sign, 8 exponent, 7 mantissa bits — the top half of an f32.
//   f16:  1 sign, 5 exponent, 10 mantissa bits — IEEE 754 binary16.
#pragma once

#include <bit>
#include <cstdint>

namespace mnemo {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  bf16(float value) : bits(round(value)) {}  // NOLINT: implicit like a float type
  operator float() const { return std::bit_cast<float>(uint32_t(bits) << 16); }

  static uint16_t round(float value) {
    uint32_t u = std::bit_cast<uint32_t>(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return uint16_t(u >> 16);
  }
};

struct f16 {
  uint16_t bits = 0;

  f16() = default;
  f16(float value) : bits(from_float(value)) {}  // NOLINT
  operator float() const { return to_float(bits); }

  static float to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t u;
    if (exponent == 0x1f) {
      u = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN
    } else if (exponent != 0) {
      u = sign | ((exponent + 112) << 23) | (mantissa << 13);  // normal: rebias 15 -> 127
    } else if (mantissa == 0) {
      u = sign;  // signed zero
    } else {     // subnormal: value = mantissa * 2^-24
      float value = float(mantissa) * 0x1p-24f;
      return sign ? -value : value;
    }
    return std::bit_cast<float>(u);
  }

  static uint16_t from_float(float value) {
    uint32_t u = std::bit_cast<uint32_t>(value);
    uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u;  // NaN
    if (abs >= 0x477ff000u) return sign | 0x7c00u;  // overflows to inf (>= 65520 rounds up)
    if (abs < 0x38800000u) {  // below the smallest normal f16 (2^-14): subnormal or zero
      // Scale so the f16 subnormal grid lands on integers, then round to nearest even.
      float scaled = std::bit_cast<float>(abs) * 0x1p24f;
      uint32_t q = uint32_t(scaled);
      float rest = scaled - float(q);
      if (rest > 0.5f || (rest == 0.5f && (q & 1u))) ++q;
      return sign | uint16_t(q);
    }
    // Normal: rebias exponent 127 -> 15 and round the 13 dropped mantissa bits to nearest even.
    uint32_t rounded = abs - (112u << 23);
    rounded += 0xfffu + ((rounded >> 13) & 1u);
    return sign | uint16_t(rounded >> 13);
  }
};

}  // namespace mnemo
