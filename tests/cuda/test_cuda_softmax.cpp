// softmax, log_softmax and fused cross_entropy on the GPU against the CPU backend: every
// floating dtype, rows from 1 to 50257 classes, the softmax dim first/middle/last, strided
// inputs, large and -inf logits, ignore_index rows, an all-ignored batch, label smoothing, and
// bitwise-equal repeats of the backward ops (the kernels reduce with fixed trees, no atomics).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

// N class ids in [0, C), every `ignore_every`-th (if > 0) replaced by ignore_index.
Tensor random_targets(int64_t N, int64_t C, uint64_t seed, int64_t ignore_every,
                      int64_t ignore_index) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> t(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    t[size_t(n)] =
        ignore_every > 0 && n % ignore_every == 1 ? ignore_index : int64_t(rng() % uint64_t(C));
  }
  return from_vector(t, {N});
}

}  // namespace

TEST_CASE("cuda: softmax and log_softmax along the last dim match the CPU") {
  for (DType dtype : kFloating) {
    for (int64_t C : {1, 7, 33, 1000, 50257}) {
      for (bool log : {false, true}) {
        for (bool strided : {false, true}) {
          const uint64_t seed = fresh_seed();
          CAPTURE(seed);
          CAPTURE(dtype_name(dtype));
          CAPTURE(C);
          CAPTURE(log);
          CAPTURE(strided);
          // 5000 rows of 7: more rows than blocks, so blocks take several rows each.
          const int64_t rows = C > 1000 ? 3 : C == 7 ? 5000 : 37;
          Tensor x = random_cpu({rows, C}, dtype, seed, -8, 8);
          Tensor xg = strided ? strided_copy(to_gpu(x)) : to_gpu(x);
          Tensor got = log ? core::log_softmax(xg, -1) : core::softmax(xg, -1);
          CHECK_CLOSE_TO_CPU(got, log ? core::log_softmax(x, -1) : core::softmax(x, -1));
        }
      }
    }
  }
}

TEST_CASE("cuda: softmax along a first or middle dim matches the CPU") {
  for (DType dtype : kFloating) {
    for (int64_t dim : {0, 1}) {
      for (bool log : {false, true}) {
        const uint64_t seed = fresh_seed();
        CAPTURE(seed);
        CAPTURE(dtype_name(dtype));
        CAPTURE(dim);
        CAPTURE(log);
        Tensor x = random_cpu({7, 33, 5}, dtype, seed, -5, 5);
        Tensor xg = strided_copy(to_gpu(x));
        Tensor got = log ? core::log_softmax(xg, dim) : core::softmax(xg, dim);
        CHECK_CLOSE_TO_CPU(got, log ? core::log_softmax(x, dim) : core::softmax(x, dim));
      }
    }
  }
}

TEST_CASE("cuda: softmax of large, -inf and all -inf rows matches the CPU") {
  const double inf = std::numeric_limits<double>::infinity();
  // Row 0: large logits (exp would overflow without the max subtracted); row 1: some masked
  // entries; row 2: all masked (NaN on both backends).
  Tensor x = from_vector(std::vector<double>{1000, 1001, 999, 1002, 998,  //
                                             0.5, -inf, 2, -inf, -1,      //
                                             -inf, -inf, -inf, -inf, -inf},
                         {3, 5});
  for (bool log : {false, true}) {
    CAPTURE(log);
    Tensor got = log ? core::log_softmax(to_gpu(x), -1) : core::softmax(to_gpu(x), -1);
    Tensor want = log ? core::log_softmax(x, -1) : core::softmax(x, -1);
    CHECK_CLOSE_TO_CPU(got, want);
    const std::vector<double> g = got.to_vector<double>();
    CHECK(std::isfinite(g[0]));
    if (!log) CHECK(g[6] == 0.0);  // exp(-inf) is exactly 0
  }
}

TEST_CASE("cuda: softmax_backward and log_softmax_backward match the CPU, bitwise repeatable") {
  for (DType dtype : kFloating) {
    for (int64_t dim : {-1, 0}) {
      for (int64_t C : {1, 7, 1000}) {
        for (bool log : {false, true}) {
          const uint64_t seed = fresh_seed();
          CAPTURE(seed);
          CAPTURE(dtype_name(dtype));
          CAPTURE(dim);
          CAPTURE(C);
          CAPTURE(log);
          Tensor x = random_cpu({9, C}, dtype, seed, -4, 4);
          Tensor y = log ? core::log_softmax(x, dim) : core::softmax(x, dim);
          Tensor dy = random_cpu({9, C}, dtype, seed + 1);
          auto backward = [&](const Tensor& yy, const Tensor& dd) {
            return log ? core::log_softmax_backward(yy, dd, dim)
                       : core::softmax_backward(yy, dd, dim);
          };
          Tensor got = backward(to_gpu(y), strided_copy(to_gpu(dy)));
          CHECK_CLOSE_TO_CPU(got, backward(y, dy));
          CHECK(bitwise_equal(got, backward(to_gpu(y), to_gpu(dy))));
        }
      }
    }
  }
}

