// What the row-wise neural-network kernels (softmax.cu, cross_entropy*.cu, norm*.cu, scan*.cu)
// share: a deterministic block reduction, the block size and grid for "one block per row"
// kernels, contiguous inputs and outputs.
//
// ---- block_reduce: a fixed-shape reduction tree ----
// Every thread first folds its own elements (c = threadIdx.x, + blockDim.x, ...) in order, then
//   1. each warp folds its 32 values with a butterfly (__shfl_xor_sync, offsets 16, 8, 4, 2, 1);
//   2. lane 0 of each warp writes its warp's value to shared memory;
//   3. every thread folds the warps' values in warp order, so all threads return the same value.
// The tree depends only on blockDim.x (a multiple of 32), never on timing, so a result is
// bitwise reproducible run to run. No atomics anywhere.
//
// Internal to cuda/.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>

#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"

namespace mnemo::cuda {

inline constexpr int kWarp = 32;
inline constexpr int kMaxRowThreads = 1024;

struct SumOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a + b;
  }
};

// max that ignores NaN (fmax): a row holding a NaN still comes out NaN through its exp-sum.
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
  __device__ __forceinline__ double operator()(double a, double b) const { return fmax(a, b); }
};

// Reduces one value per thread over the whole block; every thread gets the result.
// scratch: shared memory of at least blockDim.x / 32 elements. Must be reached by every
// thread of the block (it synchronises). blockDim.x must be a multiple of 32.
template <typename A, typename Op>
__device__ __forceinline__ A block_reduce(A value, Op op, A* scratch) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  const int lane = int(threadIdx.x) % kWarp, warp = int(threadIdx.x) / kWarp;
  const int warps = int(blockDim.x) / kWarp;
  __syncthreads();  // an earlier block_reduce may still be reading scratch
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  A result = scratch[0];
  for (int w = 1; w < warps; ++w) result = op(result, scratch[w]);
  return result;
}

// Threads per block for one block per row of D elements: the smallest power of two >= D / 4
// (so each thread folds about 4 or more elements), between 32 and 1024. Depends on D alone.
inline int row_threads(int64_t D) {
  int threads = kWarp;
  while (threads < kMaxRowThreads && int64_t(threads) * 4 < D) threads *= 2;
  return threads;
}

// Blocks for a grid-stride loop over rows (one block per row, a block takes several rows when
// there are more rows than this).
inline unsigned row_blocks(int64_t rows, int device) {
  const int64_t cap = int64_t(multiprocessor_count(device)) * 32;
  return unsigned(std::max<int64_t>(1, std::min(rows, cap)));
}

// t itself when contiguous (or undefined), else a contiguous copy on the same device. The
// op layer already passes contiguous tensors to the fused ops; this keeps the kernels'
// indexing right if a caller ever does not.
inline Tensor contiguous_on_device(const Tensor& t) {
  if (!t.defined() || t.is_contiguous()) return t;
  Tensor c = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_on_device(t, c);
  return c;
}

// A typed pointer to t's first element, or nullptr for an undefined tensor.
template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

template <typename A>
__device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}
template <typename A>
__device__ __forceinline__ A nan_value() {
  return std::numeric_limits<A>::quiet_NaN();
}

// The backend contract (core/backend_ops.def): outputs arrive contiguous, and the row kernels
// index them densely. A broken contract is mnemo's bug, not the caller's.
inline void assert_contiguous_output(const Tensor& out, std::string_view op) {
  MNEMO_ASSERT(out.is_contiguous(), "{}: the output must be contiguous (core/backend_ops.def)", op);
}

}  // namespace mnemo::cuda
