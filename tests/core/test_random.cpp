// Random numbers: the Philox-4x32-10 block function against Random123's known answers, the
// stream contract of core/ops/random.h (which block and word each element uses) checked
// element by element against philox4x32(), determinism and thread-count independence,
// statistics with tolerances derived from the sample size, dtypes, and misuse.
//
// Statistical checks use 5 standard errors (or a chi-square bound at z = 5), so a correct
// sampler fails one with probability ~1e-6; the seeds are fixed, so results are repeatable.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>
#include <thread>

#include "autograd/ops.h"
#include "core/cpu/parallel.h"

using namespace mnemo;

namespace {

// Word w of block b of the stream at state s (the documented counter and key layout).
std::array<uint32_t, 4> block(uint64_t b, PhiloxState s) {
  return philox4x32({uint32_t(b), uint32_t(b >> 32), uint32_t(s.offset), uint32_t(s.offset >> 32)},
                    {uint32_t(s.seed), uint32_t(s.seed >> 32)});
}
double u24_of(uint64_t i, PhiloxState s) {
  return std::ldexp(double(block(i / 4, s)[i % 4] >> 8), -24);
}
uint64_t w64_of(uint64_t i, PhiloxState s) {
  std::array<uint32_t, 4> w = block(i / 2, s);
  return uint64_t(w[2 * (i % 2)]) | (uint64_t(w[2 * (i % 2) + 1]) << 32);
}
double u53_of(uint64_t i, PhiloxState s) {
  return std::ldexp(double(w64_of(i, s) >> 11), -53);
}

// A generator at a state whose seed and offset both use their high 32 bits.
constexpr uint64_t kSeed = 0x0123456789ABCDEFull;
constexpr uint64_t kOffset = 0x0000000500000007ull;
Generator generator_at(uint64_t seed = kSeed, uint64_t offset = kOffset) {
  Generator g;
  g.set_state(seed, offset);
  return g;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}
double variance_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / double(v.size() - 1);
}
// 5 standard errors of a mean of n samples with standard deviation sd.
double five_standard_errors(double sd, size_t n) {
  return 5 * sd / std::sqrt(double(n));
}

// The chi-square value a correct sampler exceeds with probability ~3e-7 (Wilson-Hilferty
// approximation of the quantile at z = 5).
double chi_square_bound(double dof) {
  double a = 2 / (9 * dof);
  return dof * std::pow(1 - a + 5 * std::sqrt(a), 3);
}
double chi_square(const std::vector<double>& counts, const std::vector<double>& probs, double n) {
  double chi = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    if (probs[k] == 0) continue;
    chi += (counts[k] - n * probs[k]) * (counts[k] - n * probs[k]) / (n * probs[k]);
  }
  return chi;
}

// How far rounding to a 16-bit dtype (unit roundoff u = 2^-8 bf16, 2^-11 f16) can move the
// sample mean and variance of x: |e| <= u |x| per value, so the mean moves by at most
// u mean|x| and the variance by at most 2 u sd rms + u^2 rms^2.
struct Rounding {
  double mean = 0, variance = 0;
};
Rounding rounding_allowance(DType dtype, const std::vector<double>& x) {
  double u = dtype == DType::bf16 ? 0x1p-8 : dtype == DType::f16 ? 0x1p-11 : 0;
  double abs_mean = 0, square_mean = 0;
  for (double v : x) abs_mean += std::abs(v), square_mean += v * v;
  abs_mean /= double(x.size());
  double rms = std::sqrt(square_mean / double(x.size())), sd = std::sqrt(variance_of(x));
  return {u * abs_mean, 2 * u * sd * rms + u * u * rms * rms};
}

// Runs make() on 1 and on 2 threads and returns both results' bytes as doubles.
template <typename Make>
void check_thread_independent(Make make) {
  const int saved = num_threads();
  set_num_threads(1);
  std::vector<double> one = make().template to_vector<double>();
  set_num_threads(2);
  std::vector<double> two = make().template to_vector<double>();
  set_num_threads(saved);
  CHECK(one == two);
}

}  // namespace

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors") {
  // Random123's kat_vectors file, the three "philox4x32 10" lines: counter, key -> output.
  struct Kat {
    std::array<uint32_t, 4> counter;
    std::array<uint32_t, 2> key;
    std::array<uint32_t, 4> expected;
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) CHECK(philox4x32(k.counter, k.key) == k.expected);
}

