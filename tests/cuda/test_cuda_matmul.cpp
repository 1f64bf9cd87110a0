// matmul on the GPU (cuBLASLt, cuda/matmul.cpp) against the CPU backend: odd shapes, batches,
// broadcast batch dims (stride 0, collapsible or not), transposed and otherwise strided
// operands, every floating dtype, K = 0 and empty outputs, TF32 opt-in, bitwise repeats.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"
#include "core/ops/linalg.h"
#include "core/ops/view.h"
#include "cuda/runtime.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

// x on the CPU, a contiguous copy.
// The same bits in two GPU results (shape, dtype and every byte).
// One product: shapes of a and b (any matmul operands, batch dims broadcast).
struct MatmulCase {
  Shape a, b;
};

const MatmulCase kCases[] = {
    {{1, 1}, {1, 1}},              // 1x1x1
    {{7, 33}, {33, 5}},            // odd sizes
    {{257, 129}, {129, 65}},       // larger, odd
    {{3, 31, 17}, {3, 17, 19}},    // batched
    {{3, 31, 17}, {17, 19}},       // b broadcast over the batch (stride 0)
    {{31, 17}, {2, 3, 17, 19}},    // a broadcast over two batch dims (collapses to stride 0)
    {{2, 1, 7, 5}, {1, 3, 5, 9}},  // both broadcast, batch dims that do not collapse
    {{33}, {33, 6}},               // vector @ matrix
    {{4, 9, 33}, {33}},            // batched matrix @ vector
    {{1000, 64}, {64, 3}},         // thin
};

}  // namespace

TEST_CASE("cuda: matmul matches the CPU for odd shapes, batches and broadcasts, every dtype") {
  for (DType dtype : kFloating) {
    for (const MatmulCase& c : kCases) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(c.a));
      CAPTURE(shape_str(c.b));
      const Tensor a = random_cpu(c.a, dtype, seed);
      const Tensor b = random_cpu(c.b, dtype, seed + 1);
      CHECK_CLOSE_TO_CPU(core::matmul(to_gpu(a), to_gpu(b)), core::matmul(a, b));
    }
  }
}

TEST_CASE("cuda: matmul reads transposed and strided operands") {
  for (DType dtype : kFloating) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    const Tensor a = random_cpu({3, 31, 17}, dtype, seed);
    const Tensor b = random_cpu({3, 17, 19}, dtype, seed + 1);
    const Tensor want = core::matmul(a, b);
    // Column-major matrices (the memory of a^T, viewed transposed): cuBLASLt's OP_T.
    const Tensor at = strided_copy(to_gpu(a)), bt = strided_copy(to_gpu(b));
    REQUIRE_FALSE(at.is_contiguous());
    CHECK_CLOSE_TO_CPU(core::matmul(at, to_gpu(b)), want);
    CHECK_CLOSE_TO_CPU(core::matmul(to_gpu(a), bt), want);
    CHECK_CLOSE_TO_CPU(core::matmul(at, bt), want);
    // x^T @ y as autograd's backward writes it (dB = A^T dY).
    const Tensor dy = random_cpu({3, 31, 19}, dtype, seed + 2);
    CHECK_CLOSE_TO_CPU(core::matmul(core::transpose(to_gpu(a), -1, -2), to_gpu(dy)),
                       core::matmul(core::transpose(a, -1, -2), dy));
    // Every other column of a wider buffer: neither row- nor column-major, copied first.
    const Tensor wide = random_cpu({3, 31, 34}, dtype, seed + 3);
    const Tensor a_step = core::slice(wide, -1, 0, 34, 2);
    CHECK_CLOSE_TO_CPU(core::matmul(core::slice(to_gpu(wide), -1, 0, 34, 2), to_gpu(b)),
                       core::matmul(a_step, b));
    // A view starting mid-buffer (pointer not 256-byte aligned) with a padded row stride.
    const Tensor padded = random_cpu({32, 20}, dtype, seed + 4);
    const Tensor a_off = core::slice(core::slice(padded, 0, 1, 32), 1, 3, 20);  // (31, 17)
    const Tensor b2 = random_cpu({17, 19}, dtype, seed + 5);
    const Tensor a_off_gpu = core::slice(core::slice(to_gpu(padded), 0, 1, 32), 1, 3, 20);
    CHECK_CLOSE_TO_CPU(core::matmul(a_off_gpu, to_gpu(b2)), core::matmul(a_off, b2));
  }
}

TEST_CASE("cuda: matmul with K = 0 gives zeros, and empty outputs work") {
  for (DType dtype : kFloating) {
    CAPTURE(dtype_name(dtype));
    const Tensor a = random_cpu({4, 0}, dtype, 1), b = random_cpu({0, 5}, dtype, 2);
    const Tensor out = core::matmul(to_gpu(a), to_gpu(b));
    REQUIRE(out.shape() == Shape({4, 5}));
    CHECK_CLOSE_TO_CPU(out, zeros({4, 5}, {dtype}));
    const Tensor m0 =
        core::matmul(to_gpu(random_cpu({0, 3}, dtype, 3)), to_gpu(random_cpu({3, 4}, dtype, 4)));
    CHECK(m0.shape() == Shape({0, 4}));
    const Tensor n0 = core::matmul(to_gpu(random_cpu({2, 5, 3}, dtype, 5)),
                                   to_gpu(random_cpu({2, 3, 0}, dtype, 6)));
    CHECK(n0.shape() == Shape({2, 5, 0}));
  }
}

TEST_CASE("cuda: matmul gives the same bits when repeated") {
  for (DType dtype : kFloating) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    const Tensor a = to_gpu(random_cpu({4, 257, 129}, dtype, seed));
    const Tensor b = to_gpu(random_cpu({129, 65}, dtype, seed + 1));
    const Tensor first = core::matmul(a, b);
    const Tensor second = core::matmul(a, b);
    CHECK(bitwise_equal(first, second));
  }
}

TEST_CASE("cuda: TF32 is off by default and opt-in for f32 matmul") {
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  const bool before = cuda::allow_tf32();
  const Tensor a = random_cpu({129, 257}, DType::f32, seed);
  const Tensor b = random_cpu({257, 65}, DType::f32, seed + 1);
  const Tensor want = core::matmul(a, b);
  cuda::set_allow_tf32(false);
  CHECK_FALSE(cuda::allow_tf32());
  CHECK_CLOSE_TO_CPU(core::matmul(to_gpu(a), to_gpu(b)), want);  // full f32: 1e-5
  cuda::set_allow_tf32(true);
  CHECK(cuda::allow_tf32());
  const double tf32_error = cuda_test::rel_error(core::matmul(to_gpu(a), to_gpu(b)), want);
  CAPTURE(tf32_error);
  CHECK(tf32_error <= 1e-2);  // TF32 keeps 10 mantissa bits per product
  cuda::set_allow_tf32(before);
}

}  // namespace mnemo
