// The per-row cross-entropy math that the reference kernels (cuda/cross_entropy.cu) and the
// fast ones (cuda/cross_entropy_fast.cu) share, so that the two compute the same expression:
//   loss = (1 - s) ((m - z_t) + log_sum) + s ((m - mean_c z_c) + log_sum)   (0 if t ignored)
//   dz_c = dloss (exp(z_c - lse) - (1 - s) [c == t] - s / C)                 (0 if t ignored)
// with m the row max, log_sum = log sum_c exp(z_c - m) and lse = m + log_sum. A target that is
// neither ignore_index nor in [0, C) gives NaN (a kernel cannot throw), never an out-of-range
// read.
//
// Internal to cuda/.
#pragma once

#include <cstdint>

#include "cuda/kernel_common.cuh"
#include "cuda/rowops_common.cuh"

namespace mnemo::cuda {

// The loss of row zr (C logits of storage type T) from its max m, log_sum and the sum of its
// logits z_sum (read only with smoothing), in the compute type A.
template <typename T, typename A>
__device__ __forceinline__ A cross_entropy_row_loss(const T* zr, int64_t t, int64_t C,
                                                    int64_t ignore_index, A m, A log_sum, A z_sum,
                                                    A smoothing) {
  if (t == ignore_index) return A(0);
  if (t < 0 || t >= C) return nan_value<A>();
  // lse - z_t as (m - z_t) + log_sum: exact differences first, then one rounding.
  A l = (A(1) - smoothing) * ((m - load(zr + t)) + log_sum);
  if (smoothing != A(0)) l += smoothing * ((m - z_sum / A(C)) + log_sum);
  return l;
}

// The gradient of element c (logit zc) of a row that is not ignored: g = dloss of the row,
// uniform = g s / C, one_hot = g (1 - s); bad: the target is out of range.
template <typename A>
__device__ __forceinline__ A cross_entropy_grad(A zc, int64_t c, int64_t t, A row_lse, A g,
                                                A uniform, A one_hot, bool bad) {
  A v = exp_of(zc - row_lse) * g;
  v -= uniform;
  if (c == t) v -= one_hot;
  return bad ? nan_value<A>() : v;
}

}  // namespace mnemo::cuda
