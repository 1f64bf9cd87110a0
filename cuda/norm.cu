// rms_norm and layer_norm on the GPU, forward and backward.
//
// x (N, C) is contiguous rows (the op layer flattens (..., C)); weight, bias (C,) or undefined;
// the statistics mean, rstd (N,) are in the compute type (f32 for bf16/f16). The math is
// core/cpu/norm.cpp's:
//   rms_norm:   y = x r w,                 r = (mean(x^2) + eps)^-1/2
//   layer_norm: y = (x - mean) r w + b,    r = (var(x) + eps)^-1/2   (two passes: mean, then
//               the squared deviations, so no cancellation when |mean| >> std)
// Backward, for one row with g = dy * w (w = 1 without weight):
//   rms_norm:   dx = r g - x r^3 mean(g x),                dw = sum_rows(dy x r)
//   layer_norm: dx = r (g - mean(g) - xhat mean(g xhat)),  xhat = (x - mean) r,
//               dw = sum_rows(dy xhat),                     db = sum_rows(dy)
//
// ---- Kernels ----
// *_kernel / *_backward_dx_kernel: one block per row (grid-stride over rows), row_threads(C)
//   threads; each thread folds its columns c = threadIdx.x + k * blockDim.x, block_reduce
//   (cuda/rowops_common.cuh) combines them with a fixed tree. Row sums are accumulated in f64,
//   as the CPU does: with f32 sums, a short row whose variance is small next to its mean (or a
//   backward whose two terms nearly cancel) came out 1e-5 to 1e-3 away from the CPU.
// param_grad_partials_kernel: dw (and db) sum over all N rows, deterministically in two passes.
//   The rows are cut into RB row blocks (RowBlocks: a function of N only). Grid (ceil(C/256),
//   RB): thread (column c, row block rb) walks its block's rows in order and writes the f64
//   partial sum to partial[rb, c] (neighbouring threads read neighbouring columns: coalesced).
// sum_partials_kernel: one thread per column adds partial[0..RB-1, c] in row-block order and
//   stores the result in the parameter dtype. No atomics: bitwise reproducible.
// The fast rms_norm kernels (16-byte vectors, a warp per short row) are cuda/norm_fast.cu;
// rms_norm() and rms_norm_backward() call them unless kernel_choice() is reference (dweight always
// comes from the two-pass sums here).
//
// Measured: the reference kernels, not measured (they have run on an H100 in the CUDA tests,
// which check results, not speed). The default rms_norm path (cuda/norm_fast.cu with this
// file's dweight sums) has its figures in cuda/norm_fast.cu's header.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/rowops_common.cuh"
#include "cuda/rowops_fast.cuh"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

template <typename A>
__device__ __forceinline__ A rstd_of(double sum_sq, int64_t C, double eps) {
  return A(1.0 / sqrt(sum_sq / double(C) + eps));
}

// The weight of column c, or 1 without weight.
template <typename T>
__device__ __forceinline__ Compute<T> weight_at(const T* w, int64_t c) {
  return w ? load(w + c) : Compute<T>(1);
}

// ---- forward --------------------------------------------------------------------------------

// x, y (N, C); w (C,) or null; rstd (N,).
template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    rms_norm_kernel(const T* x, const T* w, T* y, Compute<T>* rstd, int64_t N, int64_t C,
                    double eps) {
  using A = Compute<T>;
  __shared__ double scratch[kMaxRowThreads / kWarp];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* xr = x + n * C;
    T* yr = y + n * C;
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const double v = double(load(xr + c));
      ss += v * v;
    }
    ss = block_reduce(ss, SumOp{}, scratch);
    const A r = rstd_of<A>(ss, C, eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      yr[c] = convert<T>(load(xr + c) * r * weight_at(w, c));
    }
    if (threadIdx.x == 0) rstd[n] = r;
  }
}

