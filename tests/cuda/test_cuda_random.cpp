// The CUDA random ops against the CPU backend: for the same Generator seed the GPU must draw
// the same numbers (bit for bit for uniform, bernoulli, randint and multinomial; normal to a
// few ulp, as core/ops/random.h promises), for every dtype and odd sizes (partial Philox
// blocks at the end), and consecutive draws must advance the stream identically.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "compare.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/random.h"
#include "core/ops/view.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

const std::vector<Shape> kShapes = {{1}, {2}, {3}, {5}, {7}, {33, 65}, {1001}, {4, 1, 257}};

void check_equal(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  CHECK(got.dtype() == want.dtype());
  CHECK(got.device() == kGpu);
  CHECK(rel_error(got, want) == 0);
}

}  // namespace

TEST_CASE("cuda: uniform equals the CPU's bit for bit, every floating dtype") {
  for (DType dtype : kFloating) {
    for (const Shape& shape : kShapes) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(shape));
      Generator cpu(seed), gpu(seed);
      check_equal(uniform(shape, -2.5, 7, {dtype, kGpu}, &gpu),
                  uniform(shape, -2.5, 7, {dtype}, &cpu));
      // The next op draws from the next offset on both.
      check_equal(rand(shape, {dtype, kGpu}, &gpu), rand(shape, {dtype}, &cpu));
      CHECK(gpu.offset() == cpu.offset());
      // A range whose top is not representable: values stay below hi after rounding.
      check_equal(uniform(shape, 0, 1.001, {dtype, kGpu}, &gpu),
                  uniform(shape, 0, 1.001, {dtype}, &cpu));
    }
  }
}

TEST_CASE("cuda: normal matches the CPU to a few ulp, every floating dtype") {
  for (DType dtype : kFloating) {
    for (const Shape& shape : kShapes) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(shape));
      Generator cpu(seed), gpu(seed);
      CHECK_CLOSE_TO_CPU(normal(shape, 1.5, 0.25, {dtype, kGpu}, &gpu),
                         normal(shape, 1.5, 0.25, {dtype}, &cpu));
      CHECK_CLOSE_TO_CPU(randn(shape, {dtype, kGpu}, &gpu), randn(shape, {dtype}, &cpu));
    }
  }
}

TEST_CASE("cuda: bernoulli equals the CPU's, every dtype, p in {0, 0.3, 1}") {
  for (DType dtype :
       {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::boolean}) {
    for (double p : {0.0, 0.3, 1.0}) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(p);
      Generator cpu(seed), gpu(seed);
      check_equal(bernoulli({33, 65}, p, {dtype, kGpu}, &gpu),
                  bernoulli({33, 65}, p, {dtype}, &cpu));
      check_equal(bernoulli({7}, p, {dtype, kGpu}, &gpu), bernoulli({7}, p, {dtype}, &cpu));
    }
  }
}

TEST_CASE("cuda: randint equals the CPU's, small (32-bit) and large (64-bit) ranges") {
  struct Case {
    int64_t lo, hi;
    DType dtype;
  };
  const std::vector<Case> cases = {{-5, 17, DType::i64},
                                   {0, 65536, DType::i64},
                                   {0, 65537, DType::i64},
                                   {-(int64_t(1) << 40), int64_t(1) << 41, DType::i64},
                                   {-1000, 1000, DType::i32},
                                   {-100000, 2000000000, DType::i32},
                                   {0, 2, DType::boolean},
                                   {-8, 8, DType::bf16},
                                   {-1000, 1000, DType::f16},
                                   {0, 1 << 24, DType::f32},
                                   {-(int64_t(1) << 53), 3, DType::f64}};
  for (const Case& c : cases) {
    for (const Shape& shape : {Shape{1}, Shape{3}, Shape{1001}, Shape{33, 65}}) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(c.lo);
      CAPTURE(c.hi);
      CAPTURE(dtype_name(c.dtype));
      CAPTURE(shape_str(shape));
      Generator cpu(seed), gpu(seed);
      check_equal(randint(c.lo, c.hi, shape, {c.dtype, kGpu}, &gpu),
                  randint(c.lo, c.hi, shape, {c.dtype}, &cpu));
    }
  }
}