TEST_CASE("rand f32: element i is u24 of word i%4 of block i/4") {
  Generator g = generator_at();
  PhiloxState s{g.seed(), g.offset()};
  std::vector<double> x = rand({7, 143}, {}, &g).to_vector<double>();  // 1001: a ragged tail
  int64_t mismatches = 0;
  for (size_t i = 0; i < x.size(); ++i) mismatches += x[i] != u24_of(i, s);
  CHECK(mismatches == 0);
  CHECK(g.offset() == kOffset + 1);
}

TEST_CASE("uniform f64: element i is u53 of words 2(i%2), 2(i%2)+1 of block i/2") {
  Generator g = generator_at();
  PhiloxState s{g.seed(), g.offset()};
  std::vector<double> x = rand({333}, {DType::f64}, &g).to_vector<double>();
  int64_t mismatches = 0;
  for (size_t i = 0; i < x.size(); ++i) mismatches += x[i] != u53_of(i, s);
  CHECK(mismatches == 0);
  // An affine range: x = lo + u (hi - lo), to the rounding of one fma.
  g.set_state(kSeed, kOffset);
  std::vector<double> y = uniform({333}, -2.5, 4, {DType::f64}, &g).to_vector<double>();
  for (size_t i = 0; i < y.size(); ++i) {
    CHECK(y[i] == doctest::Approx(-2.5 + u53_of(i, s) * 6.5).epsilon(1e-15));
  }
}

TEST_CASE("bernoulli and randint follow the documented words") {
  Generator g = generator_at();
  PhiloxState s{g.seed(), g.offset()};
  std::vector<double> b = bernoulli({1001}, 0.3, {DType::f32}, &g).to_vector<double>();
  const uint64_t threshold = uint64_t(std::llround(0.3 * 4294967296.0));
  int64_t mismatches = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    mismatches += b[i] != double(block(i / 4, s)[i % 4] < threshold);
  }
  CHECK(mismatches == 0);

  // A small range draws 32-bit words: lo + floor(w * n / 2^32).
  s = {g.seed(), g.offset()};
  std::vector<int64_t> r = randint(-5, 12, {1001}, {DType::i64}, &g).to_vector<int64_t>();
  mismatches = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    mismatches += r[i] != -5 + int64_t((uint64_t(block(i / 4, s)[i % 4]) * 17) >> 32);
  }
  CHECK(mismatches == 0);

  // A large range (> 2^16) draws 64-bit words: lo + floor(w64 * n / 2^64).
  s = {g.seed(), g.offset()};
  const int64_t lo = -(int64_t(1) << 40), hi = int64_t(3) << 45;
  std::vector<int64_t> big = randint(lo, hi, {777}, {DType::i64}, &g).to_vector<int64_t>();
  mismatches = 0;
  for (size_t i = 0; i < big.size(); ++i) {
    unsigned __int128 product = (unsigned __int128)w64_of(i, s) * uint64_t(hi - lo);
    mismatches += big[i] != lo + int64_t(uint64_t(product >> 64));
  }
  CHECK(mismatches == 0);
}

