// Softmax and log-softmax on the GPU, forward and backward.
//
// The math is core/cpu/softmax.cpp's (the reference these kernels are tested against):
//   softmax:      y_c = exp(x_c - m) / s,     m = max_j x_j,  s = sum_j exp(x_j - m)
//   log_softmax:  y_c = (x_c - m) - log s
//   backward:     softmax dx = y * (dy - sum(dy * y)),  log_softmax dx = dy - exp(y) * sum(dy)
// Subtracting the row max m keeps every exp <= 1, so nothing overflows for any input.
//
// Inputs are contiguous (the op layer's convention for fused ops); a dim splits x into
// (outer, D, inner).
//
// ---- Kernels ----
// *_rows_kernel (inner == 1, the usual case: the softmax dim is last): one block per row of D
//   elements (grid-stride over rows), row_threads(D) threads. Each thread folds the elements
//   c = threadIdx.x + k * blockDim.x in order, then block_reduce (cuda/rowops_common.cuh)
//   combines the threads with a fixed tree. Passes over the row: max, exp-sum, write (the row
//   is re-read from L2).
// *_lanes_kernel (inner > 1): one thread per line (outer index, inner index) walking its D
//   elements, which lie `inner` apart; neighbouring threads read neighbouring addresses.
// Accumulation is in the compute type (f32 for f32/bf16/f16, f64 for f64).
// Cross-entropy, fused with its softmax, is in cuda/cross_entropy.cu.
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cuda_runtime.h>

#include <cstdint>
#include <string_view>
#include <type_traits>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/rowops_common.cuh"

namespace mnemo::cuda {

namespace {

// ---- softmax / log_softmax forward ----------------------------------------------------------

// x, y (rows, D) contiguous. One block per row.
template <typename T, bool kLog>
__global__ void __launch_bounds__(kMaxRowThreads)
    softmax_rows_kernel(const T* x, T* y, int64_t rows, int64_t D) {
  using A = Compute<T>;
  __shared__ A scratch[kMaxRowThreads / kWarp];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * D;
    T* yr = y + row * D;
    A m = neg_inf<A>();
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) m = MaxOp{}(m, load(xr + c));
    m = block_reduce(m, MaxOp{}, scratch);
    A s = 0;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) s += exp_of(load(xr + c) - m);
    s = block_reduce(s, SumOp{}, scratch);
    if constexpr (kLog) {
      // (x - m) - log s, not x - (m + log s): m + log s would round at m's scale.
      const A log_s = log_of(s);
      for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
        yr[c] = convert<T>((load(xr + c) - m) - log_s);
      }
    } else {
      const A inverse = A(1) / s;
      for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
        yr[c] = convert<T>(exp_of(load(xr + c) - m) * inverse);
      }
    }
  }
}

// x, y (outer, D, inner) contiguous, inner > 1. One thread per (outer, inner) line.
template <typename T, bool kLog>
__global__ void softmax_lanes_kernel(const T* x, T* y, int64_t outer, int64_t D, int64_t inner) {
  using A = Compute<T>;
  const int64_t lines = outer * inner;
  for (int64_t line = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; line < lines;
       line += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (line / inner) * D * inner + line % inner;
    const T* xl = x + base;
    T* yl = y + base;
    A m = neg_inf<A>();
    for (int64_t d = 0; d < D; ++d) m = MaxOp{}(m, load(xl + d * inner));
    A s = 0;
    for (int64_t d = 0; d < D; ++d) s += exp_of(load(xl + d * inner) - m);
    if constexpr (kLog) {
      const A log_s = log_of(s);
      for (int64_t d = 0; d < D; ++d) {
        yl[d * inner] = convert<T>((load(xl + d * inner) - m) - log_s);
      }
    } else {
      const A inverse = A(1) / s;
      for (int64_t d = 0; d < D; ++d) {
        yl[d * inner] = convert<T>(exp_of(load(xl + d * inner) - m) * inverse);
      }
    }
  }
}

// ---- softmax / log_softmax backward ---------------------------------------------------------

// The per-element gradient from the row's sum (sum(dy) for log, sum(dy * y) otherwise).
template <bool kLog, typename A>
__device__ __forceinline__ A softmax_grad(A y, A dy, A sum) {
  if constexpr (kLog) {
    return dy - exp_of(y) * sum;  // exp(y) = softmax(x)
  } else {
    return y * (dy - sum);
  }
}