TEST_CASE("cuda: cross_entropy forward and backward match the CPU") {
  for (DType dtype : kFloating) {
    for (int64_t C : {1, 7, 33, 1000, 50257}) {
      for (double smoothing : {0.0, 0.1}) {
        const uint64_t seed = fresh_seed();
        CAPTURE(seed);
        CAPTURE(dtype_name(dtype));
        CAPTURE(C);
        CAPTURE(smoothing);
        const int64_t N = C > 1000 ? 6 : 41;
        Tensor logits = random_cpu({N, C}, dtype, seed, -6, 6);
        Tensor target = random_targets(N, C, seed + 1, 4, -100);  // rows 1, 5, 9, ... ignored
        Tensor dloss = random_cpu({N}, dtype, seed + 2);
        auto want = core::cross_entropy(logits, target, -100, smoothing);
        auto got =
            core::cross_entropy(strided_copy(to_gpu(logits)), to_gpu(target), -100, smoothing);
        // With one class the loss lse - x_t is 0 in exact arithmetic and the gradient
        // softmax - target is too: both sides hold rounding noise, measured against the size
        // of the terms (logits up to 6, |dloss| up to 1).
        if (C == 1) {
          CHECK_CLOSE_TO_CPU_AT_SCALE(got.loss, want.loss, 6.0);
        } else {
          CHECK_CLOSE_TO_CPU(got.loss, want.loss);
        }
        CHECK_CLOSE_TO_CPU(got.lse, want.lse);
        CHECK(got.loss.to_vector<double>()[1] == 0.0);  // an ignored row

        Tensor dwant =
            core::cross_entropy_backward(logits, target, want.lse, dloss, -100, smoothing);
        Tensor dgot = core::cross_entropy_backward(to_gpu(logits), to_gpu(target), to_gpu(want.lse),
                                                   to_gpu(dloss), -100, smoothing);
        if (C == 1) {
          CHECK_CLOSE_TO_CPU_AT_SCALE(dgot, dwant, 1.0);
        } else {
          CHECK_CLOSE_TO_CPU(dgot, dwant);
        }
        Tensor again = core::cross_entropy_backward(
            to_gpu(logits), to_gpu(target), to_gpu(want.lse), to_gpu(dloss), -100, smoothing);
        CHECK(bitwise_equal(dgot, again));
        // The ignored row's gradient is exactly 0.
        const std::vector<double> row1 = core::select(dgot, 0, 1).to_vector<double>();
        CHECK(row1 == std::vector<double>(size_t(C), 0.0));
      }
    }
  }
}

TEST_CASE("cuda: cross_entropy with i32 targets and a custom ignore_index matches the CPU") {
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Tensor logits = random_cpu({19, 257}, DType::f32, seed, -3, 3);
  Tensor target = core::to(random_targets(19, 257, seed + 1, 3, 5), DType::i32);
  auto want = core::cross_entropy(logits, target, 5, 0.2);
  auto got = core::cross_entropy(to_gpu(logits), to_gpu(target), 5, 0.2);
  CHECK_CLOSE_TO_CPU(got.loss, want.loss);
  CHECK_CLOSE_TO_CPU(got.lse, want.lse);
  Tensor dloss = random_cpu({19}, DType::f32, seed + 2);
  CHECK_CLOSE_TO_CPU(core::cross_entropy_backward(to_gpu(logits), to_gpu(target), to_gpu(want.lse),
                                                  to_gpu(dloss), 5, 0.2),
                     core::cross_entropy_backward(logits, target, want.lse, dloss, 5, 0.2));
}

TEST_CASE("cuda: cross_entropy of an all-ignored batch is 0 with 0 gradient") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    const int64_t N = 8, C = 33;
    Tensor logits = random_cpu({N, C}, dtype, seed);
    Tensor target = full({N}, -100, {DType::i64});
    auto want = core::cross_entropy(logits, target);
    auto got = core::cross_entropy(to_gpu(logits), to_gpu(target));
    CHECK(got.loss.to_vector<double>() == std::vector<double>(size_t(N), 0.0));
    CHECK_CLOSE_TO_CPU(got.lse, want.lse);
    Tensor dloss = ones({N}, {dtype});
    Tensor dgot =
        core::cross_entropy_backward(to_gpu(logits), to_gpu(target), got.lse, to_gpu(dloss));
    CHECK(dgot.to_vector<double>() == std::vector<double>(size_t(N * C), 0.0));
  }
}

}  // namespace mnemo