TEST_CASE("randn: Box-Muller on the documented pairs of uniforms") {
  auto box_muller = [](double ua, double ub, bool second) {
    double r = std::sqrt(-2 * std::log(1 - ua)), theta = 2 * std::numbers::pi * ub;
    return second ? r * std::sin(theta) : r * std::cos(theta);
  };
  Generator g = generator_at();
  PhiloxState s{g.seed(), g.offset()};
  // f32: elements 2k, 2k+1 use the u24 of elements 2k (radius) and 2k+1 (angle).
  std::vector<double> x = randn({1001}, {}, &g).to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i) {
    size_t k = i / 2 * 2;
    double z = box_muller(u24_of(k, s), u24_of(k + 1, s), i % 2 == 1);
    CHECK(std::abs(x[i] - z) <= 2e-5 * (1 + std::abs(z)));
  }
  // f64: elements 2k, 2k+1 use block k, the u53 of words 0,1 (radius) and 2,3 (angle).
  s = {g.seed(), g.offset()};
  std::vector<double> y = normal({501}, 1.5, 2, {DType::f64}, &g).to_vector<double>();
  for (size_t i = 0; i < y.size(); ++i) {
    size_t k = i / 2;
    double z = box_muller(u53_of(2 * k, s), u53_of(2 * k + 1, s), i % 2 == 1);
    CHECK(std::abs(y[i] - (1.5 + 2 * z)) <= 1e-12 * (1 + std::abs(z)));
  }
}

TEST_CASE("the same state gives the same numbers, and the next op gives new ones") {
  Generator a(42), b(42);
  Tensor first = randn({1000}, {}, &a);
  CHECK(first.to_vector<float>() == randn({1000}, {}, &b).to_vector<float>());
  CHECK(a.offset() == 1);
  Tensor second = randn({1000}, {}, &a);
  std::vector<float> v1 = first.to_vector<float>(), v2 = second.to_vector<float>();
  int64_t equal = 0;
  for (size_t i = 0; i < v1.size(); ++i) equal += v1[i] == v2[i];
  CHECK(equal == 0);
  // A different seed at the same offset is a different stream.
  Generator c(43);
  std::vector<float> v3 = randn({1000}, {}, &c).to_vector<float>();
  CHECK(v3 != v1);
  // set_state replays an op; every op advances the offset by one, even an empty one.
  a.set_state(42, 1);
  CHECK(randn({1000}, {}, &a).to_vector<float>() == v2);
  rand({0}, {}, &a);
  multinomial(tensor({1, 1}), 1, true, &a);
  CHECK(a.offset() == 4);
  // Values depend on the element index only, not on the shape.
  a.set_state(42, 0);
  CHECK(core::reshape(randn({10, 100}, {}, &a), {1000}).to_vector<float>() == v1);
}

TEST_CASE("manual_seed resets the default generator") {
  manual_seed(7);
  CHECK(default_generator().seed() == 7);
  CHECK(default_generator().offset() == 0);
  std::vector<float> a = rand({64}).to_vector<float>();
  CHECK(default_generator().offset() == 1);
  manual_seed(7);
  CHECK(rand({64}).to_vector<float>() == a);
  Generator g(7);
  CHECK(rand({64}, {}, &g).to_vector<float>() == a);
}

TEST_CASE("the default generator hands each op a distinct state across threads") {
  manual_seed(11);
  const int threads = 4, ops = 500;
  std::vector<std::vector<float>> drawn(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&drawn, t] {
      for (int i = 0; i < ops; ++i) drawn[size_t(t)].push_back(rand({1}).item());
    });
  }
  for (std::thread& w : workers) w.join();
  // Under the mutex no increment is lost, and every op drew from its own offset: replaying
  // offsets 0 .. threads*ops - 1 gives exactly the same multiset of numbers.
  CHECK(default_generator().offset() == uint64_t(threads * ops));
  std::multiset<float> seen, replay;
  for (const auto& v : drawn) seen.insert(v.begin(), v.end());
  Generator g(11);
  for (int i = 0; i < threads * ops; ++i) replay.insert(float(rand({1}, {}, &g).item()));
  CHECK(seen == replay);
}

