// Random kernels on the CPU: uniform, normal, bernoulli, randint and multinomial.
//
// The stream contract (which Philox block and word each element uses, and how words become
// values) is in core/ops/random.h; this file implements it with the block function of
// core/random_stream.h (shared with the CUDA kernels; philox4x32() in core/ops/random.cpp
// is the plain reference). Blocks are generated kBatchBlocks at a time by a loop over
// independent lanes that the compiler turns into vector 32x32 -> 64-bit multiplies
// (vpmuludq). The batch's 4 * kBatchBlocks words are stored in element order (word w of
// block b at 4b + w) and a second, contiguous loop maps them to values.
//
// Threads take whole batches (parallel_for), and every element's value depends only on
// (seed, offset, element index), so the output is the same for any thread count.
//
// Measured (AMD EPYC with AVX-512, shared 2-core VM, one thread, CPU time, 2^24 elements into a
// preallocated output): uniform f32 1.0 ns/element (the Philox rounds dominate; a plain fill is
// 0.22), uniform f64 2.1, bf16 1.2, bernoulli 1.0, randint i64 1.1 (2.6 for ranges > 2^16), normal
// f32 9.0 and f64 16.8 (scalar libm log/sincos dominate). multinomial on (64, 50257): 3.7 ms for
// one draw per row with replacement, 80 ms for 8 without.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"
#include "core/ops/random.h"
#include "core/random_stream.h"

