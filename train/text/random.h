// The text layer's random draws: shuffling documents (train/text/dataset.cpp) and picking
// training windows (train/text/loader.cpp). Counter-based SplitMix64 from core/splitmix64.h,
// so that any draw follows from its index alone and a stream resumes from one counter; a word
// is reduced to [0, n) by multiply-shift. Both are fixed: the windows are checkpointed.
#pragma once

#include <cstdint>

#include "core/splitmix64.h"

namespace mnemo::text {

// Draw number `index` of the stream `seed`.
inline uint64_t counter_random(uint64_t seed, uint64_t index) {
  return splitmix64_at(seed, index);
}

// An integer in [0, n) from a 64-bit random word.
inline uint64_t below(uint64_t random, uint64_t n) {
  return below_multiply_shift(random, n);
}

}  // namespace mnemo::text
