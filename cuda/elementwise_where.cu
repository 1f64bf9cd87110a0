// where on the CUDA backend: out[i] = cond[i] ? a[i] : b[i], with cond (bool), a and b
// broadcast views of out's shape (any strides, stride 0 on broadcast dims).
//
// A grid-stride loop with one thread per output element (for_each_offset in
// cuda/kernel_common.cuh): OffsetCalc turns the output's linear index into one element offset
// per operand. Reference: core/cpu/elementwise.cpp; contract: core/backend_ops.def.
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

// The typed body (a __device__ lambda may not sit inside visit_dtype's generic lambda).
template <typename T>
void where_typed(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  // bool is one byte holding 0 or 1; read as bytes and test != 0 like the CPU.
  const uint8_t* c = static_cast<const uint8_t*>(cond.data_ptr());
  const T* as = data<T>(a);
  const T* bs = data<T>(b);
  T* o = data<T>(out);
  for_each_offset<4>(out.device(), out.shape(), {&cond, &a, &b, &out},
                     [=] __device__(const int64_t(&off)[4]) {
                       o[off[3]] = c[off[0]] != 0 ? as[off[1]] : bs[off[2]];
                     });
}

}  // namespace

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  MNEMO_ASSERT(cond.dtype() == DType::boolean, "where: condition must be bool, got {}",
               dtype_name(cond.dtype()));
  MNEMO_ASSERT(a.dtype() == out.dtype() && b.dtype() == out.dtype(),
               "where: a ({}) and b ({}) must have the output's dtype {}", dtype_name(a.dtype()),
               dtype_name(b.dtype()), dtype_name(out.dtype()));
  if (out.numel() == 0) return;
  cuda::visit_dtype(out.dtype(), "where",
                    [&](auto tag) { where_typed<typename decltype(tag)::type>(cond, a, b, out); });
}

}  // namespace mnemo::cuda