namespace mnemo::cpu {

namespace {

constexpr int64_t kBatchBlocks = 64;  // Philox blocks per batch: 256 words

// words[4l + w] = word w of block first + l, for l in [0, B). The lanes are independent and
// the 10 rounds of philox::block unroll completely, so the loop over l vectorises (16 lanes
// per AVX-512 register); written round-outer instead it does not.
template <int64_t B>
void philox_batch(uint64_t first, PhiloxState state, uint32_t* words) {
  for (int64_t l = 0; l < B; ++l) {
    const philox::Words w = philox::block(first + uint64_t(l), state);
    for (int i = 0; i < 4; ++i) words[4 * l + i] = w.w[i];
  }
}

using philox::largest_below;
using philox::u24;
using philox::u53;
using philox::w64;

// Splits the n elements of out into batches of kBatchBlocks blocks (per_block elements each)
// and calls fn(first_element, count, words) for each, in parallel.
template <typename Fn>
void for_each_batch(int64_t n, int64_t per_block, PhiloxState state, int64_t cost, Fn&& fn) {
  const int64_t per_batch = kBatchBlocks * per_block;
  const int64_t batches = (n + per_batch - 1) / per_batch;
  parallel_for(batches, per_batch * cost, [&](int64_t begin, int64_t end) {
    alignas(64) uint32_t words[4 * kBatchBlocks];
    for (int64_t b = begin; b < end; ++b) {
      philox_batch<kBatchBlocks>(uint64_t(b * kBatchBlocks), state, words);
      const int64_t first = b * per_batch;
      fn(first, std::min(per_batch, n - first), words);
    }
  });
}

// uniform: x = fma(u, hi - lo, lo), rounded to T, kept strictly below hi.
template <typename T>
void uniform_kernel(const RandomParams& p, PhiloxState state, T* out, int64_t n) {
  using C = ComputeType<T>;
  const C lo = C(p.alpha), scale = C(p.beta - p.alpha), top = largest_below<T>(p.beta);
  if constexpr (std::is_same_v<T, double>) {
    for_each_batch(n, 2, state, 2, [=](int64_t first, int64_t count, const uint32_t* w) {
      double* o = out + first;
      for (int64_t k = 0; k < count; ++k) {
        o[k] = std::min(std::fma(u53(w[2 * k], w[2 * k + 1]), scale, lo), top);
      }
    });
  } else {
    for_each_batch(n, 4, state, 2, [=](int64_t first, int64_t count, const uint32_t* w) {
      T* o = out + first;
      for (int64_t k = 0; k < count; ++k) {
        o[k] = T(std::min(C(T(std::fma(u24(w[k]), scale, lo))), top));
      }
    });
  }
}

// normal: Box-Muller, r = sqrt(-2 log(1 - ua)), (z0, z1) = r (cos, sin)(2 pi ub).
template <typename T>
void normal_kernel(const RandomParams& p, PhiloxState state, T* out, int64_t n) {
  using C = ComputeType<T>;
  const C mean = C(p.alpha), stddev = C(p.beta), two_pi = C(2 * std::numbers::pi);
  // Writes the pair (z0, z1) to elements e, e + 1 of o, as far as count allows.
  auto store = [=](T* o, int64_t e, int64_t count, C ua, C ub) {
    const C r = std::sqrt(C(-2) * std::log(C(1) - ua));
    const C theta = two_pi * ub;
    const C z0 = r * std::cos(theta), z1 = r * std::sin(theta);  // one sincos call
    o[e] = T(std::fma(z0, stddev, mean));
    if (e + 1 < count) o[e + 1] = T(std::fma(z1, stddev, mean));
  };
  if constexpr (std::is_same_v<T, double>) {  // a block per pair: ua = words 0,1, ub = 2,3
    for_each_batch(n, 2, state, 40, [=](int64_t first, int64_t count, const uint32_t* w) {
      for (int64_t e = 0; e < count; e += 2) {
        const uint32_t* b = w + 2 * e;
        store(out + first, e, count, u53(b[0], b[1]), u53(b[2], b[3]));
      }
    });
  } else {  // a pair of words per pair: ua = word of element 2k, ub = word of 2k + 1
    for_each_batch(n, 4, state, 20, [=](int64_t first, int64_t count, const uint32_t* w) {
      for (int64_t e = 0; e < count; e += 2) store(out + first, e, count, u24(w[e]), u24(w[e + 1]));
    });
  }
}

// bernoulli: 1 iff w32 < round(p * 2^32).
template <typename T>
void bernoulli_kernel(const RandomParams& p, PhiloxState state, T* out, int64_t n) {
  const uint64_t threshold = uint64_t(std::llround(std::ldexp(p.alpha, 32)));
  const T one = convert<T>(1.0), zero = convert<T>(0.0);
  for_each_batch(n, 4, state, 1, [=](int64_t first, int64_t count, const uint32_t* w) {
    T* o = out + first;
    for (int64_t k = 0; k < count; ++k) o[k] = uint64_t(w[k]) < threshold ? one : zero;
  });
}

// randint: lo + floor(w * n / 2^bits), w32 for n <= 2^16, else w64.
template <typename T>
void randint_kernel(const RandomParams& p, PhiloxState state, T* out, int64_t n) {
  const int64_t lo = int64_t(p.alpha);
  const uint64_t range = uint64_t(int64_t(p.beta) - lo);
  if (range <= (uint64_t(1) << 16)) {
    for_each_batch(n, 4, state, 1, [=](int64_t first, int64_t count, const uint32_t* w) {
      T* o = out + first;
      for (int64_t k = 0; k < count; ++k) {
        o[k] = convert<T>(lo + int64_t((uint64_t(w[k]) * range) >> 32));
      }
    });
  } else {
    for_each_batch(n, 2, state, 2, [=](int64_t first, int64_t count, const uint32_t* w) {
      T* o = out + first;
      for (int64_t k = 0; k < count; ++k) {
        const unsigned __int128 product = (unsigned __int128)w64(w[2 * k], w[2 * k + 1]) * range;
        o[k] = convert<T>(lo + int64_t(uint64_t(product >> 64)));
      }
    });
  }
}

// ---- multinomial ----------------------------------------------------------------------

// What is wrong with one row of weights, if anything.
struct RowCheck {
  enum Kind : uint8_t { ok, bad_weight, bad_sum, too_few } kind = ok;
  int64_t category = 0;  // bad_weight: where
  double value = 0;      // bad_weight: the weight; bad_sum: the sum; too_few: non-zero count
};

// The u53 of element e (block e/2, words 2(e%2), 2(e%2)+1), keeping the last block.
struct U53Reader {
  PhiloxState state;
  uint64_t block = std::numeric_limits<uint64_t>::max();
  uint32_t words[4] = {};

