// The Philox-4x32-10 block function on the GPU and the word -> value helpers of the random
// stream contract (core/ops/random.h; the CPU reference is philox4x32 in core/ops/random.cpp).
//
//   block b of an op with state {seed, offset}:
//     philox4x32(counter = (lo32(b), hi32(b), lo32(offset), hi32(offset)),
//                key     = (lo32(seed), hi32(seed)))
//   10 rounds of: (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2 (32x32 -> 64-bit products),
//     (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); then the Weyl key bump.
//
// Internal to cuda/random*.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/backend.h"
#include "core/ops/random.h"

namespace mnemo::cuda {

struct PhiloxWords {
  uint32_t w[4];
};

// The 4 words of block b of the stream at state.
__device__ __forceinline__ PhiloxWords philox_block(uint64_t b, PhiloxState state) {
  uint32_t c0 = uint32_t(b), c1 = uint32_t(b >> 32);
  uint32_t c2 = uint32_t(state.offset), c3 = uint32_t(state.offset >> 32);
  uint32_t k0 = uint32_t(state.seed), k1 = uint32_t(state.seed >> 32);
#pragma unroll
  for (int round = 0; round < philox::kRounds; ++round) {
    const uint32_t hi0 = __umulhi(philox::kMultiplier0, c0), lo0 = philox::kMultiplier0 * c0;
    const uint32_t hi1 = __umulhi(philox::kMultiplier1, c2), lo1 = philox::kMultiplier1 * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += philox::kWeyl0;  // the last bump is unused
    k1 += philox::kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// u24: the top 24 bits of a word as a float in [0, 1) (exact).
__device__ __forceinline__ float u24(uint32_t w) {
  return float(w >> 8) * 0x1p-24f;
}

// w64 from two words (lo first), and u53: its top 53 bits as a double in [0, 1) (exact).
__device__ __forceinline__ uint64_t w64(uint32_t lo, uint32_t hi) {
  return uint64_t(lo) | (uint64_t(hi) << 32);
}
__device__ __forceinline__ double u53(uint32_t lo, uint32_t hi) {
  return double(w64(lo, hi) >> 11) * 0x1p-53;
}

}  // namespace mnemo::cuda
