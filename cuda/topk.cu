// topk on the GPU: the k largest (or smallest) entries of each line along dim, sorted, with
// their i64 indices. Reference: core/cpu/topk.cpp; contract: core/backend_ops.def.
//
// The CPU's order: NaN counts as larger than every number (first when largest, last when
// smallest), then by value, then ties by the lower index; -0 and +0 are equal. Here:
//   1. topk_keys_kernel (thread per element): element t of line l gets a 64-bit unsigned key
//      whose ascending order is that order (order_key below), stored at l * length + t with
//      payload t.
//   2. cub::DeviceSegmentedSort::StableSortPairs sorts each line's (key, t) pairs; stability
//      keeps equal keys in increasing t, which is the lower-index-first tie rule.
//   3. topk_write_kernel (thread per output element): the first k of each sorted line; values
//      are re-read from x at the sorted index, so they are exactly x's values.
// The whole line is sorted (O(length log length) per line, 32 bytes of scratch per element);
// a selection for small k is a later optimisation.
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cub/device/device_segmented_sort.cuh>

#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/reduce_lines.cuh"

namespace mnemo::cuda {

namespace {

using Key = unsigned long long;

// A key whose unsigned order is the order of the numbers: larger values, larger keys.
__device__ __forceinline__ Key monotone_key(double v) {
  if (v == 0) v = 0.0;  // -0 and +0 tie
  const Key bits = static_cast<Key>(__double_as_longlong(v));
  return (bits >> 63) ? ~bits : bits | (Key(1) << 63);
}
__device__ __forceinline__ Key monotone_key(int64_t v) {
  return static_cast<Key>(v) ^ (Key(1) << 63);
}

// Ascending key order = topk order. Non-NaN floating keys lie strictly between 0 and ~0
// (-inf maps to 0x000F.., +inf to 0xFFF0..), so the NaN keys 0 / ~0 never tie with a number.
template <bool kLargest, typename C>
__device__ __forceinline__ Key order_key(C v) {
  if constexpr (std::is_floating_point_v<C>) {
    if (v != v) return kLargest ? Key(0) : ~Key(0);
    const Key k = monotone_key(double(v));
    return kLargest ? ~k : k;
  } else {
    const Key k = monotone_key(int64_t(v));
    return kLargest ? ~k : k;
  }
}

// calc offsets: [0] x, [1] values/indices (same contiguous shape).
template <bool kLargest, typename T>
__global__ void topk_keys_kernel(const T* x, Lines<2> lines, Key* keys, int64_t* positions) {
  const int64_t n = lines.count * lines.length;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t l = i / lines.length, t = i % lines.length;
    int64_t off[2];
    lines.calc.get(l, off);
    keys[i] = order_key<kLargest>(load(x + off[0] + t * lines.dim_stride[0]));
    positions[i] = t;
  }
}

// offsets[l] = l * length for l in [0, lines]: segment l is [offsets[l], offsets[l + 1]).
__global__ void segment_offsets_kernel(int64_t* offsets, int64_t lines, int64_t length) {
  for (int64_t l = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; l <= lines;
       l += int64_t(gridDim.x) * blockDim.x) {
    offsets[l] = l * length;
  }
}

template <typename T>
__global__ void topk_write_kernel(const T* x, const int64_t* sorted_positions, Lines<2> lines,
                                  int64_t k, T* values, int64_t* indices) {
  const int64_t n = lines.count * k;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t l = i / k, j = i % k;
    int64_t off[2];
    lines.calc.get(l, off);
    const int64_t t = sorted_positions[l * lines.length + j];
    values[off[1] + j * lines.dim_stride[1]] = x[off[0] + t * lines.dim_stride[0]];
    indices[off[1] + j * lines.dim_stride[1]] = t;
  }
}

template <bool kLargest, typename T>
void topk_typed(const Tensor& x, int64_t k, int64_t dim, const Tensor& values,
                const Tensor& indices) {
  // Lines over x's shape; values has k (not length) at dim, but the same other dims.
  const Lines<2> lines =
      make_lines<2>(x.shape(), dim, {&x, &values}, {x.strides(), values.strides()});
  if (lines.count == 0 || k == 0) return;
  const Device device = x.device();
  const cudaStream_t s = stream(device);
  const int64_t n = lines.count * lines.length;
  Tensor keys_in = Tensor::empty({n}, DType::i64, device);
  Tensor keys = Tensor::empty({n}, DType::i64, device);
  Tensor pos_in = Tensor::empty({n}, DType::i64, device);
  Tensor pos = Tensor::empty({n}, DType::i64, device);
  Tensor offsets = Tensor::empty({lines.count + 1}, DType::i64, device);
  topk_keys_kernel<kLargest, T><<<grid_for(n, device.index), kThreads, 0, s>>>(
      data<T>(x), lines, data<Key>(keys_in), data<int64_t>(pos_in));
  MNEMO_CUDA_CHECK_LAUNCH("topk_keys_kernel");
  segment_offsets_kernel<<<grid_for(lines.count + 1, device.index), kThreads, 0, s>>>(
      data<int64_t>(offsets), lines.count, lines.length);
  MNEMO_CUDA_CHECK_LAUNCH("segment_offsets_kernel");
  const int64_t* begins = data<int64_t>(offsets);
  const int64_t* ends = begins + 1;
  size_t temp_bytes = 0;
  MNEMO_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(
      nullptr, temp_bytes, data<Key>(keys_in), data<Key>(keys), data<int64_t>(pos_in),
      data<int64_t>(pos), n, lines.count, begins, ends, s));
  Tensor temp = scratch_bytes(int64_t(temp_bytes), device);
  MNEMO_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(
      temp.data_ptr(), temp_bytes, data<Key>(keys_in), data<Key>(keys), data<int64_t>(pos_in),
      data<int64_t>(pos), n, lines.count, begins, ends, s));
  topk_write_kernel<T><<<grid_for(lines.count * k, device.index), kThreads, 0, s>>>(
      data<T>(x), data<int64_t>(pos), lines, k, data<T>(values), data<int64_t>(indices));
  MNEMO_CUDA_CHECK_LAUNCH("topk_write_kernel");
}

}  // namespace

void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
          const Tensor& indices) {
  if (values.numel() == 0) return;
  visit_dtype(x.dtype(), "topk", [&](auto tag) {
    visit_bool(largest, [&](auto largest_tag) {
      topk_typed<decltype(largest_tag)::value, typename decltype(tag)::type>(x, k, dim, values,
                                                                             indices);
    });
  });
}

}  // namespace mnemo::cuda