  double at(int64_t e) {
    const uint64_t b = uint64_t(e) / 2;
    if (b != block) {
      philox_batch<1>(b, state, words);
      block = b;
    }
    const int64_t h = e % 2;
    return u53(words[2 * h], words[2 * h + 1]);
  }
};

// Draws the n samples of row r into out. p: the row's C weights, `stride` apart. work (C,):
// scratch for the running sums (with replacement) or the race keys (without).
template <typename T>
RowCheck multinomial_row(const T* p, int64_t stride, int64_t C, int64_t r, int64_t n,
                         bool replacement, PhiloxState state, int64_t* out,
                         std::vector<double>& work, std::vector<int64_t>& order) {
  double total = 0;
  int64_t nonzero = 0, last_positive = 0;
  for (int64_t k = 0; k < C; ++k) {
    const double w = double(ComputeType<T>(p[k * stride]));
    if (!(w >= 0) || !std::isfinite(w)) return {RowCheck::bad_weight, k, w};
    total += w;
    if (w > 0) ++nonzero, last_positive = k;
    work[size_t(k)] = replacement ? total : w;
  }
  if (!(total > 0) || !std::isfinite(total)) return {RowCheck::bad_sum, 0, total};
  U53Reader rng{state};
  if (replacement) {  // inverse CDF: the first category whose running sum exceeds u * total
    for (int64_t j = 0; j < n; ++j) {
      const double target = rng.at(r * n + j) * total;
      const int64_t k = std::upper_bound(work.begin(), work.begin() + C, target) - work.begin();
      out[j] = k < C ? k : last_positive;  // u * total rounded up to total
    }
    return {};
  }
  if (n > nonzero) return {RowCheck::too_few, 0, double(nonzero)};
  // The exponential race: key E / w with E ~ Exp(1); the n smallest keys win, in order.
  for (int64_t k = 0; k < C; ++k) {
    const double w = work[size_t(k)], e = -std::log1p(-rng.at(r * C + k));
    work[size_t(k)] = w > 0 ? std::min(e / w, std::numeric_limits<double>::max())
                            : std::numeric_limits<double>::infinity();
  }
  for (int64_t k = 0; k < C; ++k) order[size_t(k)] = k;
  std::partial_sort(order.begin(), order.begin() + n, order.begin() + C, [&](int64_t a, int64_t b) {
    const double ka = work[size_t(a)], kb = work[size_t(b)];
    return ka < kb || (ka == kb && a < b);
  });
  std::copy(order.begin(), order.begin() + n, out);
  return {};
}

void throw_row_error(const RowCheck& check, int64_t row, int64_t num_samples) {
  switch (check.kind) {
    case RowCheck::bad_weight:
      fail("multinomial: row {} has weight {} at category {} (weights must be finite and >= 0)",
           row, check.value, check.category);
    case RowCheck::bad_sum:
      fail("multinomial: the weights of row {} sum to {} (the sum must be positive and finite)",
           row, check.value);
    case RowCheck::too_few:
      fail(
          "multinomial: row {} has {} non-zero weights, cannot draw {} samples without "
          "replacement",
          row, int64_t(check.value), num_samples);
    case RowCheck::ok:
      break;
  }
}

}  // namespace

void CpuBackend::random(RandomOp op, const RandomParams& params, PhiloxState state,
                        const Tensor& out) {
  const int64_t n = out.numel();
  // kernel(T* out) for the floating dtypes, or for every dtype.
  auto floating = [&](auto kernel) {
    visit_floating(out.dtype(), op_name(op), [&](auto tag) {
      kernel(static_cast<typename decltype(tag)::type*>(out.data_ptr()));
    });
  };
  auto any = [&](auto kernel) {
    visit_dtype(out.dtype(), op_name(op), [&](auto tag) {
      kernel(static_cast<typename decltype(tag)::type*>(out.data_ptr()));
    });
  };
  static_assert(size_t(RandomOp::count) == 4, "a new distribution needs a case here");
  switch (op) {
    case RandomOp::uniform:
      return floating([&](auto* o) { uniform_kernel(params, state, o, n); });
    case RandomOp::normal:
      return floating([&](auto* o) { normal_kernel(params, state, o, n); });
    case RandomOp::bernoulli:
      return any([&](auto* o) { bernoulli_kernel(params, state, o, n); });
    case RandomOp::randint:
      return any([&](auto* o) { randint_kernel(params, state, o, n); });
    case RandomOp::count:
      break;
  }
  fail_internal("random: invalid op {}", int(op));
}

// Rows are independent (each draws from its own elements of the stream) and run in
// parallel; a row with bad weights records what is wrong, and the first such row throws
// after the parallel loop (never from inside it).
void CpuBackend::multinomial(const Tensor& probs, int64_t num_samples, bool replacement,
                             PhiloxState state, const Tensor& out) {
  const int64_t R = probs.size(0), C = probs.size(1);
  std::vector<RowCheck> checks(static_cast<size_t>(R));
  visit_floating(probs.dtype(), "multinomial", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = static_cast<const T*>(probs.data_ptr());
    int64_t* o = out.data<int64_t>();
    const int64_t cost = replacement ? C + 16 * num_samples : 24 * C;
    parallel_for(R, cost, [&](int64_t begin, int64_t end) {
      std::vector<double> work(static_cast<size_t>(C));
      std::vector<int64_t> order(replacement ? 0 : size_t(C));
      for (int64_t r = begin; r < end; ++r) {
        checks[size_t(r)] =
            multinomial_row(p + r * probs.stride(0), probs.stride(1), C, r, num_samples,
                            replacement, state, o + r * num_samples, work, order);
      }
    });
  });
  for (int64_t r = 0; r < R; ++r) throw_row_error(checks[size_t(r)], r, num_samples);
}

}  // namespace mnemo::cpu