TEST_CASE("cuda: random ops repeat bitwise for the same seed and differ for another") {
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator a(seed), b(seed), c(seed + 1);
  Tensor x = normal({1000}, 0, 1, {DType::f32, kGpu}, &a);
  Tensor y = normal({1000}, 0, 1, {DType::f32, kGpu}, &b);
  Tensor z = normal({1000}, 0, 1, {DType::f32, kGpu}, &c);
  CHECK(rel_error(x, y) == 0);
  CHECK(rel_error(x, z) > 0);
}

TEST_CASE("cuda: multinomial equals the CPU's, with and without replacement") {
  struct Case {
    Shape shape;
    int64_t n;
  };
  const std::vector<Case> cases = {{{1, 1}, 1},     {{3, 7}, 2},     {{7}, 3},
                                   {{64, 1000}, 1}, {{5, 1000}, 17}, {{2, 3000}, 100}};
  for (DType dtype : kFloating) {
    for (const Case& c : cases) {
      for (bool replacement : {true, false}) {
        const uint64_t seed = fresh_seed();
        CAPTURE(seed);
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape_str(c.shape));
        CAPTURE(c.n);
        CAPTURE(replacement);
        // Weights in [0, 1) with about a fifth of them exactly zero (never sampled); the
        // first category of each row is positive so that every row has enough non-zeros.
        Tensor w = core::relu(cuda_test::random_cpu(c.shape, DType::f64, seed, -0.25, 1));
        Tensor first = core::narrow(w, -1, 0, 1);
        copy_(first, full(first.shape(), 0.5, {DType::f64}));
        if (c.shape.back() > 1) {
          // Rows of a 1-category shape have a single non-zero; give the others several.
          copy_(core::narrow(w, -1, 1, 1), full(first.shape(), 0.25, {DType::f64}));
        }
        Tensor probs = core::to(w, dtype);
        const int64_t n = replacement ? c.n : std::min<int64_t>(c.n, 2);
        Generator cpu(seed), gpu(seed);
        Tensor want = multinomial(probs, n, replacement, &cpu);
        check_equal(multinomial(cuda_test::to_gpu(probs), n, replacement, &gpu), want);
        // A strided (transposed-copy) weight matrix gives the same samples.
        if (probs.dim() == 2) {
          Generator again(seed);
          check_equal(multinomial(cuda_test::strided_copy(cuda_test::to_gpu(probs)), n, replacement,
                                  &again),
                      want);
        }
      }
    }
  }
}

TEST_CASE("cuda: multinomial without replacement draws all categories as a permutation") {
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Tensor probs = cuda_test::random_cpu({4, 50}, DType::f32, seed, 0.01, 1);
  Generator cpu(seed), gpu(seed);
  Tensor want = multinomial(probs, 50, false, &cpu);
  Tensor got = multinomial(cuda_test::to_gpu(probs), 50, false, &gpu);
  check_equal(got, want);
}

TEST_CASE("cuda: multinomial rejects bad weights with the CPU's errors") {
  Generator gen(3);
  const Tensor negative =
      from_vector(std::vector<double>{0.5, -0.1, 0.2}, {1, 3}, {DType::f32, kGpu});
  CHECK_THROWS_WITH(multinomial(negative, 1, true, &gen),
                    doctest::Contains("row 0 has weight -0.1"));
  const Tensor zero = zeros({2, 4}, {DType::f32, kGpu});
  CHECK_THROWS_WITH(multinomial(zero, 1, true, &gen), doctest::Contains("sum to 0"));
  const Tensor sparse =
      from_vector(std::vector<double>{0.5, 0, 0, 1, 0, 0}, {2, 3}, {DType::f64, kGpu});
  CHECK_THROWS_WITH(multinomial(sparse, 2, false, &gen),
                    doctest::Contains("row 0 has 1 non-zero weights"));
  CHECK(multinomial(sparse, 1, false, &gen).to_vector<int64_t>() == std::vector<int64_t>{0, 0});
}

}  // namespace mnemo