TEST_CASE("random ops give the same result on 1 and 2 threads") {
  const Shape shape{1 << 20};
  Generator g(123);
  auto again = [&](auto fn) {
    return [&g, fn] {
      g.set_state(123, 9);
      return fn();
    };
  };
  check_thread_independent(again([&] { return rand(shape, {}, &g); }));
  check_thread_independent(again([&] { return rand(shape, {DType::f64}, &g); }));
  check_thread_independent(again([&] { return uniform(shape, -1, 1, {DType::bf16}, &g); }));
  check_thread_independent(again([&] { return randn(shape, {}, &g); }));
  check_thread_independent(again([&] { return randn(shape, {DType::f64}, &g); }));
  check_thread_independent(again([&] { return bernoulli(shape, 0.25, {}, &g); }));
  check_thread_independent(again([&] { return randint(0, 1000, shape, {DType::i64}, &g); }));
  check_thread_independent(
      again([&] { return randint(0, int64_t(1) << 40, shape, {DType::i64}, &g); }));
  Tensor probs = rand({4096, 64}, {}, &g);
  check_thread_independent(again([&] { return multinomial(probs, 8, true, &g); }));
  check_thread_independent(again([&] { return multinomial(probs, 8, false, &g); }));
}

TEST_CASE("uniform: mean and variance over 1e6 samples, in every floating dtype") {
  const size_t n = 1000000;
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    CAPTURE(dtype);
    Generator g(1);
    const double lo = -3, hi = 5, width = hi - lo;
    std::vector<double> x = uniform({int64_t(n)}, lo, hi, {dtype}, &g).to_vector<double>();
    CHECK(*std::min_element(x.begin(), x.end()) >= lo);
    CHECK(*std::max_element(x.begin(), x.end()) < hi);
    const Rounding r = rounding_allowance(dtype, x);
    CHECK(std::abs(mean_of(x) - (lo + hi) / 2) <=
          five_standard_errors(width / std::sqrt(12.0), n) + r.mean);
    // Var of the sample variance of a uniform: (mu4 - sigma^4) / n = w^4 (1/80 - 1/144) / n.
    double var_sd = std::sqrt(std::pow(width, 4) * (1.0 / 80 - 1.0 / 144));
    CHECK(std::abs(variance_of(x) - width * width / 12) <=
          five_standard_errors(var_sd, n) + r.variance);
  }
}

TEST_CASE("uniform in 16 bits stays strictly below hi after rounding") {
  // Without the clamp, about 2^-9 (bf16) / 2^-12 (f16) of the f32 draws would round up to 1.
  for (DType dtype : {DType::bf16, DType::f16}) {
    CAPTURE(dtype);
    Generator g(5), g32(5);
    std::vector<double> x = rand({1 << 20}, {dtype}, &g).to_vector<double>();
    std::vector<float> x32 = rand({1 << 20}, {DType::f32}, &g32).to_vector<float>();
    const double top = dtype == DType::bf16 ? 1 - 0x1p-8 : 1 - 0x1p-11;  // largest below 1
    auto round16 = [&](float v) {
      return dtype == DType::bf16 ? double(float(bf16(v))) : double(float(f16(v)));
    };
    int64_t at_top = 0, mismatches = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      at_top += x[i] == top;
      mismatches += x[i] != std::min(round16(x32[i]), top);  // the f32 draw, rounded, clamped
    }
    CHECK(mismatches == 0);
    CHECK(at_top > 0);
  }
  Generator g(6);
  std::vector<double> y = uniform({1 << 16}, 1000, 1001, {DType::f16}, &g).to_vector<double>();
  CHECK(*std::min_element(y.begin(), y.end()) == 1000);
  CHECK(*std::max_element(y.begin(), y.end()) == 1000.5);  // f16 spacing at 1000 is 0.5
}

