// arg_reduce on the GPU: argmax / argmin along one dim. Reference: core/cpu/arg_reduce.cpp;
// contract: core/backend_ops.def.
//
// One result per line along dim (cuda/reduce_lines.cuh). Thread per line when adjacent lines
// are adjacent in memory (argmax over dim 0); otherwise block per line, the threads striding
// through the line and a shared-memory tree combining (value, index) pairs. The first NaN
// wins; among equal values the lowest index wins.
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cstdint>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/reduce_lines.cuh"

namespace mnemo::cuda {

namespace {

// Whether v at a later index replaces best: the first NaN wins for good; otherwise strictly
// better, so the first index wins ties.
template <bool kMax, typename C>
__device__ __forceinline__ bool improves(C v, C best) {
  const bool better = kMax ? v > best : v < best;
  return !is_nan_value(best) && (is_nan_value(v) || better);
}

// Two partial results combined: NaN beats numbers, then the better value, then the lower index.
template <bool kMax, typename C>
__device__ __forceinline__ bool beats(C v, int64_t i, C best, int64_t best_i) {
  if (is_nan_value(v) != is_nan_value(best)) return is_nan_value(v);
  if (!is_nan_value(v) && v != best) return kMax ? v > best : v < best;
  return i < best_i;
}

// Thread per line: a sequential scan along the line.
template <bool kMax, typename T>
__global__ void arg_reduce_thread_kernel(const T* x, int64_t* out, Lines<2> lines) {
  using C = Compute<T>;
  const int64_t sd = lines.dim_stride[0];
  for (int64_t l = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; l < lines.count;
       l += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    lines.calc.get(l, off);
    const T* p = x + off[0];
    C best = load(p);
    int64_t arg = 0;
    for (int64_t t = 1; t < lines.length; ++t) {
      const C v = load(p + t * sd);
      if (improves<kMax>(v, best)) best = v, arg = t;
    }
    out[off[1]] = arg;
  }
}

// Block per line: thread j scans elements j, j + 256, ...; a tree combines the 256 results
// (index -1 marks a thread that saw no element).
template <bool kMax, typename T>
__global__ void arg_reduce_block_kernel(const T* x, int64_t* out, Lines<2> lines) {
  using C = Compute<T>;
  __shared__ C best_shared[kThreads];
  __shared__ int64_t arg_shared[kThreads];
  const int64_t sd = lines.dim_stride[0];
  const int tid = int(threadIdx.x);
  for (int64_t l = blockIdx.x; l < lines.count; l += gridDim.x) {
    int64_t off[2];
    lines.calc.get(l, off);
    const T* p = x + off[0];
    C best = C(0);
    int64_t arg = -1;
    for (int64_t t = tid; t < lines.length; t += blockDim.x) {
      const C v = load(p + t * sd);
      if (arg < 0 || improves<kMax>(v, best)) best = v, arg = t;
    }
    best_shared[tid] = best;
    arg_shared[tid] = arg;
    __syncthreads();
    for (int width = kThreads / 2; width >= 1; width /= 2) {
      if (tid < width) {
        const int64_t other = arg_shared[tid + width];
        if (other >= 0 && (arg_shared[tid] < 0 || beats<kMax>(best_shared[tid + width], other,
                                                              best_shared[tid], arg_shared[tid]))) {
          best_shared[tid] = best_shared[tid + width];
          arg_shared[tid] = other;
        }
      }
      __syncthreads();
    }
    if (tid == 0) out[off[1]] = arg_shared[0];
    __syncthreads();
  }
}

template <bool kMax, typename T>
void arg_reduce_typed(const Tensor& x, int64_t dim, const Tensor& out) {
  const Lines<2> lines = make_lines<2>(x.shape(), dim, {&x, &out}, {x.strides(), out.strides()});
  const Device device = x.device();
  if (lines.length <= 32 || lines.thread_per_line_coalesced()) {
    arg_reduce_thread_kernel<kMax, T>
        <<<grid_for(lines.count, device.index), kThreads, 0, stream(device)>>>(
            data<T>(x), data<int64_t>(out), lines);
    MNEMO_CUDA_CHECK_LAUNCH("arg_reduce_thread_kernel");
  } else {
    arg_reduce_block_kernel<kMax, T>
        <<<blocks_for(lines.count, device.index), kThreads, 0, stream(device)>>>(
            data<T>(x), data<int64_t>(out), lines);
    MNEMO_CUDA_CHECK_LAUNCH("arg_reduce_block_kernel");
  }
}

}  // namespace

static_assert(size_t(ArgReduceOp::count) == 2, "argmax or else argmin: a third needs a branch");
void arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) {
  if (out.numel() == 0) return;
  MNEMO_ASSERT(x.shape()[size_t(dim)] > 0, "{}: dim {} is empty", op_name(op), dim);
  visit_dtype(x.dtype(), "arg_reduce", [&](auto tag) {
    visit_bool(op == ArgReduceOp::argmax, [&](auto max_tag) {
      arg_reduce_typed<decltype(max_tag)::value, typename decltype(tag)::type>(x, dim, out);
    });
  });
}

}  // namespace mnemo::cuda