// x, y (N, C); w, b (C,) or null; mean, rstd (N,).
template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    layer_norm_kernel(const T* x, const T* w, const T* b, T* y, Compute<T>* mean, Compute<T>* rstd,
                      int64_t N, int64_t C, double eps) {
  using A = Compute<T>;
  __shared__ double scratch[kMaxRowThreads / kWarp];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* xr = x + n * C;
    T* yr = y + n * C;
    double s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += double(load(xr + c));
    s = block_reduce(s, SumOp{}, scratch);
    const double row_mean = s / double(C);
    const A m = A(row_mean);
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const double d = double(load(xr + c)) - row_mean;
      ss += d * d;
    }
    ss = block_reduce(ss, SumOp{}, scratch);
    const A r = rstd_of<A>(ss, C, eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      A v = (load(xr + c) - m) * r;
      if (w) v *= load(w + c);
      if (b) v += load(b + c);
      yr[c] = convert<T>(v);
    }
    if (threadIdx.x == 0) {
      mean[n] = m;
      rstd[n] = r;
    }
  }
}

// ---- backward: dx ---------------------------------------------------------------------------

// dx = r g - x r^3 mean(g x). x, dy, dx (N, C); w (C,) or null; rstd (N,).
template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    rms_norm_backward_dx_kernel(const T* x, const T* w, const T* dy, const Compute<T>* rstd, T* dx,
                                int64_t N, int64_t C) {
  using A = Compute<T>;
  __shared__ double scratch[kMaxRowThreads / kWarp];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int64_t off = n * C;
    double gx = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A g = load(dy + off + c) * weight_at(w, c);
      gx += double(g) * double(load(x + off + c));
    }
    gx = block_reduce(gx, SumOp{}, scratch);
    const A r = rstd[n];
    const A k = A(double(r) * double(r) * double(r) * gx / double(C));
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A g = load(dy + off + c) * weight_at(w, c);
      dx[off + c] = convert<T>(r * g - load(x + off + c) * k);
    }
  }
}

// dx = r (g - mean(g) - xhat mean(g xhat)). x, dy, dx (N, C); w (C,) or null; mean, rstd (N,).
template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    layer_norm_backward_dx_kernel(const T* x, const T* w, const T* dy, const Compute<T>* mean,
                                  const Compute<T>* rstd, T* dx, int64_t N, int64_t C) {
  using A = Compute<T>;
  __shared__ double scratch[kMaxRowThreads / kWarp];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int64_t off = n * C;
    const A m = mean[n], r = rstd[n];
    double sg = 0, sgx = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A g = load(dy + off + c) * weight_at(w, c);
      sg += double(g);
      sgx += double(g) * double((load(x + off + c) - m) * r);
    }
    sg = block_reduce(sg, SumOp{}, scratch);
    sgx = block_reduce(sgx, SumOp{}, scratch);
    const A mean_g = A(sg / double(C)), mean_gx = A(sgx / double(C));
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A g = load(dy + off + c) * weight_at(w, c);
      const A xhat = (load(x + off + c) - m) * r;
      dx[off + c] = convert<T>(r * (g - mean_g - xhat * mean_gx));
    }
  }
}

// ---- backward: dweight, dbias (deterministic two-pass column sums) ----------------------------

// Row blocks for the parameter-gradient partial sums; depends only on the row count.
struct RowBlocks {
  int64_t count;  // number of row blocks
  int64_t size;   // rows per block (the last may be shorter)
  explicit RowBlocks(int64_t rows) {
    constexpr int64_t kMaxBlocks = 256;
    size = std::max<int64_t>(1, (rows + kMaxBlocks - 1) / kMaxBlocks);
    count = (rows + size - 1) / size;
  }
};

