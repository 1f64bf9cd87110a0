// Random numbers from a counter-based generator (Philox-4x32-10, Salmon et al. 2011).
//
// Why counter-based: a classic generator (Mersenne Twister, an LCG) is a sequence, so element
// i can only be drawn after elements 0..i-1, and the numbers a kernel produces depend on how
// its work was split over threads. Philox is instead a keyed bijection of a 128-bit counter:
// block(counter, key) -> 4 random 32-bit words. Element i of a tensor draws from the block at
// a counter derived from i, so any thread (or GPU lane) computes any element on its own and
// the result is the same on every backend and every thread count.
//
// ---- The block function (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as
// 1, 2, 3", SC'11; Random123's philox4x32_R with R = 10) ----
//
//   counter (c0, c1, c2, c3), key (k0, k1), all 32-bit; repeat 10 rounds:
//     (hi0, lo0) = 0xD2511F53 * c0     (the 64-bit product split in two halves)
//     (hi1, lo1) = 0xCD9E8D57 * c2
//     (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
//     k0 += 0x9E3779B9;  k1 += 0xBB67AE85   (the Weyl key schedule, between rounds)
//   the output is the final (c0, c1, c2, c3).
//
// ---- The stream ----
//
// A Generator is a (seed, offset) pair. Each random op takes the state {seed, offset} and
// advances offset by one (Generator::next), so consecutive ops draw disjoint numbers. Within
// one op, block b (b = 0, 1, 2, ...) is
//
//   words(b) = philox4x32(counter = (lo32(b), hi32(b), lo32(offset), hi32(offset)),
//                         key     = (lo32(seed), hi32(seed)))
//
// and element i (row-major index into the contiguous output) is built from these words:
//
//   name  bits  element i uses              value
//   u24    24   word i%4 of block i/4       u = (w >> 8) * 2^-24                  in [0, 1)
//   u53    53   words 2(i%2), 2(i%2)+1 of   w64 = w[2(i%2)] | w[2(i%2)+1] << 32,
//               block i/2                   u = (w64 >> 11) * 2^-53               in [0, 1)
//   w32    32   word i%4 of block i/4       the word itself
//   w64    64   as u53                      the 64-bit w64 itself
//
// The ops map them to values (C is the compute type: f64 for f64 outputs, f32 otherwise;
// fma is a fused multiply-add, so the rounding is the same on every backend):
//
//   uniform(lo, hi)  u53 for f64, u24 for f32/bf16/f16:  x = fma(u, C(hi - lo), C(lo)), then
//                    rounded to the output dtype and clamped to the largest value of that
//                    dtype strictly below hi (rounding can otherwise reach hi).
//   normal(m, s)     Box-Muller on a pair of uniforms (ua, ub) giving two elements:
//                      r = sqrt(-2 log(1 - ua)),  z0 = r cos(2 pi ub),  z1 = r sin(2 pi ub)
//                    (1 - ua is in (0, 1], so the log is finite), x = fma(z, C(s), C(m)).
//                    f32/bf16/f16: elements 2k, 2k+1 use ua = u24 of element 2k and
//                      ub = u24 of element 2k+1 (so element i still lives in block i/4);
//                    f64: elements 2k, 2k+1 use block k: ua from its words 0,1 and ub from
//                      words 2,3 (each as a u53); element 2k gets z0, 2k+1 gets z1.
//                    bf16/f16 are computed in f32 and rounded. cos/sin/log come from each
//                    backend's math library, so normals agree across backends to a few ulp,
//                    not bit for bit (uniform, bernoulli and randint are bit-exact).
//   bernoulli(p)     w32 < t, t = llround(p * 2^32) (an integer in [0, 2^32]); i.e. u < p with
//                    u = w / 2^32 and p rounded to a multiple of 2^-32. Any output dtype.
//   randint(lo, hi)  n = hi - lo; lo + floor(w * n / 2^bits) with w32 (bits = 32) when
//                    n <= 2^16 and w64 (bits = 64) otherwise. Each value's probability is
//                    within a relative 2^-16 (w32) or 2^-10 (w64, n <= 2^54) of 1/n.
//
// multinomial (probs (R, C), n samples per row) draws its uniforms as u53 "elements" too:
//   with replacement: draw j of row r uses element e = r*n + j; the sample is the first
//     category k whose running sum of weights (summed in f64, left to right) exceeds
//     u * total (the inverse CDF), never a zero-weight category.
//   without replacement (the exponential race, equivalent to Gumbel-top-k): category k of
//     row r gets the key E / w_k with E = -log1p(-u), u the u53 of element e = r*C + k
//     (keys capped at the largest finite double, so a tiny weight still beats a zero one);
//     the n categories with the smallest keys (zero weights never; ties to the lower index)
//     are the samples, in increasing key order. This is exactly sequential sampling without
//     replacement with renormalised weights (Efraimidis & Spirakis 2006).
//
// ---- Thread safety ----
//
// A Generator is a plain value: one thread at a time. The process-wide default_generator()
// is shared, so the random ops lock default_generator_mutex() while they take a state from
// it, as does manual_seed; code that calls default_generator() methods itself while other
// threads may draw should hold that mutex too.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>