TEST_CASE("normal: mean, variance and tail mass over 1e6 samples") {
  const size_t n = 1000000;
  for (DType dtype : {DType::f32, DType::f64, DType::bf16}) {
    CAPTURE(dtype);
    Generator g(2);
    const double mu = 2, sigma = 3;
    std::vector<double> x = normal({int64_t(n)}, mu, sigma, {dtype}, &g).to_vector<double>();
    const Rounding r = rounding_allowance(dtype, x);
    CHECK(std::abs(mean_of(x) - mu) <= five_standard_errors(sigma, n) + r.mean);
    // Var of the sample variance of a normal: 2 sigma^4 / n.
    CHECK(std::abs(variance_of(x) - sigma * sigma) <=
          five_standard_errors(std::sqrt(2.0) * sigma * sigma, n) + r.variance);
    if (dtype == DType::bf16) continue;  // rounding moves values across the thresholds below
    // P(|z| < 1) and P(z < -2) from the closed form Phi(z) = (1 + erf(z / sqrt 2)) / 2.
    double inside = 0, left = 0;
    for (double v : x) inside += std::abs(v - mu) < sigma, left += v < mu - 2 * sigma;
    double p1 = std::erf(1 / std::sqrt(2.0)), p2 = (1 + std::erf(-2 / std::sqrt(2.0))) / 2;
    CHECK(std::abs(inside / n - p1) <= five_standard_errors(std::sqrt(p1 * (1 - p1)), n));
    CHECK(std::abs(left / n - p2) <= five_standard_errors(std::sqrt(p2 * (1 - p2)), n));
  }
  // 16-bit normals are the f32 normals of the same state, rounded.
  Generator a(3), b(3);
  std::vector<float> f32 = randn({4099}, {}, &a).to_vector<float>();
  std::vector<float> bf = randn({4099}, {DType::bf16}, &b).to_vector<float>();
  int64_t mismatches = 0;
  for (size_t i = 0; i < f32.size(); ++i) mismatches += float(bf16(f32[i])) != bf[i];
  CHECK(mismatches == 0);
}

TEST_CASE("bernoulli: the rate of ones over 1e6 samples, in several dtypes") {
  const size_t n = 1000000;
  for (DType dtype : {DType::f32, DType::boolean, DType::i64, DType::bf16}) {
    CAPTURE(dtype);
    Generator g(4);
    const double p = 0.3;
    std::vector<double> x = bernoulli({int64_t(n)}, p, {dtype}, &g).to_vector<double>();
    double ones = 0;
    int64_t other = 0;
    for (double v : x) ones += v == 1, other += v != 0 && v != 1;
    CHECK(other == 0);
    CHECK(std::abs(ones / n - p) <= five_standard_errors(std::sqrt(p * (1 - p)), n));
  }
  Generator g(4);
  std::vector<double> never = bernoulli({100000}, 0, {}, &g).to_vector<double>();
  std::vector<double> always = bernoulli({100000}, 1, {}, &g).to_vector<double>();
  CHECK(*std::max_element(never.begin(), never.end()) == 0);
  CHECK(*std::min_element(always.begin(), always.end()) == 1);
}

TEST_CASE("randint covers lo to hi-1 uniformly (chi-square)") {
  struct Case {
    int64_t lo, hi;
    DType dtype;
  };
  for (Case c :
       {Case{-3, 7, DType::i64}, Case{0, 1000, DType::i32}, Case{10, 74, DType::f32},
        Case{0, 2, DType::boolean}, Case{-(int64_t(1) << 41), int64_t(1) << 41, DType::i64}}) {
    CAPTURE(c.lo);
    CAPTURE(c.hi);
    Generator g(8);
    const int64_t n = 1000000;
    std::vector<double> x = randint(c.lo, c.hi, {n}, {c.dtype}, &g).to_vector<double>();
    // Count into at most 1000 equal-width buckets of the range.
    const double range = double(c.hi - c.lo);
    const int64_t buckets = int64_t(std::min(range, 1000.0));
    std::vector<double> counts(size_t(buckets), 0);
    int64_t outside = 0, fractional = 0;
    for (double v : x) {
      outside += v < double(c.lo) || v >= double(c.hi);
      fractional += v != std::floor(v);
      counts[size_t(std::min<double>(buckets - 1, (v - double(c.lo)) / range * double(buckets)))]++;
    }
    CHECK(outside == 0);
    CHECK(fractional == 0);
    CHECK(std::count(counts.begin(), counts.end(), 0.0) == 0);
    std::vector<double> probs(size_t(buckets), 1.0 / double(buckets));
    CHECK(chi_square(counts, probs, double(n)) <= chi_square_bound(double(buckets - 1)));
  }
}

