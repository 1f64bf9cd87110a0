// unary on the CUDA backend: out = f(x) for every UnaryOp, x any strides, out contiguous.
//
// One kernel per (input storage type, output storage type) pair: the output type is the
// input's, or bool for logical_not. Each thread of a grid-stride loop takes one element
// (for_each_offset), loads it in the compute type C (f32 for bf16/f16, i64 for the integer
// types), applies the op chosen by a switch on the runtime op (the same for every thread, so
// the branch does not diverge) and rounds on store. The formulas are the CPU backend's
// (core/cpu/elementwise.cpp), written once on a generic C with the single/double precision
// CUDA math functions picked by overload:
//   sigmoid   x >= 0 ? 1 / (1 + e^-x) : e^x / (1 + e^x)
//   softplus  x > 0 ? x + log1p(e^-x) : log1p(e^x)
//   gelu      0.5 x erfc(-x / sqrt 2)            (= 0.5 x (1 + erf(x / sqrt 2)) without the
//             cancellation of 1 + erf for x << 0)
//   gelu_tanh x / (1 + e^(-2u)), u = sqrt(2/pi)(x + 0.044715 x^3)
//             (= 0.5 x (1 + tanh u), again without the cancellation)
//   clamp     x < lo ? lo : (x > hi ? hi : x)   (NaN passes through)
//
// Integer dtypes support the ops core allows on them (neg, abs, relu, sign, logical_not,
// affine, clamp); alpha/beta are truncated to integers like the CPU's C(alpha), and clamp's
// bounds saturate to the dtype's range so -inf/+inf mean "no bound". Integer negation and
// affine wrap modulo 2^64 (computed unsigned: no signed-overflow UB).
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"

namespace mnemo::cuda {

namespace {

template <typename C>
__device__ __forceinline__ C sigmoid(C x) {
  return x >= C(0) ? C(1) / (C(1) + exp_of(-x)) : exp_of(x) / (C(1) + exp_of(x));
}

static_assert(size_t(UnaryOp::count) == 19, "a new unary op needs a case here");
// The op on a floating compute type C (float or double).
template <typename C>
__device__ __forceinline__ C unary_floating(UnaryOp op, C x, C alpha, C beta, bool square) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return exp_of(x);
    case UnaryOp::log: return log_of(x);
    case UnaryOp::sqrt: return sqrt_of(x);
    case UnaryOp::rsqrt: return C(1) / sqrt_of(x);
    case UnaryOp::abs: return abs_of(x);
    case UnaryOp::tanh: return tanh_of(x);
    case UnaryOp::sigmoid: return sigmoid(x);
    case UnaryOp::relu: return x > C(0) ? x : C(0);
    case UnaryOp::gelu: return C(0.5) * x * erfc_of(-x * C(0.70710678118654752440));
    case UnaryOp::gelu_tanh: {
      const C k = C(0.79788456080286535588);  // sqrt(2/pi)
      return x / (C(1) + exp_of(C(-2) * k * (x + C(0.044715) * x * x * x)));
    }
    case UnaryOp::silu: return x * sigmoid(x);
    case UnaryOp::softplus: return x > C(0) ? x + log1p_of(exp_of(-x)) : log1p_of(exp_of(x));
    case UnaryOp::erf: return erf_of(x);
    case UnaryOp::sign: return C((x > C(0)) - (x < C(0)));
    case UnaryOp::logical_not: return C(x == C(0));
    case UnaryOp::affine: return alpha * x + beta;
    case UnaryOp::pow_scalar: return square ? x * x : pow_of(x, alpha);
    case UnaryOp::clamp: return x < alpha ? alpha : (x > beta ? beta : x);
    default: return x;  // unreachable: the host rejects other ops
  }
}

