// Fused cross-entropy on the GPU, forward and backward: the reference kernels (three passes
// over a row: max, exp-sum, target) and the entry points, which call the fast one-pass kernels
// of cuda/cross_entropy_fast.cu unless kernel_choice() is reference.
//
// The math is core/cpu/cross_entropy.cpp's (the reference these kernels are tested against),
// for z (N, C), t (N,), smoothing s:
//   lse = m + log sum_c exp(z_c - m),  m = max_c z_c
//   loss = (1 - s) (lse - z_t) + s (lse - mean_c z_c)         (0 where t == ignore_index)
//   dz_c = dloss * (exp(z_c - lse) - (1 - s) [c == t] - s / C)  (0 where t == ignore_index)
// (cuda/cross_entropy.cuh has the per-row loss and gradient both kernels use). Subtracting
// the row max m keeps every exp <= 1, so nothing overflows for any logits.
//
// One block per row (grid-stride over rows), row_threads(C) threads, block_reduce
// (cuda/rowops_common.cuh) combining the threads with a fixed tree; accumulation is in the
// compute type (f32 for f32/bf16/f16, f64 for f64). A 50k-class row of f32 is 200 KB: the
// later passes re-read it from L2.
//
// Targets outside [0, C) that are not ignore_index make the CPU backend throw; a kernel cannot
// throw without a host synchronisation, so here such a row gets a NaN loss and NaN gradients
// (never an out-of-range read).
//
// Measured: the reference kernels, not measured (they have run on an H100 in the CUDA tests,
// which check results, not speed). The default path's figures are in
// cuda/cross_entropy_fast.cu's header.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "cuda/cross_entropy.cuh"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/rowops_common.cuh"
#include "cuda/rowops_fast.cuh"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

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
      loss[n] = convert<T>(
          cross_entropy_row_loss(zr, target[n], C, ignore_index, m, log_sum, z_sum, smoothing));
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
      dzr[c] = convert<T>(
          cross_entropy_grad(load(zr + c), c, t, row_lse, g, uniform, one_hot, bad_target));
    }
  }
}

}  // namespace

void cross_entropy(const Tensor& logits_in, const Tensor& target_in, int64_t ignore_index,
                   double label_smoothing, const Tensor& loss, const Tensor& lse) {
  const int64_t N = logits_in.size(0), C = logits_in.size(1);
  if (N == 0) return;
  assert_contiguous_output(loss, "cross_entropy");
  assert_contiguous_output(lse, "cross_entropy");
  MNEMO_ASSERT(target_in.dtype() == DType::i64, "cross_entropy: target must be i64, got {}",
               target_in.dtype());
  MNEMO_ASSERT(C > 0, "cross_entropy: logits have no classes");
  MNEMO_ASSERT(lse.dtype() == stats_dtype(logits_in.dtype()), "cross_entropy: lse must be {}",
               stats_dtype(logits_in.dtype()));
  const Tensor logits = contiguous_on_device(logits_in), target = contiguous_on_device(target_in);
  if (kernel_choice() != KernelChoice::reference) {
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
  assert_contiguous_output(dlogits, "cross_entropy_backward");
  MNEMO_ASSERT(target_in.dtype() == DType::i64,
               "cross_entropy_backward: target must be i64, got {}", target_in.dtype());
  MNEMO_ASSERT(
      lse_in.dtype() == stats_dtype(logits_in.dtype()) && dloss_in.dtype() == logits_in.dtype(),
      "cross_entropy_backward: lse must be {} and dloss {}", stats_dtype(logits_in.dtype()),
      logits_in.dtype());
  const Tensor logits = contiguous_on_device(logits_in), target = contiguous_on_device(target_in);
  const Tensor lse = contiguous_on_device(lse_in), dloss = contiguous_on_device(dloss_in);
  if (kernel_choice() != KernelChoice::reference) {
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
