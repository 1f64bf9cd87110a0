// What every kernel file of the CUDA backend shares: the element types behind each DType,
// dispatch from a runtime DType to a template, grid sizing, and a strided elementwise loop.
//
//   DType    storage type     compute type (Compute<T>)
//   f32      float            float
//   f64      double           double
//   bf16     __nv_bfloat16    float     (converted on load, rounded to nearest even on store)
//   f16      __half           float
//   i32      int32_t          int64_t
//   i64      int64_t          int64_t
//   bool     bool             int64_t   (stored as one byte holding 0 or 1, like the CPU)
//
//   visit_dtype(x.dtype(), "op", [&](auto tag) {
//     using T = typename decltype(tag)::type;      // the storage type
//     my_kernel<T><<<grid, block, 0, stream(x.device())>>>(...);
//   });
//
// for_each_offset launches a grid-stride loop over numel elements of N strided operands and
// calls f(offsets) on the device with each operand's element offset (cuda/offset_calc.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "core/tensor.h"
#include "cuda/context.h"
#include "cuda/offset_calc.h"

namespace mnemo::cuda {

template <typename T>
struct TypeTag {
  using type = T;
};

// The arithmetic type a storage type is computed in.
template <typename T>
struct ComputeOf {
  using type = T;
};
template <>
struct ComputeOf<__nv_bfloat16> {
  using type = float;
};
template <>
struct ComputeOf<__half> {
  using type = float;
};
template <>
struct ComputeOf<int32_t> {
  using type = int64_t;
};
template <>
struct ComputeOf<bool> {
  using type = int64_t;
};
template <typename T>
using Compute = typename ComputeOf<T>::type;

template <typename T>
inline constexpr bool kIsHalfType =
    std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;
template <typename T>
inline constexpr bool kIsFloating = std::is_floating_point_v<T> || kIsHalfType<T>;

// ---- math in the compute type's precision, by overload: exp_of(float) is expf, exp_of(double)
// is exp (a call with the wrong one would silently round through double or float) ----
__device__ __forceinline__ float exp_of(float x) {
  return expf(x);
}
__device__ __forceinline__ double exp_of(double x) {
  return exp(x);
}
__device__ __forceinline__ float log_of(float x) {
  return logf(x);
}
__device__ __forceinline__ double log_of(double x) {
  return log(x);
}
__device__ __forceinline__ float log1p_of(float x) {
  return log1pf(x);
}
__device__ __forceinline__ double log1p_of(double x) {
  return log1p(x);
}
__device__ __forceinline__ float sqrt_of(float x) {
  return sqrtf(x);
}
__device__ __forceinline__ double sqrt_of(double x) {
  return sqrt(x);
}
__device__ __forceinline__ float tanh_of(float x) {
  return tanhf(x);
}
__device__ __forceinline__ double tanh_of(double x) {
  return tanh(x);
}
__device__ __forceinline__ float erf_of(float x) {
  return erff(x);
}
__device__ __forceinline__ double erf_of(double x) {
  return erf(x);
}
__device__ __forceinline__ float erfc_of(float x) {
  return erfcf(x);
}
__device__ __forceinline__ double erfc_of(double x) {
  return erfc(x);
}
__device__ __forceinline__ float abs_of(float x) {
  return fabsf(x);
}
__device__ __forceinline__ double abs_of(double x) {
  return fabs(x);
}
__device__ __forceinline__ float pow_of(float x, float y) {
  return powf(x, y);
}
__device__ __forceinline__ double pow_of(double x, double y) {
  return pow(x, y);
}

// Converts between any two element types the way the CPU backend does: bf16/f16 go through
// f32 (round to nearest even), floating to integer truncates, anything to bool is != 0.
template <typename To, typename From>
__host__ __device__ __forceinline__ To convert(From value) {
  if constexpr (std::is_same_v<To, From>) {
    return value;
  } else if constexpr (kIsHalfType<From>) {
    return convert<To>(static_cast<float>(value));
  } else if constexpr (std::is_same_v<To, bool>) {
    return value != From(0);
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(value));
  } else if constexpr (std::is_same_v<To, __half>) {
    return __float2half_rn(static_cast<float>(value));
  } else {
    return static_cast<To>(value);
  }
}

