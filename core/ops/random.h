// Random numbers from a counter-based generator (Philox-4x32-10, Salmon et al. 2011).
//
// A Generator is a (seed, offset) pair. Each random op draws element i from the Philox block
// at counter (i, offset) under key seed, then advances offset by one, so the numbers depend
// only on seed, the op's position in the stream and i — the same on every backend and every
// thread count.
#pragma once

#include <array>
#include <cstdint>

#include "core/backend.h"
#include "core/ops/factory.h"

namespace mnemo {

// The Philox-4x32-10 block function: 4 random 32-bit words for (counter, key).
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  // The state for one op, advancing the stream.
  PhiloxState next() { return {seed_, offset_++}; }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The process-wide generator (used when none is passed), and its seeding.
Generator& default_generator();
void manual_seed(uint64_t seed);

Tensor rand(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);   // [0,1)
Tensor randn(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);  // N(0,1)
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions options = {},
               Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, TensorOptions options = {},
              Generator* gen = nullptr);
// 1 with probability p, else 0, in options.dtype.
Tensor bernoulli(const Shape& shape, double p, TensorOptions options = {},
                 Generator* gen = nullptr);
Tensor randint(int64_t lo, int64_t hi, const Shape& shape, TensorOptions options = {DType::i64},
               Generator* gen = nullptr);
// probs (C,) or (R, C) non-negative weights -> (n,) or (R, n) i64 indices.
Tensor multinomial(const Tensor& probs, int64_t num_samples, bool replacement = false,
                   Generator* gen = nullptr);

}  // namespace mnemo