// partial_w[rb, c] = sum over the rows n of row block rb of dy x r (rms: kLayer false) or
// dy (x - mean) r (layer); partial_b[rb, c] = sum of dy (layer, if non-null). Grid (columns
// / blockDim.x, RB). x, dy (N, C); mean (N,) (layer only), rstd (N,); partials (RB, C) f64.
template <typename T, bool kLayer>
__global__ void param_grad_partials_kernel(const T* x, const T* dy, const Compute<T>* mean,
                                           const Compute<T>* rstd, double* partial_w,
                                           double* partial_b, int64_t N, int64_t C,
                                           int64_t rows_per_block) {
  using A = Compute<T>;
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t rb = blockIdx.y;
  const int64_t begin = rb * rows_per_block;
  const int64_t end = begin + rows_per_block < N ? begin + rows_per_block : N;
  double acc_w = 0, acc_b = 0;
  for (int64_t n = begin; n < end; ++n) {
    const A g = load(dy + n * C + c), v = load(x + n * C + c);
    if constexpr (kLayer) {
      if (partial_w) acc_w += double(g * (v - mean[n]) * rstd[n]);
      acc_b += double(g);
    } else {
      acc_w += double(g * v * rstd[n]);
    }
  }
  if (partial_w) partial_w[rb * C + c] = acc_w;
  if (partial_b) partial_b[rb * C + c] = acc_b;
}

// out[c] = sum over rb of partial[rb, c], in row-block order. partial (RB, C); out (C,).
template <typename T>
__global__ void sum_partials_kernel(const double* partial, int64_t blocks, int64_t C, T* out) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    double acc = partial[c];
    for (int64_t rb = 1; rb < blocks; ++rb) acc += partial[rb * C + c];
    out[c] = convert<T>(acc);
  }
}

// Computes dweight (and dbias for layer_norm) from x, dy and the statistics; each of dweight,
// dbias may be undefined (then it is skipped).
template <typename T, bool kLayer>
void param_grads(const Tensor& x, const Tensor& dy, const Tensor& mean, const Tensor& rstd,
                 const Tensor& dweight, const Tensor& dbias) {
  if (!dweight.defined() && !dbias.defined()) return;
  using A = Compute<T>;
  const int64_t N = x.size(0), C = x.size(1);
  const Device device = x.device();
  cudaStream_t st = stream(device);
  for (const Tensor* out : {&dweight, &dbias}) {
    MNEMO_ASSERT(
        !out->defined() || (out->is_contiguous() && out->dtype() == x.dtype() && out->numel() == C),
        "norm backward: parameter gradients must be contiguous ({},) {}", C, x.dtype());
    // No rows: the sums are 0 (all-zero bytes are 0 in every floating dtype).
    if (N == 0 && out->defined()) {
      MNEMO_CUDA_CHECK(cudaMemsetAsync(out->data_ptr(), 0, size_t(C) * out->element_size(), st));
    }
  }
  if (N == 0) return;
  const RowBlocks blocks(N);
  Tensor partial_w, partial_b;
  if (dweight.defined()) partial_w = Tensor::empty({blocks.count, C}, DType::f64, device);
  if (dbias.defined()) partial_b = Tensor::empty({blocks.count, C}, DType::f64, device);
  const dim3 grid(unsigned((C + kThreads - 1) / kThreads), unsigned(blocks.count));
  param_grad_partials_kernel<T, kLayer><<<grid, kThreads, 0, st>>>(
      data<T>(x), data<T>(dy), data_or_null<A>(mean), data<A>(rstd),
      data_or_null<double>(partial_w), data_or_null<double>(partial_b), N, C, blocks.size);
  MNEMO_CUDA_CHECK_LAUNCH("param_grad_partials_kernel");
  for (const auto& [partial, out] : {std::pair{partial_w, dweight}, std::pair{partial_b, dbias}}) {
    if (!out.defined()) continue;
    sum_partials_kernel<T><<<grid_for(C, device.index), kThreads, 0, st>>>(
        data<double>(partial), blocks.count, C, data<T>(out));
    MNEMO_CUDA_CHECK_LAUNCH("sum_partials_kernel");
  }
}

void check_rows(const Tensor& x, const Tensor& out, std::string_view op) {
  MNEMO_ASSERT(x.dim() == 2, "{}: expected rows (N, C), got {}", op, shape_str(x.shape()));
  assert_contiguous_output(out, op);
}

}  // namespace