// y, dy, dx (rows, D) contiguous. One block per row.
template <typename T, bool kLog>
__global__ void __launch_bounds__(kMaxRowThreads)
    softmax_backward_rows_kernel(const T* y, const T* dy, T* dx, int64_t rows, int64_t D) {
  using A = Compute<T>;
  __shared__ A scratch[kMaxRowThreads / kWarp];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t off = row * D;
    A s = 0;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      s += kLog ? load(dy + off + c) : load(dy + off + c) * load(y + off + c);
    }
    s = block_reduce(s, SumOp{}, scratch);
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      dx[off + c] = convert<T>(softmax_grad<kLog>(load(y + off + c), load(dy + off + c), s));
    }
  }
}

// y, dy, dx (outer, D, inner) contiguous, inner > 1. One thread per line.
template <typename T, bool kLog>
__global__ void softmax_backward_lanes_kernel(const T* y, const T* dy, T* dx, int64_t outer,
                                              int64_t D, int64_t inner) {
  using A = Compute<T>;
  const int64_t lines = outer * inner;
  for (int64_t line = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; line < lines;
       line += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (line / inner) * D * inner + line % inner;
    A s = 0;
    for (int64_t d = 0; d < D; ++d) {
      const int64_t i = base + d * inner;
      s += kLog ? load(dy + i) : load(dy + i) * load(y + i);
    }
    for (int64_t d = 0; d < D; ++d) {
      const int64_t i = base + d * inner;
      dx[i] = convert<T>(softmax_grad<kLog>(load(y + i), load(dy + i), s));
    }
  }
}

}  // namespace

void softmax(const Tensor& x_in, int64_t dim, bool log, const Tensor& out) {
  const char* op = log ? "log_softmax" : "softmax";
  if (out.numel() == 0) return;
  assert_contiguous_output(out, op);
  const Tensor x = contiguous_on_device(x_in);
  const DimSplit s = split_at(x.shape(), dim);
  const int device = x.device().index;
  cudaStream_t st = stream(device);
  cuda::visit_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    visit_bool(log, [&](auto log_tag) {
      constexpr bool kLog = decltype(log_tag)::value;
      if (s.inner == 1) {
        softmax_rows_kernel<T, kLog><<<row_blocks(s.outer, device), row_threads(s.D), 0, st>>>(
            data<T>(x), data<T>(out), s.outer, s.D);
        MNEMO_CUDA_CHECK_LAUNCH("softmax_rows_kernel");
      } else {
        softmax_lanes_kernel<T, kLog><<<grid_for(s.outer * s.inner, device), kThreads, 0, st>>>(
            data<T>(x), data<T>(out), s.outer, s.D, s.inner);
        MNEMO_CUDA_CHECK_LAUNCH("softmax_lanes_kernel");
      }
    });
  });
}

void softmax_backward(const Tensor& y_in, const Tensor& dy_in, int64_t dim, bool log,
                      const Tensor& dx) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  if (dx.numel() == 0) return;
  assert_contiguous_output(dx, op);
  MNEMO_ASSERT(y_in.dtype() == dy_in.dtype() && y_in.shape() == dy_in.shape(),
               "{}: y and dy must share shape and dtype", op);
  const Tensor y = contiguous_on_device(y_in), dy = contiguous_on_device(dy_in);
  const DimSplit s = split_at(y.shape(), dim);
  const int device = y.device().index;
  cudaStream_t st = stream(device);
  cuda::visit_floating(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    visit_bool(log, [&](auto log_tag) {
      constexpr bool kLog = decltype(log_tag)::value;
      if (s.inner == 1) {
        softmax_backward_rows_kernel<T, kLog>
            <<<row_blocks(s.outer, device), row_threads(s.D), 0, st>>>(data<T>(y), data<T>(dy),
                                                                       data<T>(dx), s.outer, s.D);
        MNEMO_CUDA_CHECK_LAUNCH("softmax_backward_rows_kernel");
      } else {
        softmax_backward_lanes_kernel<T, kLog>
            <<<grid_for(s.outer * s.inner, device), kThreads, 0, st>>>(
                data<T>(y), data<T>(dy), data<T>(dx), s.outer, s.D, s.inner);
        MNEMO_CUDA_CHECK_LAUNCH("softmax_backward_lanes_kernel");
      }
    });
  });
}

}  // namespace mnemo::cuda