TEST_CASE("multinomial with replacement: frequencies match the weights") {
  Generator g(9);
  // Two rows with different (unnormalised) weights, one category with weight zero.
  Tensor probs = from_vector(std::vector<double>{1, 0, 2, 7, 5, 5, 0, 10}, {2, 4});
  const int64_t n = 200000;
  std::vector<int64_t> x = multinomial(probs, n, true, &g).to_vector<int64_t>();
  const std::vector<std::vector<double>> p = {{0.1, 0, 0.2, 0.7}, {0.25, 0.25, 0, 0.5}};
  for (size_t r = 0; r < 2; ++r) {
    std::vector<double> counts(4, 0);
    for (int64_t j = 0; j < n; ++j) counts[size_t(x[r * n + j])]++;
    CHECK(counts[r == 0 ? 1 : 2] == 0);  // never a zero-weight category
    CHECK(chi_square(counts, p[r], double(n)) <= chi_square_bound(2));
  }
  // 1-d probs give a 1-d result; a strided (transposed) probs gives the same draws.
  CHECK(multinomial(tensor({1, 2, 3}), 5, true, &g).shape() == Shape{5});
  Tensor t = core::transpose(core::contiguous(core::transpose(probs, 0, 1)), 0, 1);
  CHECK(!t.is_contiguous());
  g.set_state(9, 100);
  std::vector<int64_t> strided = multinomial(t, 50, true, &g).to_vector<int64_t>();
  g.set_state(9, 100);
  CHECK(multinomial(probs, 50, true, &g).to_vector<int64_t>() == strided);
}

TEST_CASE("zero samples, empty shapes and requires_grad") {
  Generator g(12);
  Tensor none = multinomial(from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}), 0, true, &g);
  CHECK(none.shape() == Shape{2, 0});
  // The weights are still checked when no sample is drawn.
  CHECK_THROWS_WITH_AS(multinomial(tensor({1, -1}), 0, true, &g), doctest::Contains("multinomial"),
                       Error);
  CHECK(rand({0, 3}, {}, &g).shape() == Shape{0, 3});
  CHECK(randn({}, {}, &g).dim() == 0);
  Tensor w = randn({3}, TensorOptions{}.with_requires_grad(), &g);
  CHECK(w.requires_grad());
  CHECK(w.is_leaf());
}

TEST_CASE("multinomial with replacement follows the documented inverse CDF") {
  Generator g = generator_at();
  PhiloxState s{g.seed(), g.offset()};
  const std::vector<double> w = {0.5, 0, 1.5, 3, 0.25};
  Tensor probs = from_vector(std::vector<double>(w), {1, 5}, {DType::f32});
  std::vector<int64_t> x = multinomial(probs, 301, true, &g).to_vector<int64_t>();
  for (size_t j = 0; j < x.size(); ++j) {
    double target = u53_of(j, s) * 5.25, sum = 0;
    int64_t k = 0;
    while (k < 4 && (sum += w[size_t(k)]) <= target) ++k;
    CHECK(x[j] == k);
  }
}

TEST_CASE("multinomial without replacement: distinct draws, sequential-draw probabilities") {
  Generator g(10);
  const std::vector<double> w = {0.1, 0.2, 0, 0.3, 0.4};
  const int64_t R = 100000;
  std::vector<double> rows;
  for (int64_t r = 0; r < R; ++r) rows.insert(rows.end(), w.begin(), w.end());
  std::vector<int64_t> x =
      multinomial(from_vector(rows, {R, 5}), 2, false, &g).to_vector<int64_t>();
  std::vector<double> first(5, 0), second(5, 0);
  int64_t repeated = 0;
  for (int64_t r = 0; r < R; ++r) {
    repeated += x[2 * r] == x[2 * r + 1];
    first[size_t(x[2 * r])]++;
    second[size_t(x[2 * r + 1])]++;
  }
  CHECK(repeated == 0);
  // The first draw has the weights' distribution; the second P(k) = sum_j p_j p_k / (1 - p_j).
  std::vector<double> p_second(5, 0);
  for (size_t k = 0; k < 5; ++k) {
    for (size_t j = 0; j < 5; ++j) {
      if (j != k) p_second[k] += w[j] * w[k] / (1 - w[j]);
    }
  }
  CHECK(first[2] == 0);
  CHECK(second[2] == 0);
  CHECK(chi_square(first, w, double(R)) <= chi_square_bound(3));
  CHECK(chi_square(second, p_second, double(R)) <= chi_square_bound(3));
  // Drawing all non-zero categories gives a permutation of them.
  std::vector<int64_t> all =
      multinomial(tensor({0, 3, 1, 0, 2}), 3, false, &g).to_vector<int64_t>();
  CHECK(std::set<int64_t>(all.begin(), all.end()) == std::set<int64_t>{1, 2, 4});
}

