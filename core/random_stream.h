// The random stream of core/ops/random.h as code that both backends compile: the
// Philox-4x32-10 block function and the word -> value helpers (host and device: the CPU kernels
// of core/cpu/random.cpp, and the CUDA kernels of cuda/random*.cu through nvcc), and the upper
// clamp of uniform (host only: both backends compute it on the host).
//
//   block b of an op with state {seed, offset}:
//     philox4x32(counter = (lo32(b), hi32(b), lo32(offset), hi32(offset)),
//                key     = (lo32(seed), hi32(seed)))
//   10 rounds of: (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2 (32x32 -> 64-bit products),
//     (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); then the Weyl key bump.
//
// philox4x32() in core/ops/random.cpp stays a separate, plain reference: the tests check it
// against Random123's known answers and these kernels against it.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/backend.h"
#include "core/ops/random.h"

#if defined(__CUDACC__)
#define MNEMO_RANDOM_INLINE __host__ __device__ __forceinline__
#else
#define MNEMO_RANDOM_INLINE inline
#endif

namespace mnemo::philox {

struct Words {
  uint32_t w[4];
};

// The 4 words of block b of the stream at state. With the rounds unrolled, a loop over
// independent blocks vectorises on the CPU (core/cpu/random.cpp philox_batch).
MNEMO_RANDOM_INLINE Words block(uint64_t b, PhiloxState state) {
  uint32_t c0 = uint32_t(b), c1 = uint32_t(b >> 32);
  uint32_t c2 = uint32_t(state.offset), c3 = uint32_t(state.offset >> 32);
  uint32_t k0 = uint32_t(state.seed), k1 = uint32_t(state.seed >> 32);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t p0 = uint64_t(kMultiplier0) * c0;
    const uint64_t p1 = uint64_t(kMultiplier1) * c2;
    c0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    c1 = uint32_t(p1);
    c2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c3 = uint32_t(p0);
    k0 += kWeyl0;  // the last bump is unused
    k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// u24: the top 24 bits of a word as a float in [0, 1) (exact).
MNEMO_RANDOM_INLINE float u24(uint32_t w) {
  return float(w >> 8) * 0x1p-24f;
}

// w64 from two words (lo first), and u53: its top 53 bits as a double in [0, 1) (exact).
MNEMO_RANDOM_INLINE uint64_t w64(uint32_t lo, uint32_t hi) {
  return uint64_t(lo) | (uint64_t(hi) << 32);
}
MNEMO_RANDOM_INLINE double u53(uint32_t lo, uint32_t hi) {
  return double(w64(lo, hi) >> 11) * 0x1p-53;
}

// ---- uniform's upper clamp (host) ----

// The next value of H below v (toward -inf); +inf steps to the largest finite value. H is
// float, double, or mnemo's bf16 / f16 (core/half.h).
template <typename H>
H next_below(H v) {
  if constexpr (std::is_floating_point_v<H>) {
    return std::nextafter(v, -std::numeric_limits<H>::infinity());
  } else {  // bf16 / f16: step the sign-magnitude bit pattern
    H out = v;
    if ((v.bits & 0x7fffu) == 0) {
      out.bits = 0x8001u;  // below +-0: the smallest negative subnormal
    } else if (v.bits & 0x8000u) {
      out.bits = uint16_t(v.bits + 1);
    } else {
      out.bits = uint16_t(v.bits - 1);
    }
    return out;
  }
}

// The largest value of H strictly below hi, in H's compute type: where uniform clamps its
// rounded values (rounding could otherwise reach hi).
template <typename H>
ComputeType<H> largest_below(double hi) {
  using C = ComputeType<H>;
  H v = H(C(hi));
  while (double(C(v)) >= hi) v = next_below(v);
  return C(v);
}

}  // namespace mnemo::philox

#undef MNEMO_RANDOM_INLINE
