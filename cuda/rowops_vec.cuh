// 16-byte vectors of elements for the fast row kernels (cuda/norm_fast.cu,
// cuda/cross_entropy_fast.cu): V elements of T loaded or stored with one 16-byte access.
//
// Internal to cuda/.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/kernel_common.cuh"

namespace mnemo::cuda {

// Elements per 16-byte access: f32 4, bf16/f16 8, f64 2.
template <typename T>
inline constexpr int kVec16 = int(16 / sizeof(T));

// V elements, aligned to their size (16 bytes for V = kVec16<T>, the element for V = 1).
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// The j-th vector of a row p (p aligned to sizeof(T) * V).
template <int V, typename T>
__device__ __forceinline__ Vec<T, V> load_vec(const T* p, int64_t j) {
  return reinterpret_cast<const Vec<T, V>*>(p)[j];
}
template <int V, typename T>
__device__ __forceinline__ void store_vec(T* p, int64_t j, const Vec<T, V>& value) {
  reinterpret_cast<Vec<T, V>*>(p)[j] = value;
}

// Whether p may be read or written as 16-byte vectors.
inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace mnemo::cuda
