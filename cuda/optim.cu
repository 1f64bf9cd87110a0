// Fused optimizer steps on the GPU.
//
// AdamW (core/backend_ops.def), in place, elementwise:
//   g = grad * grad_scale;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   param = param (1 - lr wd) - lr / c1 * m / (sqrt(v) / sqrt(c2) + eps),
//   c1 = 1 - b1^step, c2 = 1 - b2^step,
// the same expression, in the same order and types, as core/cpu/optim.cpp: the bias
// corrections are folded into scalars on the host in f64, then rounded to the moments' type.
// param, grad, exp_avg, exp_avg_sq: contiguous, one shape; the moments are f32 for bf16/f16
// params (the update is computed in f32 and rounded once into the parameter), else the param
// dtype.
//
// Kernel: a grid-stride loop, one element per thread per iteration; it reads 4 arrays and
// writes 3 (param, m, v), once each. Elements are independent: deterministic.
//
// Measured (the last H100 run of scripts/gpu-check.sh: bench/kernels.cpp beside PyTorch on the same
// GPU): AdamW at 75% of the measured device copy bandwidth (f32).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"

namespace mnemo::cuda {

namespace {

// The step's scalars in the moments' type A.
template <typename A>
struct AdamWScalars {
  A beta1, beta2, eps, grad_scale;
  A step_size;    // lr / c1
  A inv_sqrt_c2;  // 1 / sqrt(c2)
  A decay;        // 1 - lr * weight_decay
};

// param, grad (n,) in T; exp_avg, exp_avg_sq (n,) in the compute type.
template <typename T>
__global__ void adamw_kernel(T* param, const T* grad, Compute<T>* exp_avg, Compute<T>* exp_avg_sq,
                             int64_t n, AdamWScalars<Compute<T>> s) {
  using A = Compute<T>;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const A g = load(grad + i) * s.grad_scale;
    const A m = s.beta1 * exp_avg[i] + (1 - s.beta1) * g;
    const A v = s.beta2 * exp_avg_sq[i] + (1 - s.beta2) * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    const A w = load(param + i) * s.decay;
    param[i] = convert<T>(w - s.step_size * m / (sqrt_of(v) * s.inv_sqrt_c2 + s.eps));
  }
}

}  // namespace

void adamw(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
           const AdamWParams& p) {
  const int64_t n = param.numel();
  if (n == 0) return;
  MNEMO_ASSERT(param.is_contiguous() && grad.is_contiguous() && exp_avg.is_contiguous() &&
                   exp_avg_sq.is_contiguous(),
               "adamw: param, grad and the moments must be contiguous");
  MNEMO_ASSERT(grad.dtype() == param.dtype() && exp_avg.dtype() == stats_dtype(param.dtype()) &&
                   exp_avg_sq.dtype() == stats_dtype(param.dtype()),
               "adamw: grad must be {} and the moments {}", param.dtype(),
               stats_dtype(param.dtype()));
  MNEMO_ASSERT(grad.numel() == n && exp_avg.numel() == n && exp_avg_sq.numel() == n,
               "adamw: param, grad and the moments must have one shape");
  const int device = param.device().index;
  cuda::visit_floating(param.dtype(), "adamw", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = Compute<T>;
    const double c1 = 1 - std::pow(p.beta1, double(p.step));
    const double c2 = 1 - std::pow(p.beta2, double(p.step));
    AdamWScalars<A> s;
    s.beta1 = A(p.beta1);
    s.beta2 = A(p.beta2);
    s.eps = A(p.eps);
    s.grad_scale = A(p.grad_scale);
    s.step_size = A(p.lr / c1);
    s.inv_sqrt_c2 = A(1 / std::sqrt(c2));
    s.decay = A(1 - p.lr * p.weight_decay);
    adamw_kernel<T><<<grid_for(n, device), kThreads, 0, stream(device)>>>(
        data<T>(param), data<T>(grad), data<A>(exp_avg), data<A>(exp_avg_sq), n, s);
    MNEMO_CUDA_CHECK_LAUNCH("adamw_kernel");
  });
}

}  // namespace mnemo::cuda
