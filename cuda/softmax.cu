// Softmax, log-softmax and fused cross-entropy on the GPU, forward and backward.
//
// The math is core/cpu/softmax.cpp's (the reference these kernels are tested against):
//   softmax:      y_c = exp(x_c - m) / s,     m = max_j x_j,  s = sum_j exp(x_j - m)
//   log_softmax:  y_c = (x_c - m) - log s
//   backward:     softmax dx = y * (dy - sum(dy * y)),  log_softmax dx = dy - exp(y) * sum(dy)
//   cross_entropy (z (N, C), t (N,), smoothing s):
//     lse = m + log sum_c exp(z_c - m)
//     loss = (1 - s) (lse - z_t) + s (lse - mean_c z_c)         (0 where t == ignore_index)
//     dz_c = dloss * (exp(z_c - lse) - (1 - s) [c == t] - s / C)  (0 where t == ignore_index)
// Subtracting the row max m keeps every exp <= 1, so nothing overflows for any logits.
//
// Inputs are contiguous (the op layer's convention for fused ops); a dim splits x into
// (outer, D, inner).
//
// ---- Kernels ----
// *_rows_kernel (inner == 1, the usual case: the softmax dim is last, and cross-entropy rows):
//   one block per row of D elements (grid-stride over rows), row_threads(D) threads. Each
//   thread folds the elements c = threadIdx.x + k * blockDim.x in order, then block_reduce
//   (cuda/rowops_common.cuh) combines the threads with a fixed tree. Passes over the row: max,
//   exp-sum, write (the row is re-read from L2; a 50k-class row of f32 is 200 KB).
// *_lanes_kernel (inner > 1): one thread per line (outer index, inner index) walking its D
//   elements, which lie `inner` apart; neighbouring threads read neighbouring addresses.
// Accumulation is in the compute type (f32 for f32/bf16/f16, f64 for f64).
// The fast cross-entropy (one pass with an online max, 16-byte loads) is
// cuda/cross_entropy_fast.cu; cross_entropy() and cross_entropy_backward() call it when
// kernel_choice() is fast.
//
// Targets outside [0, C) that are not ignore_index make the CPU backend throw; a kernel cannot
// throw without a host synchronisation, so here such a row gets a NaN loss and NaN gradients
// (never an out-of-range read).
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string_view>
#include <type_traits>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/rowops_common.cuh"
#include "cuda/rowops_fast.cuh"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

template <typename A>
__device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}
template <typename A>
__device__ __forceinline__ A nan_value() {
  return std::numeric_limits<A>::quiet_NaN();
}

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

// ---- cross-entropy ----------------------------------------------------------------------------

// z (N, C) logits, target (N,) -> loss (N,), lse (N,) (stats: the compute type). One block per
// row.
template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    cross_entropy_kernel(const T* z, const int64_t* target, int64_t N, int64_t C,
                         int64_t ignore_index, Compute<T> smoothing, T* loss, Compute<T>* lse) {
  using A = Compute<T>;
  __shared__ A scratch[kMaxRowThreads / kWarp];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* zr = z + n * C;
    A m = neg_inf<A>();
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = MaxOp{}(m, load(zr + c));
    m = block_reduce(m, MaxOp{}, scratch);
    A s = 0, z_sum = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A v = load(zr + c);
      s += exp_of(v - m);
      z_sum += v;
    }
    s = block_reduce(s, SumOp{}, scratch);
    if (smoothing != A(0)) z_sum = block_reduce(z_sum, SumOp{}, scratch);  // uniform branch
    if (threadIdx.x == 0) {
      const A log_sum = log_of(s);
      lse[n] = m + log_sum;
      const int64_t t = target[n];
      A l = 0;
      if (t == ignore_index) {
        l = 0;
      } else if (t < 0 || t >= C) {
        l = nan_value<A>();
      } else {
        // lse - z_t as (m - z_t) + log_sum: exact differences first, then one rounding.
        l = (A(1) - smoothing) * ((m - load(zr + t)) + log_sum);
        if (smoothing != A(0)) l += smoothing * ((m - z_sum / A(C)) + log_sum);
      }
      loss[n] = convert<T>(l);
    }
  }
}

// dz (N, C) = dloss * (exp(z - lse) - q), q = (1 - s) one_hot(t) + s / C; 0 for ignored rows.
// One block per row; no reduction.
template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    cross_entropy_backward_kernel(const T* z, const int64_t* target, const Compute<T>* lse,
                                  const T* dloss, int64_t N, int64_t C, int64_t ignore_index,
                                  Compute<T> smoothing, T* dz) {
  using A = Compute<T>;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* zr = z + n * C;
    T* dzr = dz + n * C;
    const int64_t t = target[n];
    if (t == ignore_index) {
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dzr[c] = convert<T>(A(0));
      continue;
    }
    const bool bad_target = t < 0 || t >= C;
    const A g = load(dloss + n), row_lse = lse[n];
    const A uniform = g * smoothing / A(C);
    const A one_hot = g * (A(1) - smoothing);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      A v = exp_of(load(zr + c) - row_lse) * g;
      v -= uniform;
      if (c == t) v -= one_hot;
      if (bad_target) v = nan_value<A>();
      dzr[c] = convert<T>(v);
    }
  }
}

