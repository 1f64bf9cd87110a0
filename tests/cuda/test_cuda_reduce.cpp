// Reductions, arg-reductions, cumsum and topk on the GPU against the CPU backend: every dtype,
// odd shapes, several dims (one, several, all), strided inputs, long reductions that take the
// chunked two-pass path (many rows of few outputs, few outputs of many elements), NaN, ties,
// and bitwise repeats.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"
#include "core/ops/view.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

struct ReduceCase {
  Shape shape;
  std::vector<int64_t> dims;
};
const ReduceCase kReduceCases[] = {
    {{1}, {0}},          {{7}, {}},         {{33, 257}, {1}},    {{33, 257}, {0}},
    {{3, 5, 7}, {0, 2}}, {{3, 5, 7}, {1}},  {{4, 1, 9}, {1, 2}}, {{2, 3, 4, 5}, {0, 1, 3}},
    {{1000, 3}, {0}},    {{3, 1000}, {-1}}, {{5, 1031}, {}},
};

}  // namespace

TEST_CASE("cuda: sum, amax, amin match the CPU over dims, dtypes and strides") {
  for (DType dtype : kAll) {
    for (const ReduceCase& rc : kReduceCases) {
      for (bool strided : {false, true}) {
        const uint64_t seed = fresh_seed();
        CAPTURE(seed);
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape_str(rc.shape));
        CAPTURE(strided);
        Tensor x = random_cpu_any(rc.shape, dtype, seed);
        Tensor xg = strided ? strided_copy(to_gpu(x)) : to_gpu(x);
        CHECK_CLOSE_TO_CPU(core::sum(xg, rc.dims), core::sum(x, rc.dims));
        CHECK_CLOSE_TO_CPU(core::amax(xg, rc.dims), core::amax(x, rc.dims));
        CHECK_CLOSE_TO_CPU(core::amin(xg, rc.dims, true), core::amin(x, rc.dims, true));
      }
    }
  }
}

TEST_CASE("cuda: long reductions (chunked, two passes) match the CPU and repeat bitwise") {
  // (shape, dims): few outputs of many elements along contiguous and strided dims, and
  // many rows into few adjacent outputs (the bias gradient).
  const ReduceCase cases[] = {{{300001}, {0}},        {{3, 100003}, {1}}, {{4099, 65}, {0}},
                              {{32768, 77}, {0}},     {{70000, 2}, {0}},  {{9, 40000}, {0, 1}},
                              {{257, 3, 513}, {0, 2}}};
  for (DType dtype : {DType::f32, DType::bf16, DType::i64}) {
    for (const ReduceCase& rc : cases) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(rc.shape));
      Tensor x = random_cpu_any(rc.shape, dtype, seed);
      Tensor xg = to_gpu(x);
      Tensor got = core::sum(xg, rc.dims);
      CHECK_CLOSE_TO_CPU(got, core::sum(x, rc.dims));
      CHECK(bitwise_equal(got, core::sum(xg, rc.dims)));
      CHECK_CLOSE_TO_CPU(core::amax(xg, rc.dims), core::amax(x, rc.dims));
      CHECK_CLOSE_TO_CPU(core::amin(strided_copy(xg), rc.dims), core::amin(x, rc.dims));
    }
  }
}

TEST_CASE("cuda: amax and amin propagate NaN, and sums of bool count") {
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor x = random_cpu({6, 700}, dtype, fresh_seed());
    // A NaN in rows 1 and 4, early and late; the other rows have none.
    for (int64_t at : {1 * 700 + 3, 4 * 700 + 699}) {
      if (dtype == DType::f32) {
        static_cast<float*>(x.data_ptr())[at] = NAN;
      } else {
        static_cast<double*>(x.data_ptr())[at] = NAN;
      }
    }
    Tensor xg = to_gpu(x);
    for (std::vector<int64_t> dims : {std::vector<int64_t>{1}, std::vector<int64_t>{0}}) {
      CHECK_CLOSE_TO_CPU(core::amax(xg, dims), core::amax(x, dims));
      CHECK_CLOSE_TO_CPU(core::amin(xg, dims), core::amin(x, dims));
      CHECK_CLOSE_TO_CPU(argmax(xg, dims[0]), argmax(x, dims[0]));
      CHECK_CLOSE_TO_CPU(argmin(xg, dims[0]), argmin(x, dims[0]));
    }
    const std::vector<double> row_max = core::amax(xg, {1}).to_vector<double>();
    CHECK(std::isnan(row_max[1]));
    CHECK(std::isnan(row_max[4]));
    CHECK(!std::isnan(row_max[0]));
  }
  Tensor flags = random_cpu({37, 301}, DType::boolean, fresh_seed(), 0, 2);
  CHECK_CLOSE_TO_CPU(core::sum(to_gpu(flags), {0}), core::sum(flags, {0}));
  CHECK_CLOSE_TO_CPU(core::amax(to_gpu(flags), {1}), core::amax(flags, {1}));
}

