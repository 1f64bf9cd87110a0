// SplitMix64 (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number generators"): a
// 64-bit state advanced by the golden-ratio increment, each step passed through a mixing
// function. Tiny, fast, good statistics, and the same numbers on every platform (integer
// arithmetic only), which is what the data pipelines need: the memory tasks' streams
// (memory/tasks.cpp) and the text loader's shuffles and windows (train/text/random.h) are
// measured and checkpointed, so their draws must never change.
//
//   SplitMix64 rng(seed);  rng.next();   the sequential generator: the k-th next() (k = 1, 2,
//                                        ...) is splitmix64_mix(seed + k * kSplitMix64Gamma)
//   splitmix64_at(seed, i)               counter form: draw i of stream `seed`, computed from
//                                        i alone (a stream resumes from one counter); it is the
//                                        (i + 1)-th next() of SplitMix64(splitmix64_mix(seed))
//
// Two reductions of a 64-bit word r to [0, n) are in use, and both stay (each one's data is
// fixed): below_modulo (r mod n; the memory tasks) and below_multiply_shift (the high word of
// r * n, Lemire 2019; the text loader). Both are biased by less than n / 2^64.
#pragma once

#include <cstdint>

namespace mnemo {

inline constexpr uint64_t kSplitMix64Gamma = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio

// The mixing function (a variant of MurmurHash3's finaliser, "Mix13"): a bijection on 64 bits.
constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += kSplitMix64Gamma;
    return splitmix64_mix(state_);
  }

 private:
  uint64_t state_;
};

constexpr uint64_t splitmix64_at(uint64_t seed, uint64_t index) {
  return splitmix64_mix(splitmix64_mix(seed) + (index + 1) * kSplitMix64Gamma);
}

// r mod n, for n > 0.
constexpr uint64_t below_modulo(uint64_t r, uint64_t n) {
  return r % n;
}

// floor(r * n / 2^64), for n > 0: the high word of the 128-bit product.
constexpr uint64_t below_multiply_shift(uint64_t r, uint64_t n) {
  return uint64_t((unsigned __int128)r * n >> 64);
}

}  // namespace mnemo