#include "core/backend.h"
#include "core/ops/factory.h"

namespace mnemo {

// The Philox-4x32-10 constants, shared by every backend's kernels.
namespace philox {
inline constexpr uint32_t kMultiplier0 = 0xD2511F53;
inline constexpr uint32_t kMultiplier1 = 0xCD9E8D57;
inline constexpr uint32_t kWeyl0 = 0x9E3779B9;  // 2^32 / golden ratio
inline constexpr uint32_t kWeyl1 = 0xBB67AE85;  // (sqrt(3) - 1) * 2^32
inline constexpr int kRounds = 10;
}  // namespace philox

// The Philox-4x32-10 block function: 4 random 32-bit words for (counter, key).
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // The state for one op, advancing the stream.
  PhiloxState next() { return {seed_, offset_++}; }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The process-wide generator (used when none is passed), and its seeding: manual_seed(s)
// resets it to seed s, offset 0. Both are guarded by default_generator_mutex() (see above).
Generator& default_generator();
std::mutex& default_generator_mutex();
void manual_seed(uint64_t seed);

// Floating dtypes only. options.requires_grad makes the result a leaf that requires grad.
Tensor rand(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);   // [0,1)
Tensor randn(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);  // N(0,1)
// [lo, hi): finite lo < hi, both within the dtype's finite range.
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions options = {},
               Generator* gen = nullptr);
// mean + std * N(0, 1): finite mean, finite std >= 0.
Tensor normal(const Shape& shape, double mean, double std, TensorOptions options = {},
              Generator* gen = nullptr);
// 1 with probability p (0 <= p <= 1), else 0, in options.dtype (any dtype).
Tensor bernoulli(const Shape& shape, double p, TensorOptions options = {},
                 Generator* gen = nullptr);
// Integers in [lo, hi), lo < hi, |lo|, |hi| <= 2^53, in options.dtype; every value of the
// range must be exactly representable there (int32 range for i32, |values| <= 2^24 for f32,
// 2^8 for bf16, 2^11 for f16, [0, 2) for bool).
Tensor randint(int64_t lo, int64_t hi, const Shape& shape, TensorOptions options = {DType::i64},
               Generator* gen = nullptr);
// probs (C,) or (R, C): floating, non-negative finite weights with a positive sum per row
// (they need not sum to 1) -> (n,) or (R, n) i64 category indices. Without replacement,
// n may not exceed the number of non-zero weights of any row. The weights live on the
// device, so the backend checks them (like index ranges) and throws naming multinomial.
Tensor multinomial(const Tensor& probs, int64_t num_samples, bool replacement = false,
                   Generator* gen = nullptr);

}  // namespace mnemo