// ---- launchers --------------------------------------------------------------------------------

// (outer, D, inner) of a contiguous tensor split at dim.
struct DimSplit {
  int64_t outer = 1, D = 1, inner = 1;
};
DimSplit split_at(const Shape& shape, int64_t dim) {
  DimSplit s;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d < dim) s.outer *= shape[d];
    if (d == dim) s.D = shape[d];
    if (d > dim) s.inner *= shape[d];
  }
  return s;
}

// Calls fn(std::bool_constant<flag>) so a runtime flag picks a kernel template argument.
template <typename Fn>
void visit_bool(bool flag, Fn&& fn) {
  if (flag) {
    fn(std::true_type{});
  } else {
    fn(std::false_type{});
  }
}

void check_output(const Tensor& out, std::string_view op) {
  MNEMO_CHECK(out.is_contiguous(), "{}: the output must be contiguous on the cuda backend", op);
}

}  // namespace

void softmax(const Tensor& x_in, int64_t dim, bool log, const Tensor& out) {
  const char* op = log ? "log_softmax" : "softmax";
  if (out.numel() == 0) return;
  check_output(out, op);
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
  check_output(dx, op);
  MNEMO_CHECK(y_in.dtype() == dy_in.dtype() && y_in.shape() == dy_in.shape(),
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

void cross_entropy(const Tensor& logits_in, const Tensor& target_in, int64_t ignore_index,
                   double label_smoothing, const Tensor& loss, const Tensor& lse) {
  const int64_t N = logits_in.size(0), C = logits_in.size(1);
  if (N == 0) return;
  check_output(loss, "cross_entropy");
  check_output(lse, "cross_entropy");
  MNEMO_CHECK(target_in.dtype() == DType::i64, "cross_entropy: target must be i64, got {}",
              target_in.dtype());
  MNEMO_CHECK(C > 0, "cross_entropy: logits have no classes");
  MNEMO_CHECK(lse.dtype() == stats_dtype(logits_in.dtype()), "cross_entropy: lse must be {}",
              stats_dtype(logits_in.dtype()));
  const Tensor logits = contiguous_on_device(logits_in), target = contiguous_on_device(target_in);
  if (kernel_choice() == KernelChoice::fast) {
    return cross_entropy_fast(logits, target, ignore_index, label_smoothing, loss, lse);
  }
  const int device = logits.device().index;
  cuda::visit_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = Compute<T>;
    cross_entropy_kernel<T><<<row_blocks(N, device), row_threads(C), 0, stream(device)>>>(
        data<T>(logits), data<int64_t>(target), N, C, ignore_index, A(label_smoothing),
        data<T>(loss), data<A>(lse));
    MNEMO_CUDA_CHECK_LAUNCH("cross_entropy_kernel");
  });
}

void cross_entropy_backward(const Tensor& logits_in, const Tensor& target_in, const Tensor& lse_in,
                            const Tensor& dloss_in, int64_t ignore_index, double label_smoothing,
                            const Tensor& dlogits) {
  const int64_t N = logits_in.size(0), C = logits_in.size(1);
  if (N == 0 || C == 0) return;
  check_output(dlogits, "cross_entropy_backward");
  MNEMO_CHECK(target_in.dtype() == DType::i64, "cross_entropy_backward: target must be i64, got {}",
              target_in.dtype());
  MNEMO_CHECK(
      lse_in.dtype() == stats_dtype(logits_in.dtype()) && dloss_in.dtype() == logits_in.dtype(),
      "cross_entropy_backward: lse must be {} and dloss {}", stats_dtype(logits_in.dtype()),
      logits_in.dtype());
  const Tensor logits = contiguous_on_device(logits_in), target = contiguous_on_device(target_in);
  const Tensor lse = contiguous_on_device(lse_in), dloss = contiguous_on_device(dloss_in);
  if (kernel_choice() == KernelChoice::fast) {
    return cross_entropy_backward_fast(logits, target, lse, dloss, ignore_index, label_smoothing,
                                       dlogits);
  }
  const int device = logits.device().index;
  cuda::visit_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = Compute<T>;
    cross_entropy_backward_kernel<T><<<row_blocks(N, device), row_threads(C), 0, stream(device)>>>(
        data<T>(logits), data<int64_t>(target), data<A>(lse), data<T>(dloss), N, C, ignore_index,
        A(label_smoothing), data<T>(dlogits));
    MNEMO_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
  });
}

}  // namespace mnemo::cuda
