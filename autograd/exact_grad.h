// Split-invariant parameter gradients: the same bits however the batch is divided.
//
// A weight gradient is a sum over the rows of the batch, e.g. for a linear layer over
// R = B * T rows
//     dW = sum_r dy_r^T x_r                                      (out, in)
// One process computes it as one f32 GEMM over R rows; two data-parallel ranks compute two
// GEMMs over R / 2 rows each and add them in the all_reduce; gradient accumulation adds
// micro-batches. Each grouping rounds differently, and AdamW's first steps turn that noise
// into weight differences of up to ~lr wherever a gradient is near zero (the update is
// about lr * g / (|g| + eps), which flips sign with g). So "2 ranks train like 1 process"
// needs gradients that do not depend on the grouping at all.
//
// While an ExactGradGuard is alive (the trainer holds one around backward), that is what
// backward computes:
//   1. rules that reduce over rows split them into fixed segments of `segment_rows` rows
//      (one sequence: the trainer passes seq_len, and ranks and micro-batches split the
//      batch at sequence boundaries), compute each segment's partial in the input dtype, the
//      same bits whoever computes it, and add the partials in f64;
//   2. the gradient of every leaf (every parameter) stays in f64 (its .grad is f64), so
//      contributions from several ops, several micro-batches and, in the all_reduce, several
//      ranks add up in f64 too.
// f64 addition of f32 partials is exact as long as they span less than ~2^25 in magnitude
// (their 24-bit significands then fit the 53-bit one), and otherwise off by 2^-53 relative:
// either way far below the one rounding to f32 that comes after the all_reduce
// (train/lib/grad_sync.h). Per-token activation gradients are already the same bits on
// every rank (every op is row-wise deterministic, and the loss is scaled by the global
// token count), so the result is split-invariant. The cost: f64 gradient buffers as large as
// the parameters, and on the CPU next to nothing for the weight-gradient GEMMs
// (core::matmul_segment_sum cuts its k blocks at segment boundaries and adds each segment's
// f32 block into the f64 result while it is still in cache; bench_core's exact_grads).
//
// Rules that use this: linear and fused_linear (dW, db), embedding, rms_norm and layer_norm
// (dweight, dbias); the engine sums broadcast gradients of leaves in f64 (fit_to_input).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mnemo::autograd {

// 0 when off; otherwise the segment length in rows. Per thread, like grad mode.
int64_t exact_grad_segment_rows();

class ExactGradGuard {
 public:
  explicit ExactGradGuard(int64_t segment_rows);
  ~ExactGradGuard();
  ExactGradGuard(const ExactGradGuard&) = delete;
  ExactGradGuard& operator=(const ExactGradGuard&) = delete;

 private:
  int64_t previous_;
};

// dY (R, out), X (R, in) -> dY^T X (out, in): one GEMM when off; when on, the f64 sum of
// per-segment products (each a GEMM over segment_rows rows in X's dtype).
Tensor row_product_sum(const Tensor& dY, const Tensor& X);
// dY (R, n) -> (n,): the sum over rows; in f64 when on.
Tensor row_sum(const Tensor& dY);
// The dtype a parameter-like gradient should be reduced in: f64 when on (for floating
// dtypes), else dtype itself.
DType exact_grad_dtype(DType dtype);

}  // namespace mnemo::autograd
