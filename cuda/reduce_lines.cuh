// Helpers shared by the reduction, cumsum, top-k and indexing kernels (cuda/reduce.cu,
// arg_reduce.cu, cumsum.cu, topk.cu, index.cu): views that re-describe a tensor's memory with
// another shape, the "lines" of a tensor along one dim, scratch memory for CUB, and NaN tests that
// compile for every element type.
//
// A line is the 1-d slice x[i0, .., :, .., ik] along `dim` through one position of the OTHER
// dims. Lines are numbered row-major over the other dims; LineCalc<N> maps a line number to
// the offset of its first element in each of N operands (all operands share the other dims'
// sizes). Element t of line l of operand k is then at offsets[k] + t * dim_stride[k].
//
// Internal to cuda/.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

#include "core/tensor.h"
#include "cuda/kernel_common.cuh"

namespace mnemo::cuda {

// x's memory seen with another shape and strides (same storage, offset and dtype).
inline Tensor view_with(const Tensor& x, const Shape& shape, const Strides& strides) {
  return Tensor::view_of(x.storage(), shape, strides, x.offset(), x.dtype());
}

// Scratch memory of at least `bytes` bytes on device (8-byte aligned), from the caching
// allocator; keep the returned tensor alive until the work using it has been queued.
inline Tensor scratch_bytes(int64_t bytes, Device device) {
  return Tensor::empty({std::max<int64_t>(1, (bytes + 7) / 8)}, DType::i64, device);
}

template <int N>
struct Lines {
  OffsetCalc<N> calc;  // line number -> first element's offset in each operand
  std::array<int64_t, N> dim_stride{};
  int64_t length = 0;  // elements per line (the dim's size in `shape`)
  int64_t count = 0;   // number of lines
  // Distance between adjacent lines in operand 0 (along the innermost merged other dim), and
  // how many lines are adjacent that way: when it is smaller than dim_stride[0], a thread per
  // line reads memory coalesced (adjacent threads, adjacent addresses).
  int64_t inner_stride = 0;
  int64_t inner_count = 1;

  bool thread_per_line_coalesced() const {
    const int64_t ds = dim_stride[0] < 0 ? -dim_stride[0] : dim_stride[0];
    const int64_t is = inner_stride < 0 ? -inner_stride : inner_stride;
    return inner_count > 1 && is < ds;
  }
};

// The lines along dim of shape for N operands: operand k has strides *strides[k] (rank of
// shape) and its memory starts at bases[k]->data_ptr() (offsets are relative to that).
template <int N>
Lines<N> make_lines(const Shape& shape, int64_t dim, const std::array<const Tensor*, N>& operands,
                    const std::array<Strides, N>& strides) {
  Shape other_shape;
  std::array<Strides, N> other_strides;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d == dim) continue;
    other_shape.push_back(shape[size_t(d)]);
    for (int k = 0; k < N; ++k) other_strides[size_t(k)].push_back(strides[size_t(k)][size_t(d)]);
  }
  std::array<Tensor, N> views;
  std::array<const Tensor*, N> ptrs;
  for (int k = 0; k < N; ++k) {
    views[size_t(k)] = view_with(*operands[size_t(k)], other_shape, other_strides[size_t(k)]);
    ptrs[size_t(k)] = &views[size_t(k)];
  }
  Lines<N> lines;
  lines.calc = make_offset_calc<N>(other_shape, ptrs);
  for (int k = 0; k < N; ++k) lines.dim_stride[size_t(k)] = strides[size_t(k)][size_t(dim)];
  lines.length = shape[size_t(dim)];
  lines.count = numel(other_shape);
  lines.inner_stride = lines.calc.strides[0][0];
  lines.inner_count = lines.calc.sizes[0];
  return lines;
}

// NaN test for any compute type (always false for integers).
template <typename A>
__host__ __device__ __forceinline__ bool is_nan_value(A v) {
  if constexpr (std::is_floating_point_v<A>) {
    return v != v;
  } else {
    return false;
  }
}

// Blocks for a loop over `units` pieces of work, one block each (grid-stride beyond the cap).
inline unsigned blocks_for(int64_t units, int device) {
  const int64_t cap = int64_t(multiprocessor_count(device)) * 16;
  return unsigned(std::max<int64_t>(1, std::min(units, cap)));
}

}  // namespace mnemo::cuda
