// The linear scan (forward and backward) and the fused AdamW step on the GPU against the CPU
// backend: every floating dtype, scans along the first, middle and last dim, with and without
// h0, broadcast and strided inputs; AdamW over several steps with weight decay and gradient
// scaling, 16-bit parameters with f32 moments.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/optim.h"
#include "core/ops/view.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

// A scan case: the shape of a and x (a may broadcast), the dim scanned, h0's shape (empty:
// no h0).
struct ScanCase {
  Shape a_shape, x_shape;
  int64_t dim;
  Shape h0_shape;
};

const ScanCase kScanCases[] = {
    {{1}, {1}, 0, {}},                        // one step, one channel
    {{2, 37, 5}, {2, 37, 5}, 1, {2, 5}},      // (B, T, C) with h0
    {{3, 200, 33}, {3, 200, 33}, 1, {}},      // long T, odd C
    {{200, 7}, {200, 7}, 0, {7}},             // scan along the first dim
    {{4, 9, 130}, {4, 9, 130}, -1, {4, 9}},   // along the last dim (C = 1 in the layout)
    {{1, 50, 8}, {3, 50, 8}, 1, {1, 8}},      // a and h0 broadcast over the batch
    {{2, 1000, 1}, {2, 1000, 1}, 1, {2, 1}},  // B * C = 2 recurrences, long
};

}  // namespace

TEST_CASE("cuda: scan and scan_backward match the CPU, bitwise repeatable") {
  for (DType dtype : kFloating) {
    for (const ScanCase& sc : kScanCases) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(sc.x_shape));
      CAPTURE(sc.dim);
      // |a| < 1 keeps long recurrences bounded.
      Tensor a = random_cpu(sc.a_shape, dtype, seed, -0.95, 0.95);
      Tensor x = random_cpu(sc.x_shape, dtype, seed + 1);
      Tensor h0 = sc.h0_shape.empty() ? Tensor() : random_cpu(sc.h0_shape, dtype, seed + 2);
      Tensor h = core::scan(a, x, sc.dim, h0);
      Tensor hg = core::scan(to_gpu(a), strided_copy(to_gpu(x)), sc.dim, gpu_or_undefined(h0));
      CHECK_CLOSE_TO_CPU(hg, h);

      Tensor dh = random_cpu(h.shape(), dtype, seed + 3);
      auto want = core::scan_backward(a, h, sc.dim, h0, dh);
      auto run = [&] {
        return core::scan_backward(to_gpu(a), to_gpu(h), sc.dim, gpu_or_undefined(h0),
                                   strided_copy(to_gpu(dh)));
      };
      auto got = run();
      CHECK_CLOSE_TO_CPU(got.da, want.da);
      CHECK_CLOSE_TO_CPU(got.dx, want.dx);
      CHECK(got.dh0.defined() == h0.defined());
      if (h0.defined()) CHECK_CLOSE_TO_CPU(got.dh0, want.dh0);
      auto again = run();
      CHECK(bitwise_equal(got.da, again.da));
      CHECK(bitwise_equal(got.dx, again.dx));
      if (h0.defined()) CHECK(bitwise_equal(got.dh0, again.dh0));
    }
  }
}

TEST_CASE("cuda: adamw_ matches the CPU over several steps") {
  for (DType dtype : kFloating) {
    for (int64_t n : {1, 7, 1000, 100003}) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(n);
      const DType state = stats_dtype(dtype);
      Tensor param = random_cpu({n}, dtype, seed);
      Tensor m = zeros({n}, {state});
      Tensor v = zeros({n}, {state});
      Tensor param_g = to_gpu(param), m_g = to_gpu(m), v_g = to_gpu(v);
      AdamWParams p;
      p.lr = 1e-2;
      p.weight_decay = 0.1;
      p.grad_scale = 0.5;
      for (int64_t step = 1; step <= 3; ++step) {
        p.step = step;
        Tensor grad = random_cpu({n}, dtype, seed + uint64_t(step), -2, 2);
        adamw_(param, grad, m, v, p);
        adamw_(param_g, to_gpu(grad), m_g, v_g, p);
      }
      CHECK_CLOSE_TO_CPU(param_g, param);
      CHECK_CLOSE_TO_CPU(m_g, m);
      CHECK_CLOSE_TO_CPU(v_g, v);
    }
  }
}

TEST_CASE("cuda: adamw_ from nonzero moments at a late step matches the CPU") {
  // Moments that are not zero (a resumed run) and a step count far from 1.
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  const int64_t n = 4097;
  Tensor param = random_cpu({n}, DType::f32, seed);
  Tensor grad = random_cpu({n}, DType::f32, seed + 1);
  Tensor m = random_cpu({n}, DType::f32, seed + 2, -0.1, 0.1);
  Tensor v = random_cpu({n}, DType::f32, seed + 3, 0, 0.1);
  Tensor param_g = to_gpu(param), m_g = to_gpu(m), v_g = to_gpu(v);
  AdamWParams p;
  p.lr = 3e-3;
  p.beta1 = 0.8;
  p.beta2 = 0.95;
  p.eps = 1e-6;
  p.weight_decay = 0.01;
  p.step = 1234;
  adamw_(param, grad, m, v, p);
  adamw_(param_g, to_gpu(grad), m_g, v_g, p);
  CHECK_CLOSE_TO_CPU(param_g, param);
  CHECK_CLOSE_TO_CPU(m_g, m);
  CHECK_CLOSE_TO_CPU(v_g, v);
}

}  // namespace mnemo
