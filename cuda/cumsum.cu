// cumsum on the GPU: out[..., t, ...] = sum over s <= t (s >= t if reverse) of x[..., s, ...]
// along dim. Reference: core/cpu/cumsum.cpp; contract: core/backend_ops.def.
//
// Work is split into lines along dim (cuda/reduce_lines.cuh); x and out may be strided.
// Accumulation is in f64 for floating dtypes and i64 for integers, like the CPU.
//   - cumsum_thread_kernel: thread per line, a sequential scan in line order (exactly the
//     CPU's additions). Used when adjacent lines are adjacent in memory (a cumsum along dim 0
//     of (N, C): coalesced) or when lines are short.
//   - cumsum_block_kernel: block per line, for long lines that a single thread would walk
//     slowly (a cumsum over a vocabulary). The line is cut into tiles of 256 elements; in each
//     tile cub::BlockScan forms the inclusive prefix sums of the 256 values (a fixed tree),
//     and a carry (the sum of the tiles before) is added. Every thread holds the same carry,
//     so the result is deterministic.
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/reduce_lines.cuh"

namespace mnemo::cuda {

namespace {

template <typename T>
using CumsumAcc = std::conditional_t<kIsFloating<T>, double, int64_t>;

// Position along the line of step t of the scan.
__device__ __forceinline__ int64_t scan_position(int64_t t, int64_t length, bool reverse) {
  return reverse ? length - 1 - t : t;
}

// calc offsets: [0] x, [1] out.
template <typename T>
__global__ void cumsum_thread_kernel(const T* x, T* out, Lines<2> lines, bool reverse) {
  using A = CumsumAcc<T>;
  const int64_t sx = lines.dim_stride[0], so = lines.dim_stride[1];
  for (int64_t l = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; l < lines.count;
       l += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    lines.calc.get(l, off);
    A acc = A(0);
    for (int64_t t = 0; t < lines.length; ++t) {
      const int64_t p = scan_position(t, lines.length, reverse);
      acc += A(load(x + off[0] + p * sx));
      out[off[1] + p * so] = convert<T>(acc);
    }
  }
}

template <typename T>
__global__ void cumsum_block_kernel(const T* x, T* out, Lines<2> lines, bool reverse) {
  using A = CumsumAcc<T>;
  using BlockScan = cub::BlockScan<A, kThreads>;
  __shared__ typename BlockScan::TempStorage temp;
  const int64_t sx = lines.dim_stride[0], so = lines.dim_stride[1];
  for (int64_t l = blockIdx.x; l < lines.count; l += gridDim.x) {
    int64_t off[2];
    lines.calc.get(l, off);
    A carry = A(0);  // the sum of the tiles before this one
    for (int64_t base = 0; base < lines.length; base += kThreads) {
      const int64_t t = base + threadIdx.x;
      const int64_t p = scan_position(t, lines.length, reverse);
      const A v = t < lines.length ? A(load(x + off[0] + p * sx)) : A(0);
      A inclusive, tile_total;
      BlockScan(temp).InclusiveSum(v, inclusive, tile_total);
      if (t < lines.length) out[off[1] + p * so] = convert<T>(carry + inclusive);
      carry += tile_total;
      __syncthreads();  // temp is reused by the next tile
    }
  }
}

template <typename T>
void cumsum_typed(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) {
  const Lines<2> lines = make_lines<2>(x.shape(), dim, {&x, &out}, {x.strides(), out.strides()});
  if (lines.count == 0 || lines.length == 0) return;
  const Device device = x.device();
  const bool thread_per_line =
      lines.length <= 64 || (lines.thread_per_line_coalesced() && lines.count >= 1024);
  if (thread_per_line) {
    cumsum_thread_kernel<T><<<grid_for(lines.count, device.index), kThreads, 0, stream(device)>>>(
        data<T>(x), data<T>(out), lines, reverse);
    MNEMO_CUDA_CHECK_LAUNCH("cumsum_thread_kernel");
  } else {
    cumsum_block_kernel<T><<<blocks_for(lines.count, device.index), kThreads, 0, stream(device)>>>(
        data<T>(x), data<T>(out), lines, reverse);
    MNEMO_CUDA_CHECK_LAUNCH("cumsum_block_kernel");
  }
}

}  // namespace

void cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) {
  if (out.numel() == 0) return;
  visit_dtype(x.dtype(), "cumsum",
              [&](auto tag) { cumsum_typed<typename decltype(tag)::type>(x, dim, reverse, out); });
}

}  // namespace mnemo::cuda
