// Helpers for testing a CUDA op against the CPU backend: fresh random inputs, strided views
// of them, and a normwise relative error.
//
//   const uint64_t seed = fresh_seed();  CAPTURE(seed);
//   Tensor x = random_cpu({33, 65}, DType::f32, seed);            // the CPU reference input
//   Tensor got = core::softmax(strided_copy(to_gpu(x)), -1, false);
//   CHECK_CLOSE_TO_CPU(got, core::softmax(x, -1, false));         // f32 < 1e-5, bf16 < 1e-2
//
// Inputs are drawn afresh on every run (fresh_seed), so a test covers new values each time;
// the seed is captured so a failure can be replayed (MNEMO_TEST_SEED=<seed>).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>

#include "core/tensor.h"

namespace mnemo::cuda_test {

inline const Device kGpu = Device::cuda(0);

// The dtypes an op is checked over: the floating ones, and those with the integers.
inline constexpr DType kFloating[] = {DType::f32, DType::f64, DType::bf16, DType::f16};
inline constexpr DType kAll[] = {DType::f32, DType::f64, DType::bf16,
                                 DType::f16, DType::i32, DType::i64};

// A random seed, or MNEMO_TEST_SEED from the environment when set.
uint64_t fresh_seed();

// Uniform values in [lo, hi) on the CPU (drawn in f64, then converted to dtype; integer
// dtypes get the truncated value).
Tensor random_cpu(const Shape& shape, DType dtype, uint64_t seed, double lo = -1, double hi = 1);

// random_cpu for any dtype: floats in [-1, 1), integers in [-40, 40) (wide enough to be
// interesting, narrow enough for ties).
Tensor random_cpu_any(const Shape& shape, DType dtype, uint64_t seed);

Tensor to_gpu(const Tensor& x);

// A non-contiguous tensor equal to x, on x's device: x's values stored with the last two dims
// swapped in memory (rank >= 2), or every other element of a buffer twice as long (rank 1).
Tensor strided_copy(const Tensor& x);

// max |got - want| / max(max |want|, 1e-30), both converted to f64 on the CPU; the shapes must
// match. +inf if either holds a NaN where the other does not.
double rel_error(const Tensor& got, const Tensor& want);

// max |got - want| / scale. For a result that is a small difference of large terms (a
// gradient that cancels, a loss that is exactly 0 in exact arithmetic), the error relative to
// the result itself measures only rounding noise; scale is then the size of the terms.
double scaled_error(const Tensor& got, const Tensor& want, double scale);

// The same shape, dtype and bytes (after copying both to the CPU): for "two runs give the
// same bits" checks.
bool bitwise_equal(const Tensor& a, const Tensor& b);

// t on the GPU, or undefined if t is (optional weights, biases, initial states).
Tensor gpu_or_undefined(const Tensor& t);

// The tolerance a dtype is held to: f64 1e-12, f32 1e-5, bf16/f16 1e-2, integers and bool 0.
double tolerance(DType dtype);

}  // namespace mnemo::cuda_test

// As CHECK_CLOSE_TO_CPU, with the error measured against `scale` (scaled_error).
#define CHECK_CLOSE_TO_CPU_AT_SCALE(got, want, scale)                             \
  do {                                                                            \
    const ::mnemo::Tensor got_ = (got);                                           \
    const ::mnemo::Tensor want_ = (want);                                         \
    REQUIRE(got_.shape() == want_.shape());                                       \
    CHECK(got_.dtype() == want_.dtype());                                         \
    const double error_ = ::mnemo::cuda_test::scaled_error(got_, want_, (scale)); \
    CAPTURE(error_);                                                              \
    CHECK(error_ <= ::mnemo::cuda_test::tolerance(want_.dtype()));                \
  } while (0)

// got: a GPU result; want: the CPU backend's. Checks shape, dtype and values.
#define CHECK_CLOSE_TO_CPU(got, want)                                 \
  do {                                                                \
    const ::mnemo::Tensor got_ = (got);                               \
    const ::mnemo::Tensor want_ = (want);                             \
    REQUIRE(got_.shape() == want_.shape());                           \
    CHECK(got_.dtype() == want_.dtype());                             \
    const double error_ = ::mnemo::cuda_test::rel_error(got_, want_); \
    CAPTURE(error_);                                                  \
    CHECK(error_ <= ::mnemo::cuda_test::tolerance(want_.dtype()));    \
  } while (0)
