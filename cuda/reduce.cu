// Reductions on the GPU: sum / max / min over any set of dims. Reference:
// core/cpu/reduce.cpp; contract: core/backend_ops.def.
//
// x's dims split into kept dims (one output each, row-major like the contiguous out) and
// reduced dims; OffsetCalc maps an output number o to the offset of its first element and a
// reduced position r (row-major over the reduced dims) to its offset from there. R reduced
// positions are cut into fixed chunks; each (output, chunk) is folded, and when there is
// more than one chunk the partial results (chunks, outputs) are folded in chunk order by a
// second kernel. Two mappings, chosen from x's memory layout:
// - block per (output, chunk) (reduce_block_kernel): the reduced elements are closest in
//   memory (a sum over the last dim). The block's threads stride through the chunk, then a
//   fixed shared-memory tree combines the 256 thread results.
// - thread per (output, chunk) (reduce_thread_kernel): adjacent outputs are adjacent in
//   memory (the bias gradient: a sum over dim 0 of (N, C)). Each thread folds its chunk in
//   order; adjacent threads read adjacent addresses.
// Chunk sizes depend on the shape only, so results are bitwise repeatable. Sums accumulate
// in f64 for f32/f64, in f32 for bf16/f16 and in i64 for integers; max and min fold in the
// compute type, and NaN wins (as on the CPU).
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/reduce_lines.cuh"

namespace mnemo::cuda {

namespace {

// ---- folds --------------------------------------------------------------------------------

template <typename A>
__host__ __device__ __forceinline__ A lowest_value() {
  if constexpr (std::is_floating_point_v<A>) {
    return A(-INFINITY);
  } else {
    return A(-9223372036854775807LL - 1);
  }
}
template <typename A>
__host__ __device__ __forceinline__ A highest_value() {
  if constexpr (std::is_floating_point_v<A>) {
    return A(INFINITY);
  } else {
    return A(9223372036854775807LL);
  }
}

template <typename A>
struct SumFold {
  using Acc = A;
  __device__ static A identity() { return A(0); }
  __device__ static A step(A acc, A v) { return acc + v; }
};
template <typename A>
struct MaxFold {
  using Acc = A;
  __device__ static A identity() { return lowest_value<A>(); }
  __device__ static A step(A acc, A v) { return v > acc || is_nan_value(v) ? v : acc; }
};
template <typename A>
struct MinFold {
  using Acc = A;
  __device__ static A identity() { return highest_value<A>(); }
  __device__ static A step(A acc, A v) { return v < acc || is_nan_value(v) ? v : acc; }
};

// The accumulator of a sum over storage type T.
template <typename T>
using SumAcc =
    std::conditional_t<kIsHalfType<T>, float, std::conditional_t<kIsFloating<T>, double, int64_t>>;

template <typename A>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<A, float>) return DType::f32;
  if constexpr (std::is_same_v<A, double>) return DType::f64;
  return DType::i64;
}

// ---- reduce -------------------------------------------------------------------------------

constexpr int64_t kBlockChunk = 8192;  // reduced positions per block (few outputs)
constexpr int64_t kThreadChunk = 128;  // reduced positions per thread (few outputs)

struct ReducePlan {
  OffsetCalc<1> kept;  // output o -> offset of its first element in x
  OffsetCalc<1> red;   // reduced position r -> offset from the output's first element
  int64_t outputs = 0;
  int64_t red_numel = 0;
  int64_t chunk = 0;  // reduced positions per chunk
  int64_t chunks = 1;
  bool block_mode = true;
};

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims) {
  Shape kept_shape, red_shape;
  Strides kept_strides, red_strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    (reduced ? red_shape : kept_shape).push_back(x.shape()[size_t(d)]);
    (reduced ? red_strides : kept_strides).push_back(x.strides()[size_t(d)]);
  }
  const Tensor kept_view = view_with(x, kept_shape, kept_strides);
  const Tensor red_view = view_with(x, red_shape, red_strides);
  ReducePlan plan;
  plan.kept = make_offset_calc<1>(kept_shape, {&kept_view});
  plan.red = make_offset_calc<1>(red_shape, {&red_view});
  plan.outputs = numel(kept_shape);
  plan.red_numel = numel(red_shape);
  // Thread per output when adjacent outputs are closer in memory than adjacent reduced
  // elements (OffsetCalc lists the innermost merged dim first), or when each output folds so
  // few elements that most of a block would idle.
  const int64_t kept_inner = plan.kept.strides[0][0], red_inner = plan.red.strides[0][0];
  const bool outputs_adjacent =
      plan.kept.sizes[0] > 1 && std::abs(kept_inner) < std::abs(red_inner);
  plan.block_mode = !outputs_adjacent && plan.red_numel > 32;
  const bool split = plan.block_mode ? plan.outputs < 512 : plan.outputs < 16384;
  const int64_t chunk = plan.block_mode ? kBlockChunk : kThreadChunk;
  plan.chunk = split ? std::min(chunk, plan.red_numel) : plan.red_numel;
  plan.chunks = (plan.red_numel + plan.chunk - 1) / plan.chunk;
  return plan;
}

