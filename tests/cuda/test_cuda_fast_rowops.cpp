// The fast bandwidth-bound kernels (cuda/scan_fast.cu, cuda/norm_fast.cu,
// cuda/cross_entropy_fast.cu), each run under KernelChoiceGuard(fast) and compared with the
// CPU backend and with its reference kernel (KernelChoiceGuard(reference)): a fast kernel may
// differ from its reference by a relative error below 1e-4 in f32 and 2e-2 in bf16
// (fast_kernel_bound), against the CPU it is held to the stricter
// CHECK_CLOSE_TO_CPU tolerances against the CPU. Sizes that are not multiples of the vector
// width or the warp, rows whose data does not start on a 16-byte boundary (the scalar paths),
// every floating dtype, and bitwise-equal repeats.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"
#include "cuda/rowops_fast.cuh"
#include "cuda/runtime.h"

namespace mnemo {
namespace {

using cuda::KernelChoice;
using cuda::KernelChoiceGuard;
using namespace cuda_test;  // tests/cuda/compare.h

// x on the GPU, contiguous, but starting one element past an allocation (so not on a 16-byte
// boundary): the fast kernels must take their scalar paths.
Tensor unaligned_gpu(const Tensor& x) {
  Tensor buffer = zeros({x.numel() + 1}, {x.dtype(), kGpu});
  Tensor view = core::view(core::narrow(buffer, 0, 1, x.numel()), x.shape());
  copy_(view, to_gpu(x));
  return view;
}

// How far a fast kernel may land from its reference kernel.
double fast_kernel_bound(DType dtype) {
  switch (dtype) {
    case DType::f64: return 1e-10;
    case DType::f32: return 1e-4;
    default: return 2e-2;
  }
}

// fast vs reference, both GPU results.
#define CHECK_CLOSE_TO_REFERENCE(fast, reference)                \
  do {                                                           \
    const double ref_error_ = rel_error((fast), (reference));    \
    CAPTURE(ref_error_);                                         \
    CHECK(ref_error_ <= fast_kernel_bound((reference).dtype())); \
  } while (0)

// ---- scan ----

struct ScanShape {
  int64_t B, T, C;
  bool h0;
};

// All take the chunked path (checked below): B * C small, T >= 2 chunks of 8.
const ScanShape kScanShapes[] = {
    {1, 16, 1, true},      // the shortest T with two chunks
    {2, 1000, 5, true},    // odd C, chunks not dividing T
    {3, 257, 33, false},   // T prime
    {1, 4099, 1, true},    // one long recurrence: many chunks
    {4, 64, 130, false},   // C just past a multiple of 32
    {8, 100, 2048, true},  // a wide layer: B * C = 16k recurrences
};

}  // namespace

TEST_CASE("cuda: fast scan and scan_backward match the CPU and the reference kernel") {
  for (DType dtype : kFloating) {
    for (const ScanShape& s : kScanShapes) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(s.B);
      CAPTURE(s.T);
      CAPTURE(s.C);
      REQUIRE(cuda::scan_fast_applies(s.B, s.T, s.C));
      // |a| < 1 keeps long recurrences bounded.
      Tensor a = random_cpu({s.B, s.T, s.C}, dtype, seed, -0.95, 0.95);
      Tensor x = random_cpu({s.B, s.T, s.C}, dtype, seed + 1);
      Tensor h0 = s.h0 ? random_cpu({s.B, s.C}, dtype, seed + 2) : Tensor();
      Tensor dh = random_cpu({s.B, s.T, s.C}, dtype, seed + 3);
      Tensor h = core::scan(a, x, 1, h0);
      auto want = core::scan_backward(a, h, 1, h0, dh);

      auto forward = [&](KernelChoice choice) {
        KernelChoiceGuard guard(choice);
        return core::scan(to_gpu(a), to_gpu(x), 1, gpu_or_undefined(h0));
      };
      auto backward = [&](KernelChoice choice) {
        KernelChoiceGuard guard(choice);
        return core::scan_backward(to_gpu(a), to_gpu(h), 1, gpu_or_undefined(h0), to_gpu(dh));
      };
      Tensor h_fast = forward(KernelChoice::fast);
      Tensor h_ref = forward(KernelChoice::reference);
      CHECK_CLOSE_TO_CPU(h_fast, h);
      CHECK_CLOSE_TO_REFERENCE(h_fast, h_ref);
      CHECK(bitwise_equal(h_fast, forward(KernelChoice::fast)));

      auto g_fast = backward(KernelChoice::fast);
      auto g_ref = backward(KernelChoice::reference);
      CHECK_CLOSE_TO_CPU(g_fast.dx, want.dx);
      CHECK_CLOSE_TO_CPU(g_fast.da, want.da);
      CHECK_CLOSE_TO_REFERENCE(g_fast.dx, g_ref.dx);
      CHECK_CLOSE_TO_REFERENCE(g_fast.da, g_ref.da);
      CHECK(g_fast.dh0.defined() == s.h0);
      if (s.h0) {
        CHECK_CLOSE_TO_CPU(g_fast.dh0, want.dh0);
        CHECK_CLOSE_TO_REFERENCE(g_fast.dh0, g_ref.dh0);
      }
      auto again = backward(KernelChoice::fast);
      CHECK(bitwise_equal(g_fast.dx, again.dx));
      CHECK(bitwise_equal(g_fast.da, again.da));
      if (s.h0) CHECK(bitwise_equal(g_fast.dh0, again.dh0));
    }
  }
}

