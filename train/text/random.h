// splitmix64 (Steele, Lea, Flood 2014): a 64-bit mixing function used as a counter-based
// generator: value(seed, i) = mix(mix(seed) + i * golden). Any draw can be computed from its
// index alone, so a stream is resumed by restoring one counter.
#pragma once

#include <cstdint>

namespace mnemo::text {

inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Draw number `index` of the stream `seed`.
inline uint64_t counter_random(uint64_t seed, uint64_t index) {
  return splitmix64_mix(splitmix64_mix(seed) + (index + 1) * 0x9e3779b97f4a7c15ULL);
}

// An integer in [0, n) from a 64-bit random word (Lemire's multiply-shift; bias < n / 2^64).
inline uint64_t below(uint64_t random, uint64_t n) {
  return uint64_t((unsigned __int128)random * n >> 64);
}

}  // namespace mnemo::text
