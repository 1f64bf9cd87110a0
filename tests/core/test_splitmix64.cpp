// SplitMix64 (core/splitmix64.h): the reference generator's known answers, the counter form as
// the sequential generator's draws, and both range reductions on known words. The memory
// tasks' streams and the text loader's windows are built from these, and are checkpointed:
// any change here shows as a failure, not as different data.
#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>

#include "core/splitmix64.h"

using namespace mnemo;

TEST_CASE("splitmix64: the reference generator's first outputs from seed 0") {
  // Steele, Lea, Flood's splitmix64 (and Vigna's C version) from state 0.
  SplitMix64 rng(0);
  CHECK(rng.next() == 0xe220a8397b1dcdafULL);
  CHECK(rng.next() == 0x6e789e6aa1b965f4ULL);
  CHECK(rng.next() == 0x06c45d188009454fULL);
}

TEST_CASE("splitmix64: draw i of a stream is the (i + 1)-th step from mix(seed)") {
  for (uint64_t seed : {uint64_t(0), uint64_t(42), ~uint64_t(0)}) {
    SplitMix64 rng(splitmix64_mix(seed));
    for (uint64_t i = 0; i < 100; ++i) CHECK(splitmix64_at(seed, i) == rng.next());
  }
  CHECK(splitmix64_at(42, 0) == 0x989b3f130a063869ULL);
  CHECK(splitmix64_at(42, 1) == 0x290db4bf2570ded7ULL);
}

TEST_CASE("splitmix64: the two reductions to [0, n) differ, and each is fixed") {
  // The same three words of stream 42 reduced to [0, 1000) both ways.
  const uint64_t words[] = {splitmix64_at(42, 0), splitmix64_at(42, 1), splitmix64_at(42, 2)};
  const uint64_t modulo[] = {281, 191, 141};          // the memory tasks (memory/tasks.cpp)
  const uint64_t multiply_shift[] = {596, 160, 166};  // the text loader (train/text/random.h)
  for (int i = 0; i < 3; ++i) {
    CHECK(below_modulo(words[i], 1000) == modulo[i]);
    CHECK(below_multiply_shift(words[i], 1000) == multiply_shift[i]);
  }
  CHECK(below_multiply_shift(~uint64_t(0), 7) == 6);  // the largest word lands below n
  CHECK(below_multiply_shift(0, 7) == 0);
}
