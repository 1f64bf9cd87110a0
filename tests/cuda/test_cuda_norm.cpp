// rms_norm and layer_norm on the GPU against the CPU backend: every floating dtype, rows of
// 1 to 4097 columns, with and without weight/bias, strided inputs, rows with a large mean, and
// backward (dx, dweight, dbias) over enough rows that the column sums span many row blocks,
// repeated to check the results are bitwise equal (two-pass sums, no atomics).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

// (rows as a 3-d shape (2, R, C), C) cases: odd widths, one wide row.
struct NormCase {
  int64_t R, C;
};
// 2 * 2500 rows: more rows than blocks, so blocks take several rows each.
const NormCase kCases[] = {{1, 1}, {5, 7}, {2500, 3}, {17, 33}, {3, 1000}, {2, 4097}};

}  // namespace

TEST_CASE("cuda: rms_norm and layer_norm forward match the CPU") {
  for (DType dtype : kFloating) {
    for (const NormCase& nc : kCases) {
      for (bool affine : {false, true}) {
        const uint64_t seed = fresh_seed();
        CAPTURE(seed);
        CAPTURE(dtype_name(dtype));
        CAPTURE(nc.C);
        CAPTURE(affine);
        // A mean far from 0 tests layer_norm's two-pass variance.
        Tensor x = random_cpu({2, nc.R, nc.C}, dtype, seed, 3, 5);
        Tensor w = affine ? random_cpu({nc.C}, dtype, seed + 1, 0.5, 1.5) : Tensor();
        Tensor b = affine ? random_cpu({nc.C}, dtype, seed + 2) : Tensor();
        Tensor xg = strided_copy(to_gpu(x));

        auto rms_want = core::rms_norm(x, w, 1e-5);
        auto rms_got = core::rms_norm(xg, gpu_or_undefined(w), 1e-5);
        CHECK_CLOSE_TO_CPU(rms_got.y, rms_want.y);
        CHECK_CLOSE_TO_CPU(rms_got.rstd, rms_want.rstd);

        auto ln_want = core::layer_norm(x, w, b, 1e-5);
        auto ln_got = core::layer_norm(xg, gpu_or_undefined(w), gpu_or_undefined(b), 1e-5);
        CHECK_CLOSE_TO_CPU(ln_got.y, ln_want.y);
        CHECK_CLOSE_TO_CPU(ln_got.mean, ln_want.mean);
        CHECK_CLOSE_TO_CPU(ln_got.rstd, ln_want.rstd);
      }
    }
  }
}

TEST_CASE("cuda: rms_norm_backward matches the CPU, bitwise repeatable") {
  for (DType dtype : kFloating) {
    for (int64_t N : {1, 7, 1000, 3001}) {
      for (int64_t C : {1, 33, 1000}) {
        for (bool affine : {false, true}) {
          const uint64_t seed = fresh_seed();
          CAPTURE(seed);
          CAPTURE(dtype_name(dtype));
          CAPTURE(N);
          CAPTURE(C);
          CAPTURE(affine);
          Tensor x = random_cpu({N, C}, dtype, seed);
          Tensor w = affine ? random_cpu({C}, dtype, seed + 1, 0.5, 1.5) : Tensor();
          Tensor dy = random_cpu({N, C}, dtype, seed + 2);
          Tensor rstd = core::rms_norm(x, w, 1e-6).rstd;
          auto want = core::rms_norm_backward(x, w, rstd, dy);
          auto run = [&] {
            return core::rms_norm_backward(to_gpu(x), gpu_or_undefined(w), to_gpu(rstd),
                                           to_gpu(dy));
          };
          auto got = run();
          if (C == 1) {
            // dx = r g (1 - x^2 r^2) = r g eps / (x^2 + eps): two nearly equal terms cancel, so
            // the error is measured against their size, r |g| <= max(rstd) * 1.5.
            const std::vector<double> r = rstd.to_vector<double>();
            const double scale = 1.5 * *std::max_element(r.begin(), r.end());
            CHECK_CLOSE_TO_CPU_AT_SCALE(got.dx, want.dx, scale);
          } else {
            CHECK_CLOSE_TO_CPU(got.dx, want.dx);
          }
          CHECK(got.dweight.defined() == affine);
          if (affine) CHECK_CLOSE_TO_CPU(got.dweight, want.dweight);
          auto again = run();
          CHECK(bitwise_equal(got.dx, again.dx));
          if (affine) CHECK(bitwise_equal(got.dweight, again.dweight));
        }
      }
    }
  }
}

TEST_CASE("cuda: layer_norm_backward matches the CPU, bitwise repeatable") {
  for (DType dtype : kFloating) {
    for (int64_t N : {1, 7, 1000, 3001}) {
      for (int64_t C : {1, 33, 1000}) {
        // none, weight only, weight and bias, bias only
        for (int affine = 0; affine < 4; ++affine) {
          const uint64_t seed = fresh_seed();
          CAPTURE(seed);
          CAPTURE(dtype_name(dtype));
          CAPTURE(N);
          CAPTURE(C);
          CAPTURE(affine);
          Tensor x = random_cpu({N, C}, dtype, seed, -2, 3);
          const bool has_w = affine == 1 || affine == 2, has_b = affine >= 2;
          Tensor w = has_w ? random_cpu({C}, dtype, seed + 1, 0.5, 1.5) : Tensor();
          Tensor b = has_b ? random_cpu({C}, dtype, seed + 2) : Tensor();
          Tensor dy = random_cpu({N, C}, dtype, seed + 3);
          auto fwd = core::layer_norm(x, w, b, 1e-5);
          auto want = core::layer_norm_backward(x, w, fwd.mean, fwd.rstd, dy, b.defined());
          auto run = [&] {
            return core::layer_norm_backward(to_gpu(x), gpu_or_undefined(w), to_gpu(fwd.mean),
                                             to_gpu(fwd.rstd), strided_copy(to_gpu(dy)),
                                             b.defined());
          };
          auto got = run();
          CHECK_CLOSE_TO_CPU(got.dx, want.dx);
          CHECK(got.dweight.defined() == w.defined());
          CHECK(got.dbias.defined() == b.defined());
          if (w.defined()) CHECK_CLOSE_TO_CPU(got.dweight, want.dweight);
          if (b.defined()) CHECK_CLOSE_TO_CPU(got.dbias, want.dbias);
          auto again = run();
          CHECK(bitwise_equal(got.dx, again.dx));
          if (w.defined()) CHECK(bitwise_equal(got.dweight, again.dweight));
          if (b.defined()) CHECK(bitwise_equal(got.dbias, again.dbias));
        }
      }
    }
  }
}

TEST_CASE("cuda: norm backward with no rows gives zero parameter gradients") {
  Tensor x = empty({0, 5}, {DType::f32, cuda_test::kGpu});
  Tensor w = to_gpu(random_cpu({5}, DType::f32, fresh_seed()));
  Tensor stats = empty({0}, {DType::f32, cuda_test::kGpu});
  auto rms = core::rms_norm_backward(x, w, stats, x);
  CHECK(rms.dweight.to_vector<double>() == std::vector<double>(5, 0.0));
  auto ln = core::layer_norm_backward(x, w, stats, stats, x, true);
  CHECK(ln.dweight.to_vector<double>() == std::vector<double>(5, 0.0));
  CHECK(ln.dbias.to_vector<double>() == std::vector<double>(5, 0.0));
}

}  // namespace mnemo