template <typename T>
__host__ __device__ __forceinline__ Compute<T> load(const T* p) {
  return convert<Compute<T>>(*p);
}

namespace detail {

template <typename Fn>
decltype(auto) visit_dtype(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(TypeTag<float>{});
    case DType::f64: return fn(TypeTag<double>{});
    case DType::bf16: return fn(TypeTag<__nv_bfloat16>{});
    case DType::f16: return fn(TypeTag<__half>{});
    case DType::i32: return fn(TypeTag<int32_t>{});
    case DType::i64: return fn(TypeTag<int64_t>{});
    case DType::boolean: return fn(TypeTag<bool>{});
  }
  fail_internal("{}: unknown dtype on the cuda backend", op);
}

template <typename Fn>
decltype(auto) visit_floating(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(TypeTag<float>{});
    case DType::f64: return fn(TypeTag<double>{});
    case DType::bf16: return fn(TypeTag<__nv_bfloat16>{});
    case DType::f16: return fn(TypeTag<__half>{});
    default: break;
  }
  fail_internal("{}: dtype {} is not supported on the cuda backend (floating dtypes only)", op,
                dtype_name(dtype));
}

}  // namespace detail

// Calls fn(TypeTag<T>{}) with T the storage type of dtype (visit_floating: f32, f64, bf16,
// f16 only; other dtypes throw naming op).
//
// Two things the callers must know:
//   - core/dtype.h has CPU versions, mnemo::visit_dtype(DType, std::string_view, Fn), that
//     argument-dependent lookup also finds. Call these as cuda::visit_dtype(...) (qualified:
//     no ADL), or unqualified with a string literal (the const char* overload is the exact
//     match and wins).
//   - nvcc cannot define an extended __device__ lambda inside a generic lambda, so fn should
//     call a function template that launches the kernel:
//       template <typename T> void fill_typed(const Tensor& t, double v) { ...launch... }
//       cuda::visit_dtype(t.dtype(), "fill",
//                         [&](auto tag) { fill_typed<typename decltype(tag)::type>(t, v); });
template <typename Fn>
decltype(auto) visit_dtype(DType dtype, const char* op, Fn&& fn) {
  return detail::visit_dtype(dtype, op, std::forward<Fn>(fn));
}
template <typename Fn>
decltype(auto) visit_dtype(DType dtype, std::string_view op, Fn&& fn) {
  return detail::visit_dtype(dtype, op, std::forward<Fn>(fn));
}
template <typename Fn>
decltype(auto) visit_floating(DType dtype, const char* op, Fn&& fn) {
  return detail::visit_floating(dtype, op, std::forward<Fn>(fn));
}
template <typename Fn>
decltype(auto) visit_floating(DType dtype, std::string_view op, Fn&& fn) {
  return detail::visit_floating(dtype, op, std::forward<Fn>(fn));
}

template <typename T>
T* data(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

inline constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill the GPU a few times over.
inline unsigned grid_for(int64_t n, int device, int threads = kThreads) {
  const int64_t needed = (n + threads - 1) / threads;
  const int64_t cap = int64_t(multiprocessor_count(device)) * 8;
  return unsigned(std::max<int64_t>(1, std::min(needed, cap)));
}

template <int N, typename F>
__global__ void for_each_offset_kernel(int64_t n, OffsetCalc<N> calc, F f) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[N];
    calc.get(i, offsets);
    f(offsets);
  }
}

// f: a __device__ lambda taking const int64_t (&offsets)[N]. Runs on shape's elements.
template <int N, typename F>
void for_each_offset(Device device, const Shape& shape, const std::array<const Tensor*, N>& ts,
                     F f) {
  const int64_t n = numel(shape);
  if (n == 0) return;
  const OffsetCalc<N> calc = make_offset_calc<N>(shape, ts);
  for_each_offset_kernel<N><<<grid_for(n, device.index), kThreads, 0, stream(device)>>>(
      n, calc, f);
  MNEMO_CUDA_CHECK_LAUNCH("for_each_offset_kernel");
}

}  // namespace mnemo::cuda