TEST_CASE("random ops reject bad arguments, naming the op") {
  Generator g;
  auto throws_naming = [](auto fn, const char* op) {
    CHECK_THROWS_WITH_AS(fn(), doctest::Contains(op), Error);
  };
  throws_naming([&] { return rand({3}, {DType::i64}, &g); }, "rand");
  throws_naming([&] { return randn({3}, {DType::boolean}, &g); }, "randn");
  throws_naming([&] { return uniform({3}, 1, 1, {}, &g); }, "uniform");
  throws_naming([&] { return uniform({3}, 2, 1, {}, &g); }, "uniform");
  throws_naming([&] { return uniform({3}, 0, NAN, {}, &g); }, "uniform");
  throws_naming([&] { return uniform({3}, 0, 1e5, {DType::f16}, &g); }, "uniform");
  throws_naming([&] { return normal({3}, 0, -1, {}, &g); }, "normal");
  throws_naming([&] { return normal({3}, INFINITY, 1, {}, &g); }, "normal");
  throws_naming([&] { return bernoulli({3}, 1.5, {}, &g); }, "bernoulli");
  throws_naming([&] { return bernoulli({3}, -0.1, {}, &g); }, "bernoulli");
  throws_naming([&] { return bernoulli({3}, NAN, {}, &g); }, "bernoulli");
  throws_naming([&] { return randint(3, 3, {3}, {}, &g); }, "randint");
  throws_naming([&] { return randint(0, int64_t(1) << 32, {3}, {DType::i32}, &g); }, "randint");
  throws_naming([&] { return randint(0, 3, {3}, {DType::boolean}, &g); }, "randint");
  throws_naming([&] { return randint(0, 5000, {3}, {DType::f16}, &g); }, "randint");
  throws_naming([&] { return randint(0, int64_t(1) << 60, {3}, {}, &g); }, "randint");
  CHECK(g.offset() == 0);  // a rejected op draws nothing
}

TEST_CASE("multinomial rejects bad probabilities, naming the op") {
  Generator g;
  auto throws_naming = [&](const Tensor& probs, int64_t n, bool replacement) {
    CHECK_THROWS_WITH_AS(multinomial(probs, n, replacement, &g), doctest::Contains("multinomial"),
                         Error);
  };
  throws_naming(tensor({0.5, -0.1, 0.6}), 1, true);              // negative weight
  throws_naming(tensor({0.5, NAN, 0.6}), 1, true);               // NaN
  throws_naming(tensor({0.5, INFINITY}), 1, true);               // inf
  throws_naming(tensor({1e308, 1e308}, {DType::f64}), 1, true);  // the sum overflows
  throws_naming(from_vector(std::vector<double>{2, 1, 0, 0}, {2, 2}), 1, true);  // zero row
  throws_naming(tensor({1, 0, 2}), 3, false);  // only 2 non-zero categories
  throws_naming(tensor({1, 1, 1}), 4, false);  // more samples than categories
  throws_naming(tensor({1, 1, 1}), -1, true);
  throws_naming(ones({2, 2, 2}), 1, true);               // rank 3
  throws_naming(tensor({1, 2}, {DType::i64}), 1, true);  // integer weights
  throws_naming(zeros({2, 0}), 1, true);                 // no categories
  // The message says which row and what is wrong.
  CHECK_THROWS_WITH_AS(
      multinomial(from_vector(std::vector<double>{1, 1, 2, -3}, {2, 2}), 1, true, &g),
      doctest::Contains("row 1"), Error);
}
