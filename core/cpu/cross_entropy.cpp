// Fused cross-entropy on the CPU, forward and backward.
//
// For logits z (N, C) and integer targets t (N,), with label smoothing s the target
// distribution is q = (1 - s) one_hot(t) + s / C, and the loss of row n is
//     loss_n = -sum_c q_c log softmax(z)_c = (1 - s) (lse - z_t) + s (lse - mean_c z_c)
//     dz_c   = dloss_n * (softmax(z)_c - q_c) = dloss_n * (exp(z_c - lse) - q_c)
// so one pass computes lse and the loss without ever storing the probabilities, and the
// backward recomputes them from the saved lse. Rows whose target is ignore_index get loss 0
// and gradient 0 (their lse is still written). Rows are spread over threads; each row is
// computed by one thread with Eigen array expressions (vectorised max, exp and sum), so
// results do not depend on the thread count. bf16/f16 logits are computed on f32 copies
// (core/cpu/softmax_rows.h).
//
// Measured (bench/bench_core.cpp softmax; 2-core AMD EPYC Zen 4 VM, f32, one thread, (2048,
// 512) logits): cross_entropy 13 GB/s (it reads the logits only) and its backward 25 GB/s.

// GCC 12 reports a false "may be used uninitialized" inside Eigen's AVX-512 packet math
// (_mm256_undefined_ps is uninitialised by design); the pragma must precede the intrinsics
// headers, since the warning points into them.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <string_view>

#include "core/cpu/parallel.h"
#include "core/cpu/softmax_rows.h"

namespace mnemo::cpu {

namespace {

// Throws if a target is neither ignore_index nor a class id in [0, C). Runs before the
// parallel loops: an exception must not escape an OpenMP thread.
void check_targets(const Tensor& target, int64_t C, int64_t ignore_index, std::string_view op) {
  const int64_t* t = target.data<int64_t>();
  for (int64_t n = 0; n < target.numel(); ++n) {
    MNEMO_CHECK(t[n] == ignore_index || (t[n] >= 0 && t[n] < C),
                "{}: target {} at row {} is out of range for {} classes (ignore_index is {})", op,
                t[n], n, C, ignore_index);
  }
}

// z (N, C) logits, t (N,) targets -> loss (N,), lse (N,).
template <typename C>
void cross_entropy_forward(const C* z, const int64_t* t, int64_t N, int64_t classes,
                           int64_t ignore_index, C smoothing, C* loss, C* lse) {
  parallel_for(N, classes * kExpCost, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      ConstVecMap<C> zr(z + n * classes, classes);
      const C m = zr.maxCoeff();
      const C log_sum = std::log((zr - m).exp().sum());
      lse[n] = m + log_sum;
      if (t[n] == ignore_index) {
        loss[n] = C(0);
        continue;
      }
      // lse - z_t as (m - z_t) + log_sum: exact differences first, then one rounding.
      C l = (C(1) - smoothing) * ((m - zr[t[n]]) + log_sum);
      if (smoothing != C(0)) l += smoothing * ((m - zr.mean()) + log_sum);
      loss[n] = l;
    }
  });
}

// dz (N, C) = dloss * (exp(z - lse) - q), q = (1 - s) one_hot(t) + s / C; 0 for ignored rows.
template <typename C>
void cross_entropy_backward_impl(const C* z, const int64_t* t, const C* lse, const C* dloss,
                                 int64_t N, int64_t classes, int64_t ignore_index, C smoothing,
                                 C* dz) {
  parallel_for(N, classes * kExpCost, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      VecMap<C> dzr(dz + n * classes, classes);
      if (t[n] == ignore_index) {
        dzr.setZero();
        continue;
      }
      ConstVecMap<C> zr(z + n * classes, classes);
      const C g = dloss[n];
      dzr = (zr - lse[n]).exp();  // softmax(z)
      scale_and_flush(dz + n * classes, classes, &g, 0);
      dzr -= g * smoothing / C(classes);
      dzr[t[n]] -= g * (C(1) - smoothing);
    }
  });
}

}  // namespace

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                               double label_smoothing, const Tensor& loss, const Tensor& lse) {
  const int64_t N = logits.size(0), classes = logits.size(1);
  check_targets(target, classes, ignore_index, "cross_entropy");
  Tensor zc = compute_copy(logits), lossc = compute_output(loss);
  visit_compute(logits.dtype(), "cross_entropy", [&](auto tag) {
    using C = typename decltype(tag)::type;
    cross_entropy_forward<C>(zc.data<C>(), target.data<int64_t>(), N, classes, ignore_index,
                             C(label_smoothing), lossc.data<C>(), lse.data<C>());
  });
  finish_output(lossc, loss);
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target,
                                        const Tensor& lse, const Tensor& dloss,
                                        int64_t ignore_index, double label_smoothing,
                                        const Tensor& dlogits) {
  const int64_t N = logits.size(0), classes = logits.size(1);
  check_targets(target, classes, ignore_index, "cross_entropy_backward");
  Tensor zc = compute_copy(logits), dlc = compute_copy(dloss), dzc = compute_output(dlogits);
  visit_compute(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using C = typename decltype(tag)::type;
    cross_entropy_backward_impl<C>(zc.data<C>(), target.data<int64_t>(), lse.data<C>(),
                                   dlc.data<C>(), N, classes, ignore_index, C(label_smoothing),
                                   dzc.data<C>());
  });
  finish_output(dzc, dlogits);
}

}  // namespace mnemo::cpu