// Block per unit u = o * chunks + c. If chunks == 1 writes out[o], else partial[c * outputs + o].
template <typename Fold, typename T>
__global__ void reduce_block_kernel(const T* x, T* out, typename Fold::Acc* partial,
                                    ReducePlan plan) {
  using A = typename Fold::Acc;
  __shared__ A shared[kThreads];
  const int64_t units = plan.outputs * plan.chunks;
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const int64_t o = u / plan.chunks, c = u % plan.chunks;
    int64_t base[1];
    plan.kept.get(o, base);
    const int64_t begin = c * plan.chunk;
    const int64_t end = begin + plan.chunk < plan.red_numel ? begin + plan.chunk : plan.red_numel;
    A acc = Fold::identity();
    for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
      int64_t off[1];
      plan.red.get(r, off);
      acc = Fold::step(acc, A(load(x + base[0] + off[0])));
    }
    shared[threadIdx.x] = acc;
    __syncthreads();
    for (int width = kThreads / 2; width >= 1; width /= 2) {
      if (int(threadIdx.x) < width) {
        shared[threadIdx.x] = Fold::step(shared[threadIdx.x], shared[threadIdx.x + width]);
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      if (plan.chunks == 1) {
        out[o] = convert<T>(shared[0]);
      } else {
        partial[c * plan.outputs + o] = shared[0];
      }
    }
    __syncthreads();  // shared[0] is read before the next unit overwrites shared
  }
}

// Thread per unit u = c * outputs + o (adjacent threads, adjacent outputs).
template <typename Fold, typename T>
__global__ void reduce_thread_kernel(const T* x, T* out, typename Fold::Acc* partial,
                                     ReducePlan plan) {
  using A = typename Fold::Acc;
  const int64_t units = plan.outputs * plan.chunks;
  for (int64_t u = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = u / plan.outputs, o = u % plan.outputs;
    int64_t base[1];
    plan.kept.get(o, base);
    const int64_t begin = c * plan.chunk;
    const int64_t end = begin + plan.chunk < plan.red_numel ? begin + plan.chunk : plan.red_numel;
    A acc = Fold::identity();
    for (int64_t r = begin; r < end; ++r) {
      int64_t off[1];
      plan.red.get(r, off);
      acc = Fold::step(acc, A(load(x + base[0] + off[0])));
    }
    if (plan.chunks == 1) {
      out[o] = convert<T>(acc);
    } else {
      partial[u] = acc;
    }
  }
}

// out[o] = fold over c of partial[c * outputs + o], in chunk order.
template <typename Fold, typename T>
__global__ void reduce_finish_kernel(const typename Fold::Acc* partial, T* out, int64_t outputs,
                                     int64_t chunks) {
  using A = typename Fold::Acc;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < outputs;
       o += int64_t(gridDim.x) * blockDim.x) {
    A acc = Fold::identity();
    for (int64_t c = 0; c < chunks; ++c) acc = Fold::step(acc, partial[c * outputs + o]);
    out[o] = convert<T>(acc);
  }
}

template <typename Fold, typename T>
void reduce_typed(const ReducePlan& plan, const Tensor& x, const Tensor& out) {
  using A = typename Fold::Acc;
  const Device device = x.device();
  const cudaStream_t s = stream(device);
  Tensor partial;
  A* partial_data = nullptr;
  if (plan.chunks > 1) {
    partial = Tensor::empty({plan.chunks, plan.outputs}, dtype_of<A>(), device);
    partial_data = data<A>(partial);
  }
  const int64_t units = plan.outputs * plan.chunks;
  if (plan.block_mode) {
    reduce_block_kernel<Fold, T><<<blocks_for(units, device.index), kThreads, 0, s>>>(
        data<T>(x), data<T>(out), partial_data, plan);
    MNEMO_CUDA_CHECK_LAUNCH("reduce_block_kernel");
  } else {
    reduce_thread_kernel<Fold, T><<<grid_for(units, device.index), kThreads, 0, s>>>(
        data<T>(x), data<T>(out), partial_data, plan);
    MNEMO_CUDA_CHECK_LAUNCH("reduce_thread_kernel");
  }
  if (plan.chunks > 1) {
    reduce_finish_kernel<Fold, T><<<grid_for(plan.outputs, device.index), kThreads, 0, s>>>(
        partial_data, data<T>(out), plan.outputs, plan.chunks);
    MNEMO_CUDA_CHECK_LAUNCH("reduce_finish_kernel");
  }
}

}  // namespace

static_assert(size_t(ReduceOp::count) == 3, "a new reduction needs a case here");
void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, const Tensor& out) {
  if (x.numel() == 0 || out.numel() == 0) return;
  const ReducePlan plan = plan_reduce(x, dims);
  visit_dtype(x.dtype(), "reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = Compute<T>;
    switch (op) {
      case ReduceOp::sum: return reduce_typed<SumFold<SumAcc<T>>, T>(plan, x, out);
      case ReduceOp::max: return reduce_typed<MaxFold<C>, T>(plan, x, out);
      case ReduceOp::min: return reduce_typed<MinFold<C>, T>(plan, x, out);
      case ReduceOp::count: break;
    }
    fail_internal("reduce: invalid op {}", int(op));
  });
}

}  // namespace mnemo::cuda