void rms_norm(const Tensor& x_in, const Tensor& weight, double eps, const Tensor& y,
              const Tensor& rstd) {
  check_rows(x_in, y, "rms_norm");
  const int64_t N = x_in.size(0), C = x_in.size(1);
  if (N == 0 || C == 0) return;
  const Tensor x = contiguous_on_device(x_in), w = contiguous_on_device(weight);
  if (kernel_choice() != KernelChoice::reference) return rms_norm_fast(x, w, eps, y, rstd);
  const int device = x.device().index;
  cuda::visit_floating(x.dtype(), "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = Compute<T>;
    rms_norm_kernel<T><<<row_blocks(N, device), row_threads(C), 0, stream(device)>>>(
        data<T>(x), data_or_null<T>(w), data<T>(y), data<A>(rstd), N, C, eps);
    MNEMO_CUDA_CHECK_LAUNCH("rms_norm_kernel");
  });
}

void rms_norm_backward(const Tensor& x_in, const Tensor& weight, const Tensor& rstd_in,
                       const Tensor& dy_in, const Tensor& dx, const Tensor& dweight) {
  check_rows(x_in, dx, "rms_norm_backward");
  const int64_t N = x_in.size(0), C = x_in.size(1);
  if (C == 0) return;
  const Tensor x = contiguous_on_device(x_in), w = contiguous_on_device(weight);
  const Tensor rstd = contiguous_on_device(rstd_in), dy = contiguous_on_device(dy_in);
  const int device = x.device().index;
  cuda::visit_floating(x.dtype(), "rms_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = Compute<T>;
    if (N > 0 && kernel_choice() != KernelChoice::reference) {
      rms_norm_backward_dx_fast(x, w, rstd, dy, dx);
    } else if (N > 0) {
      rms_norm_backward_dx_kernel<T><<<row_blocks(N, device), row_threads(C), 0, stream(device)>>>(
          data<T>(x), data_or_null<T>(w), data<T>(dy), data<A>(rstd), data<T>(dx), N, C);
      MNEMO_CUDA_CHECK_LAUNCH("rms_norm_backward_dx_kernel");
    }
    param_grads<T, false>(x, dy, Tensor(), rstd, dweight, Tensor());
  });
}

void layer_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  check_rows(x_in, y, "layer_norm");
  const int64_t N = x_in.size(0), C = x_in.size(1);
  if (N == 0 || C == 0) return;
  const Tensor x = contiguous_on_device(x_in), w = contiguous_on_device(weight);
  const Tensor b = contiguous_on_device(bias);
  const int device = x.device().index;
  cuda::visit_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = Compute<T>;
    layer_norm_kernel<T><<<row_blocks(N, device), row_threads(C), 0, stream(device)>>>(
        data<T>(x), data_or_null<T>(w), data_or_null<T>(b), data<T>(y), data<A>(mean),
        data<A>(rstd), N, C, eps);
    MNEMO_CUDA_CHECK_LAUNCH("layer_norm_kernel");
  });
}

void layer_norm_backward(const Tensor& x_in, const Tensor& weight, const Tensor& mean_in,
                         const Tensor& rstd_in, const Tensor& dy_in, const Tensor& dx,
                         const Tensor& dweight, const Tensor& dbias) {
  check_rows(x_in, dx, "layer_norm_backward");
  const int64_t N = x_in.size(0), C = x_in.size(1);
  if (C == 0) return;
  const Tensor x = contiguous_on_device(x_in), w = contiguous_on_device(weight);
  const Tensor mean = contiguous_on_device(mean_in), rstd = contiguous_on_device(rstd_in);
  const Tensor dy = contiguous_on_device(dy_in);
  const int device = x.device().index;
  cuda::visit_floating(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = Compute<T>;
    if (N > 0) {
      layer_norm_backward_dx_kernel<T>
          <<<row_blocks(N, device), row_threads(C), 0, stream(device)>>>(
              data<T>(x), data_or_null<T>(w), data<T>(dy), data<A>(mean), data<A>(rstd),
              data<T>(dx), N, C);
      MNEMO_CUDA_CHECK_LAUNCH("layer_norm_backward_dx_kernel");
    }
    param_grads<T, true>(x, dy, mean, rstd, dweight, dbias);
  });
}

}  // namespace mnemo::cuda