TEST_CASE("cuda: scan takes the chunked path only where it pays") {
  CHECK_FALSE(cuda::scan_fast_applies(2, 15, 5));        // T too short for two chunks of 8
  CHECK_FALSE(cuda::scan_fast_applies(64, 1000, 4096));  // B * C large: one pass is better
  CHECK(cuda::scan_fast_applies(8, 2048, 2048));
}

// ---- rms_norm ----

TEST_CASE("cuda: fast rms_norm forward and backward match the CPU and the reference kernel") {
  // C: 1; odd; under, at and over a warp's 128 vectors; wide rows, vectorisable or not.
  for (DType dtype : kFloating) {
    for (int64_t C : {1, 7, 33, 64, 1000, 1024, 4096, 4097}) {
      for (bool affine : {false, true}) {
        for (bool aligned : {true, false}) {
          const uint64_t seed = fresh_seed();
          CAPTURE(seed);
          CAPTURE(dtype_name(dtype));
          CAPTURE(C);
          CAPTURE(affine);
          CAPTURE(aligned);
          // Many short rows: more rows than warps and blocks (the grid-stride row loops).
          const int64_t N = C <= 64 ? 2500 : 37;
          Tensor x = random_cpu({N, C}, dtype, seed, -2, 3);
          Tensor w = affine ? random_cpu({C}, dtype, seed + 1, 0.5, 1.5) : Tensor();
          Tensor dy = random_cpu({N, C}, dtype, seed + 2);
          auto gpu = [&](const Tensor& t) { return aligned ? to_gpu(t) : unaligned_gpu(t); };

          auto want = core::rms_norm(x, w, 1e-5);
          auto forward = [&](KernelChoice choice) {
            KernelChoiceGuard guard(choice);
            return core::rms_norm(gpu(x), gpu_or_undefined(w), 1e-5);
          };
          auto fast = forward(KernelChoice::fast);
          auto ref = forward(KernelChoice::reference);
          CHECK_CLOSE_TO_CPU(fast.y, want.y);
          CHECK_CLOSE_TO_CPU(fast.rstd, want.rstd);
          CHECK_CLOSE_TO_REFERENCE(fast.y, ref.y);
          CHECK_CLOSE_TO_REFERENCE(fast.rstd, ref.rstd);
          CHECK(bitwise_equal(fast.y, forward(KernelChoice::fast).y));

          auto grads_want = core::rms_norm_backward(x, w, want.rstd, dy);
          auto backward = [&](KernelChoice choice) {
            KernelChoiceGuard guard(choice);
            return core::rms_norm_backward(gpu(x), gpu_or_undefined(w), to_gpu(want.rstd), gpu(dy));
          };
          auto g_fast = backward(KernelChoice::fast);
          auto g_ref = backward(KernelChoice::reference);
          if (C == 1) {
            // dx = r g eps / (x^2 + eps): two nearly equal terms cancel; measured against the
            // size of the terms, r |g| <= max(rstd) * 1.5.
            const std::vector<double> r = want.rstd.to_vector<double>();
            const double scale = 1.5 * *std::max_element(r.begin(), r.end());
            CHECK_CLOSE_TO_CPU_AT_SCALE(g_fast.dx, grads_want.dx, scale);
            CHECK(cuda_test::scaled_error(g_fast.dx, g_ref.dx, scale) <= fast_kernel_bound(dtype));
          } else {
            CHECK_CLOSE_TO_CPU(g_fast.dx, grads_want.dx);
            CHECK_CLOSE_TO_REFERENCE(g_fast.dx, g_ref.dx);
          }
          CHECK(g_fast.dweight.defined() == affine);
          if (affine) {
            CHECK_CLOSE_TO_CPU(g_fast.dweight, grads_want.dweight);
            CHECK_CLOSE_TO_REFERENCE(g_fast.dweight, g_ref.dweight);
          }
          auto again = backward(KernelChoice::fast);
          CHECK(bitwise_equal(g_fast.dx, again.dx));
          if (affine) CHECK(bitwise_equal(g_fast.dweight, again.dweight));
        }
      }
    }
  }
}

// ---- cross_entropy ----

namespace {

// N class ids in [0, C); rows 1, 5, 9, ... are ignore_index.
Tensor targets_with_ignored(int64_t N, int64_t C, uint64_t seed, int64_t ignore_index) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> t(size_t(N), 0);
  for (int64_t n = 0; n < N; ++n) {
    t[size_t(n)] = n % 4 == 1 ? ignore_index : int64_t(rng() % uint64_t(C));
  }
  if (N > 2) t[2] = C - 1;  // row 2's first half is -inf (logits_with_inf), its target not
  return from_vector(t, {N});
}

