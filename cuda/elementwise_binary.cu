// binary on the CUDA backend: out = a OP b for every BinaryOp.
//
// a, b: same dtype, broadcast views of out's shape (stride 0 where they broadcast); out
// contiguous, of a's dtype (arithmetic) or bool (comparisons, logical ops); out may alias a
// (in-place ops): each element is read and written by the same thread, read first.
//
// Two kernels per input storage type T (for_each_offset: one thread per output element of a
// grid-stride loop, the op picked by a switch on the runtime op, uniform across threads):
//   arithmetic (add .. minimum): computed in C = Compute<T> (f32 for bf16/f16, i64 for the
//     integer types), stored as T;
//   predicate (comparisons, logical_and/or): computed in C, stored as bool.
// Semantics follow the CPU backend (core/cpu/elementwise.cpp):
//   maximum/minimum propagate NaN (a > b || a != a ? a : b);
//   integer division truncates and x / 0 == 0; integer add/sub/mul wrap (computed unsigned,
//   so there is no signed-overflow UB; i32 results wrap mod 2^32 when stored, as on the CPU);
//   integer pow goes through f64 pow and truncates.
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"

namespace mnemo::cuda {

namespace {

static_assert(size_t(BinaryOp::count) == 15, "a new binary op needs a case here");
template <typename C>
__device__ __forceinline__ C arithmetic(BinaryOp op, C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case BinaryOp::add: return a + b;
      case BinaryOp::sub: return a - b;
      case BinaryOp::mul: return a * b;
      case BinaryOp::div: return a / b;
      case BinaryOp::pow: return pow_of(a, b);
      case BinaryOp::maximum: return a > b || a != a ? a : b;
      case BinaryOp::minimum: return a < b || a != a ? a : b;
      default: return a;  // unreachable: the host routes other ops to the predicate kernel
    }
  } else {  // int64_t
    const uint64_t ua = uint64_t(a), ub = uint64_t(b);
    switch (op) {
      case BinaryOp::add: return C(ua + ub);
      case BinaryOp::sub: return C(ua - ub);
      case BinaryOp::mul: return C(ua * ub);
      case BinaryOp::div:
        if (b == 0) return C(0);
        if (b == -1) return C(uint64_t(0) - ua);  // INT64_MIN / -1 wraps instead of trapping
        return a / b;
      case BinaryOp::pow: {
        const double p = pow(double(a), double(b));
        // Out-of-range results saturate (the cvt instruction's behaviour, made explicit).
        if (!(p == p)) return C(0);
        if (p >= 9223372036854775807.0) return C(INT64_MAX);
        if (p <= -9223372036854775808.0) return C(INT64_MIN);
        return C(p);
      }
      case BinaryOp::maximum: return a > b ? a : b;
      case BinaryOp::minimum: return a < b ? a : b;
      default: return a;
    }
  }
}

template <typename C>
__device__ __forceinline__ bool predicate(BinaryOp op, C a, C b) {
  switch (op) {
    case BinaryOp::eq: return a == b;
    case BinaryOp::ne: return a != b;
    case BinaryOp::lt: return a < b;
    case BinaryOp::le: return a <= b;
    case BinaryOp::gt: return a > b;
    case BinaryOp::ge: return a >= b;
    case BinaryOp::logical_and: return a != C(0) && b != C(0);
    case BinaryOp::logical_or: return a != C(0) || b != C(0);
    default: return false;  // unreachable: the host routes other ops to the arithmetic kernel
  }
}

template <typename T>
void launch_binary(BinaryOp op, bool to_bool, const Tensor& a, const Tensor& b, const Tensor& out) {
  using C = Compute<T>;
  const T* as = data<T>(a);
  const T* bs = data<T>(b);
  if (to_bool) {
    bool* os = data<bool>(out);
    for_each_offset<3>(out.device(), out.shape(), {&a, &b, &out},
                       [=] __device__(const int64_t(&off)[3]) {
                         os[off[2]] = predicate<C>(op, load(as + off[0]), load(bs + off[1]));
                       });
  } else {
    T* os = data<T>(out);
    for_each_offset<3>(out.device(), out.shape(), {&a, &b, &out},
                       [=] __device__(const int64_t(&off)[3]) {
                         const C v = arithmetic<C>(op, load(as + off[0]), load(bs + off[1]));
                         os[off[2]] = convert<T>(v);
                       });
  }
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  MNEMO_ASSERT(op < BinaryOp::count, "binary: invalid op {}", int(op));
  MNEMO_ASSERT(a.shape() == out.shape() && b.shape() == out.shape(),
               "{}: operands {} and {} must be broadcast to the output's shape {}", op_name(op),
               shape_str(a.shape()), shape_str(b.shape()), shape_str(out.shape()));
  MNEMO_ASSERT(a.dtype() == b.dtype(), "{}: operands of dtypes {} and {}", op_name(op),
               dtype_name(a.dtype()), dtype_name(b.dtype()));
  const bool to_bool = is_comparison(op) || is_logical(op);
  const DType want = to_bool ? DType::boolean : a.dtype();
  MNEMO_ASSERT(out.dtype() == want, "{}: expected a {} output, got {}", op_name(op),
               dtype_name(want), dtype_name(out.dtype()));
  if (out.numel() == 0) return;
  cuda::visit_dtype(a.dtype(), "binary", [&](auto tag) {
    launch_binary<typename decltype(tag)::type>(op, to_bool, a, b, out);
  });
}

}  // namespace mnemo::cuda