TEST_CASE("cuda: argmax and argmin match the CPU, first index wins ties") {
  const Shape shapes[] = {{1}, {7}, {33, 257}, {3, 5, 7}, {1000, 3}, {2, 5000}};
  for (DType dtype : kAll) {
    for (const Shape& shape : shapes) {
      for (int64_t dim = 0; dim < int64_t(shape.size()); ++dim) {
        for (bool strided : {false, true}) {
          const uint64_t seed = fresh_seed();
          CAPTURE(seed);
          CAPTURE(dtype_name(dtype));
          CAPTURE(shape_str(shape));
          CAPTURE(dim);
          CAPTURE(strided);
          // Integers in [-3, 3): many ties, so the first-index rule is exercised.
          Tensor x = is_integral(dtype) ? random_cpu(shape, dtype, seed, -3, 3)
                                        : random_cpu_any(shape, dtype, seed);
          Tensor xg = strided ? strided_copy(to_gpu(x)) : to_gpu(x);
          CHECK_CLOSE_TO_CPU(argmax(xg, dim), argmax(x, dim));
          CHECK_CLOSE_TO_CPU(argmin(xg, dim, true), argmin(x, dim, true));
        }
      }
    }
  }
}

TEST_CASE("cuda: cumsum matches the CPU forward and reverse along every dim") {
  // {2, 5000}: long lines take the block scan; {3000, 4} along 0: thread per line.
  const Shape shapes[] = {{1}, {7}, {33, 257}, {3, 5, 7}, {3000, 4}, {2, 5000}};
  for (DType dtype : kAll) {
    for (const Shape& shape : shapes) {
      for (int64_t dim = 0; dim < int64_t(shape.size()); ++dim) {
        for (bool reverse : {false, true}) {
          const uint64_t seed = fresh_seed();
          CAPTURE(seed);
          CAPTURE(dtype_name(dtype));
          CAPTURE(shape_str(shape));
          CAPTURE(dim);
          CAPTURE(reverse);
          Tensor x = random_cpu_any(shape, dtype, seed);
          Tensor xg = strided_copy(to_gpu(x));
          Tensor got = core::cumsum(xg, dim, reverse);
          CHECK_CLOSE_TO_CPU(got, core::cumsum(x, dim, reverse));
          CHECK(bitwise_equal(got, core::cumsum(xg, dim, reverse)));
        }
      }
    }
  }
}

TEST_CASE("cuda: topk values and indices match the CPU, ties and NaN ordered as the CPU") {
  struct TopkCase {
    Shape shape;
    int64_t dim, k;
  };
  const TopkCase cases[] = {{{1}, 0, 1},        {{7}, 0, 7},          {{33, 257}, 1, 5},
                            {{33, 257}, 0, 33}, {{3, 5, 7}, 1, 2},    {{4, 1000}, -1, 50},
                            {{1000, 3}, 0, 1},  {{2, 3001}, 1, 3001}, {{5, 9}, 1, 0}};
  for (DType dtype : kAll) {
    for (const TopkCase& tc : cases) {
      for (bool largest : {true, false}) {
        const uint64_t seed = fresh_seed();
        CAPTURE(seed);
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape_str(tc.shape));
        CAPTURE(tc.k);
        CAPTURE(largest);
        // Integers in [-3, 3) and bf16 (few distinct values) give many ties.
        Tensor x = is_integral(dtype) ? random_cpu(tc.shape, dtype, seed, -3, 3)
                                      : random_cpu_any(tc.shape, dtype, seed);
        Tensor xg = strided_copy(to_gpu(x));
        core::TopK want = core::topk(x, tc.k, tc.dim, largest);
        core::TopK got = core::topk(xg, tc.k, tc.dim, largest);
        CHECK_CLOSE_TO_CPU(got.values, want.values);
        CHECK_CLOSE_TO_CPU(got.indices, want.indices);
      }
    }
  }
  // NaN counts as the largest; -0 and +0 tie (the lower index first).
  Tensor x =
      from_vector(std::vector<double>{1, NAN, -0.0, 3, 0.0, NAN, -INFINITY, 3}, {8}, {DType::f32});
  for (bool largest : {true, false}) {
    CAPTURE(largest);
    core::TopK want = core::topk(x, 8, 0, largest);
    core::TopK got = core::topk(to_gpu(x), 8, 0, largest);
    CHECK_CLOSE_TO_CPU(got.indices, want.indices);
    CHECK_CLOSE_TO_CPU(got.values, want.values);
  }
}

}  // namespace mnemo
