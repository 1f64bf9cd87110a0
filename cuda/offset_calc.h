// OffsetCalc: where element i of a strided tensor lives, computed on the GPU.
//
// A kernel over N operands that share one logical shape (inputs broadcast to the output's
// shape carry stride 0) walks the output in row-major order, one linear index per thread.
// OffsetCalc turns that linear index into one element offset per operand:
//
//   i -> (i_0, ..., i_{r-1}) by repeated division by the sizes, innermost first;
//   offset[k] = sum_d i_d * strides[k][d].
//
// make_offset_calc first merges dims that are laid out contiguously for every operand and
// drops size-1 dims (core/cpu/strided.h's merge_dims), so a contiguous tensor is rank 1 and
// costs one division, and a transposed (B, T, H, D) view typically rank 2 or 3.
//
// This header is plain C++ (no CUDA header): host code builds the struct and passes it to a
// kernel by value.
#pragma once

#include <array>
#include <cstdint>

#include "core/tensor.h"

#ifdef __CUDACC__
#define MNEMO_HOST_DEVICE __host__ __device__
#else
#define MNEMO_HOST_DEVICE
#endif

namespace mnemo::cuda {

inline constexpr int kMaxDims = 12;  // after merging; more throws mnemo::Error

template <int N>
struct OffsetCalc {
  int rank = 1;
  int64_t sizes[kMaxDims] = {1};       // innermost first
  int64_t strides[N][kMaxDims] = {};   // in elements, innermost first

  MNEMO_HOST_DEVICE void get(int64_t linear, int64_t (&offsets)[N]) const {
    for (int k = 0; k < N; ++k) offsets[k] = 0;
#ifdef __CUDA_ARCH__  // device code only: the host compiler does not know the pragma
#pragma unroll 4
#endif
    for (int d = 0; d < rank; ++d) {
      const int64_t size = sizes[d];
      const int64_t index = linear % size;
      linear /= size;
      for (int k = 0; k < N; ++k) offsets[k] += index * strides[k][d];
    }
  }
};

// operands: tensors of `shape` (views already broadcast to it). Offsets are relative to each
// operand's data_ptr().
template <int N>
OffsetCalc<N> make_offset_calc(const Shape& shape, const std::array<const Tensor*, N>& operands);

}  // namespace mnemo::cuda