// Uniform logits in [-8, 8), with row 2's first half -inf (masked classes): the online max
// starts from -inf there and must not turn -inf - (-inf) into NaN.
Tensor logits_with_inf(int64_t N, int64_t C, DType dtype, uint64_t seed) {
  std::vector<double> v = random_cpu({N, C}, DType::f64, seed, -8, 8).to_vector<double>();
  if (N > 2) {
    for (int64_t c = 0; c < C / 2; ++c)
      v[size_t(2 * C + c)] = -std::numeric_limits<double>::infinity();
  }
  return from_vector(v, {N, C}, {dtype});
}

}  // namespace

TEST_CASE("cuda: fast cross_entropy forward and backward match the CPU and the reference") {
  for (DType dtype : kFloating) {
    for (int64_t C : {1, 7, 33, 1000, 32000, 50257}) {
      for (double smoothing : {0.0, 0.1}) {
        for (bool aligned : {true, false}) {
          const uint64_t seed = fresh_seed();
          CAPTURE(seed);
          CAPTURE(dtype_name(dtype));
          CAPTURE(C);
          CAPTURE(smoothing);
          CAPTURE(aligned);
          const int64_t N = C >= 32000 ? 6 : 37;
          // With label smoothing the loss averages every logit, so a -inf logit makes it
          // inf: the -inf row is tested without smoothing only.
          Tensor logits = smoothing == 0.0 ? logits_with_inf(N, C, dtype, seed)
                                           : random_cpu({N, C}, dtype, seed, -8, 8);
          Tensor target = targets_with_ignored(N, C, seed + 1, -100);
          Tensor dloss = random_cpu({N}, dtype, seed + 2);
          auto gpu = [&](const Tensor& t) { return aligned ? to_gpu(t) : unaligned_gpu(t); };

          auto want = core::cross_entropy(logits, target, -100, smoothing);
          auto forward = [&](KernelChoice choice) {
            KernelChoiceGuard guard(choice);
            return core::cross_entropy(gpu(logits), to_gpu(target), -100, smoothing);
          };
          auto fast = forward(KernelChoice::fast);
          auto ref = forward(KernelChoice::reference);
          if (C == 1) {
            // The loss lse - z_t is 0 in exact arithmetic: rounding noise on both sides,
            // measured against the size of the terms (logits up to 8).
            CHECK_CLOSE_TO_CPU_AT_SCALE(fast.loss, want.loss, 8.0);
          } else {
            CHECK_CLOSE_TO_CPU(fast.loss, want.loss);
            CHECK_CLOSE_TO_REFERENCE(fast.loss, ref.loss);
          }
          CHECK_CLOSE_TO_CPU(fast.lse, want.lse);
          CHECK_CLOSE_TO_REFERENCE(fast.lse, ref.lse);
          auto again = forward(KernelChoice::fast);
          CHECK(bitwise_equal(fast.loss, again.loss));
          CHECK(bitwise_equal(fast.lse, again.lse));

          Tensor dwant =
              core::cross_entropy_backward(logits, target, want.lse, dloss, -100, smoothing);
          auto backward = [&](KernelChoice choice) {
            KernelChoiceGuard guard(choice);
            return core::cross_entropy_backward(gpu(logits), to_gpu(target), to_gpu(want.lse),
                                                to_gpu(dloss), -100, smoothing);
          };
          Tensor dfast = backward(KernelChoice::fast);
          Tensor dref = backward(KernelChoice::reference);
          if (C == 1) {
            CHECK_CLOSE_TO_CPU_AT_SCALE(dfast, dwant, 1.0);
          } else {
            CHECK_CLOSE_TO_CPU(dfast, dwant);
            CHECK_CLOSE_TO_REFERENCE(dfast, dref);
          }
          CHECK(bitwise_equal(dfast, backward(KernelChoice::fast)));
          // The ignored row's gradient is exactly 0.
          const std::vector<double> row1 = core::select(dfast, 0, 1).to_vector<double>();
          CHECK(row1 == std::vector<double>(size_t(C), 0.0));
        }
      }
    }
  }
}

TEST_CASE("cuda: fast cross_entropy gives NaN for an out-of-range target, as the reference") {
  KernelChoiceGuard guard(KernelChoice::fast);
  Tensor logits = to_gpu(random_cpu({3, 40}, DType::f32, fresh_seed()));
  Tensor target = to_gpu(from_vector(std::vector<int64_t>{0, 40, -100}, {3}));
  auto out = core::cross_entropy(logits, target, -100, 0.0);
  const std::vector<double> loss = out.loss.to_vector<double>();
  CHECK(std::isfinite(loss[0]));
  CHECK(std::isnan(loss[1]));
  CHECK(loss[2] == 0.0);
}

}  // namespace mnemo