// The op on the integer compute type (i64): the ops core allows on integer tensors.
__device__ __forceinline__ int64_t unary_integer(UnaryOp op, int64_t x, int64_t alpha,
                                                 int64_t beta) {
  const uint64_t ux = uint64_t(x);
  switch (op) {
    case UnaryOp::neg: return int64_t(uint64_t(0) - ux);
    case UnaryOp::abs: return x < 0 ? int64_t(uint64_t(0) - ux) : x;
    case UnaryOp::relu: return x > 0 ? x : 0;
    case UnaryOp::sign: return int64_t((x > 0) - (x < 0));
    case UnaryOp::logical_not: return int64_t(x == 0);
    case UnaryOp::affine: return int64_t(uint64_t(alpha) * ux + uint64_t(beta));
    case UnaryOp::clamp: return x < alpha ? alpha : (x > beta ? beta : x);
    default: return x;  // unreachable: the host rejects other ops
  }
}

// v truncated toward zero and saturated to [lo, hi] (NaN -> 0): an integer bound or
// coefficient without undefined conversions (-inf / +inf clamp bounds become lo / hi).
int64_t saturate(double v, int64_t lo, int64_t hi) {
  if (std::isnan(v)) return 0;
  if (v <= double(lo)) return lo;
  if (v >= double(hi)) return hi;  // double(INT64_MAX) is 2^63: anything there saturates
  return int64_t(v);
}

template <typename T, typename O>
void launch_unary(UnaryOp op, const UnaryParams& params, const Tensor& x, const Tensor& out) {
  using C = Compute<T>;
  const T* xs = data<T>(x);
  O* os = data<O>(out);
  if constexpr (std::is_floating_point_v<C>) {
    const C alpha = C(params.alpha), beta = C(params.beta);
    const bool square = op == UnaryOp::pow_scalar && params.alpha == 2;
    for_each_offset<2>(out.device(), out.shape(), {&x, &out},
                       [=] __device__(const int64_t(&off)[2]) {
                         const C v = unary_floating<C>(op, load(xs + off[0]), alpha, beta, square);
                         os[off[1]] = convert<O>(v);
                       });
  } else {
    MNEMO_ASSERT(accepts_integers(op), "{}: expected a floating tensor, got {}", op_name(op),
                 dtype_name(x.dtype()));
    // The dtype's range bounds the clamp (bool: [0, 1]); affine's coefficients are truncated.
    int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
    if constexpr (std::is_same_v<T, int32_t>) {
      lo = std::numeric_limits<int32_t>::min();
      hi = std::numeric_limits<int32_t>::max();
    } else if constexpr (std::is_same_v<T, bool>) {
      lo = 0;
      hi = 1;
    }
    int64_t alpha = 0, beta = 0;
    if (op == UnaryOp::clamp) {
      alpha = saturate(params.alpha, lo, hi);
      beta = saturate(params.beta, lo, hi);
    } else if (op == UnaryOp::affine) {
      alpha = saturate(params.alpha, std::numeric_limits<int64_t>::min(),
                       std::numeric_limits<int64_t>::max());
      beta = saturate(params.beta, std::numeric_limits<int64_t>::min(),
                      std::numeric_limits<int64_t>::max());
    }
    for_each_offset<2>(out.device(), out.shape(), {&x, &out},
                       [=] __device__(const int64_t(&off)[2]) {
                         const int64_t v = unary_integer(op, load(xs + off[0]), alpha, beta);
                         os[off[1]] = convert<O>(v);
                       });
  }
}

}  // namespace

void unary(UnaryOp op, const UnaryParams& params, const Tensor& x, const Tensor& out) {
  MNEMO_ASSERT(x.shape() == out.shape(), "{}: input {} and output {} shapes differ", op_name(op),
               shape_str(x.shape()), shape_str(out.shape()));
  MNEMO_ASSERT(op < UnaryOp::count, "unary: invalid op {}", int(op));
  const DType want = op == UnaryOp::logical_not ? DType::boolean : x.dtype();
  MNEMO_ASSERT(out.dtype() == want, "{}: expected a {} output, got {}", op_name(op),
               dtype_name(want), dtype_name(out.dtype()));
  if (out.numel() == 0) return;
  cuda::visit_dtype(x.dtype(), "unary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (op == UnaryOp::logical_not) {
      launch_unary<T, bool>(op, params, x, out);
    } else {
      launch_unary<T, T>(op, params, x, out);
    }
  });
}

}  // namespace mnemo::cuda
