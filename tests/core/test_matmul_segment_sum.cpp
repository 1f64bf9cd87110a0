// matmul_segment_sum (core op; CPU backend's fused gemm_f32_segment_sum): the sum over
// K-segments of per-segment products, each computed as matmul computes it, added in f64.
// Checked against that very composition (one core::matmul per segment, summed in f64 in
// order) bit for bit, over shapes that are not tile multiples, segments shorter and longer
// than a k block (256), a last short segment, transposed and strided operands and 1 or 2
// threads; then the property it exists for: splitting K at segment boundaries and adding the
// pieces gives the same bits.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "core/cpu/parallel.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/linalg.h"
#include "core/ops/view.h"
#include "support/tensors.h"

using namespace mnemo;

namespace {

Tensor random_2d(int64_t rows, int64_t cols, DType dtype, uint64_t seed) {
  return test::random_tensor({rows, cols}, seed, dtype);
}

// The definition: one matmul per segment, added in f64 in order.
Tensor composed(const Tensor& a, const Tensor& b, int64_t segment) {
  Tensor out = zeros({a.size(0), b.size(1)}, {.dtype = DType::f64});
  for (int64_t k0 = 0; k0 < a.size(1); k0 += segment) {
    const int64_t n = std::min(segment, a.size(1) - k0);
    add_(out, core::matmul(core::narrow(a, 1, k0, n), core::narrow(b, 0, k0, n)));
  }
  return out;
}

bool same_bits(const Tensor& x, const Tensor& y) {
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * dtype_size(x.dtype())) == 0;
}

}  // namespace

TEST_CASE("matmul_segment_sum equals one matmul per segment summed in f64, bit for bit") {
  struct Case {
    int64_t M, N, K, segment;
  };
  const Case cases[] = {{7, 13, 40, 8},      {96, 128, 512, 128}, {100, 37, 300, 64},
                        {13, 200, 700, 300}, {6, 16, 256, 256},   {33, 17, 129, 1000},
                        {384, 128, 640, 128}};
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const Case& c : cases) {
      CAPTURE(threads);
      CAPTURE(c.M);
      CAPTURE(c.N);
      CAPTURE(c.K);
      CAPTURE(c.segment);
      // a as the transposed view the weight gradient passes (dY^T), b row-major.
      const Tensor dY = random_2d(c.K, c.M, DType::f32, 1 + uint64_t(c.M));
      const Tensor a = core::transpose(dY, 0, 1);
      const Tensor b = random_2d(c.K, c.N, DType::f32, 2 + uint64_t(c.N));
      const Tensor fused = core::matmul_segment_sum(a, b, c.segment);
      CHECK(fused.dtype() == DType::f64);
      CHECK(same_bits(fused, composed(a, b, c.segment)));
      // A strided (every other column) b, read in place or copied: same values.
      const Tensor wide = random_2d(c.K, 2 * c.N, DType::f32, 3);
      const Tensor strided = core::slice(wide, 1, 0, 2 * c.N, 2);
      CHECK(same_bits(core::matmul_segment_sum(a, strided, c.segment),
                      composed(a, strided, c.segment)));
    }
  }
  set_num_threads(saved);
}

TEST_CASE("matmul_segment_sum: pieces split at segment boundaries add up to the same bits") {
  const int64_t M = 50, N = 70, K = 6 * 48, segment = 48;
  const Tensor a = random_2d(M, K, DType::f32, 7), b = random_2d(K, N, DType::f32, 8);
  const Tensor whole = core::matmul_segment_sum(a, b, segment);
  Tensor halves = core::matmul_segment_sum(core::narrow(a, 1, 0, 2 * segment),
                                           core::narrow(b, 0, 0, 2 * segment), segment);
  add_(halves, core::matmul_segment_sum(core::narrow(a, 1, 2 * segment, K - 2 * segment),
                                        core::narrow(b, 0, 2 * segment, K - 2 * segment), segment));
  CHECK(same_bits(whole, halves));
}

TEST_CASE("matmul_segment_sum: other dtypes take the composed path; bad input is an error") {
  for (DType dtype : {DType::f64, DType::bf16}) {
    CAPTURE(dtype);
    const Tensor a = random_2d(9, 30, dtype, 9), b = random_2d(30, 11, dtype, 10);
    CHECK(same_bits(core::matmul_segment_sum(a, b, 7), composed(a, b, 7)));
  }
  const Tensor a = random_2d(4, 6, DType::f32, 11), b = random_2d(6, 3, DType::f32, 12);
  CHECK_THROWS_WITH_AS(core::matmul_segment_sum(a, b, 0), doctest::Contains("segment length"),
                       Error);
  CHECK_THROWS_WITH_AS(core::matmul_segment_sum(a, core::transpose(b, 0, 1), 2),
                       doctest::Contains("matmul_segment_sum"), Error);
  CHECK_THROWS_WITH_AS(core::matmul_segment_sum(a, random_2d(6, 3, DType::f64, 13), 2),
                       doctest::Contains("one dtype"), Error);
}
