// The fast kernels of the bandwidth-bound ops: the chunked scan (cuda/scan_fast.cu),
// vectorised RMSNorm (cuda/norm_fast.cu) and the one-pass fused cross-entropy
// (cuda/cross_entropy_fast.cu). Their reference kernels ("kernel1") stay in scan.cu, norm.cu
// and cross_entropy.cu, whose entry points call these unless cuda::kernel_choice() is
// KernelChoice::reference (cuda/runtime.h) and when the function says it applies.
//
// Every function here takes tensors already checked and made contiguous by its caller (same
// device, same dtype, the shapes of cuda/ops.h), with at least one element of work.
//
// Internal to cuda/.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mnemo::cuda {

// ---- scan_fast.cu: a, x, h (B, T, C); h0 (B, C) or undefined ----
// Whether the chunked scan pays: T long enough to cut into at least two chunks of T. Where it
// does not, one thread per (b, c) (the reference) is already the whole algorithm.
bool scan_fast_applies(int64_t B, int64_t T, int64_t C);
void scan_fast(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h);
void scan_backward_fast(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                        const Tensor& da, const Tensor& dx, const Tensor& dh0);

// ---- norm_fast.cu: x, y, dy, dx (N, C) with N, C > 0; weight (C,) or undefined ----
void rms_norm_fast(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                   const Tensor& rstd);
// dx only; dweight stays with norm.cu's deterministic two-pass column sums.
void rms_norm_backward_dx_fast(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                               const Tensor& dy, const Tensor& dx);

// ---- cross_entropy_fast.cu: logits, dlogits (N, C) with N, C > 0; target (N,) i64 ----
void cross_entropy_fast(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                        double label_smoothing, const Tensor& loss, const Tensor& lse);
void cross_entropy_backward_fast(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                 const Tensor& dloss, int64_t ignore_index, double label_smoothing,
                                 const Tensor& dlogits);

}  // namespace mnemo::cuda
