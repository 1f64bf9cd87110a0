// Fused optimizer steps on the CPU.
//
// AdamW reads param, grad and both moments once and writes param and the moments once: one
// pass over 4 arrays instead of the ~10 passes the same update takes as separate elementwise
// ops. The loop body has no branches, so it vectorises; elements are independent, so the
// split over threads cannot change the result.
#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"

namespace mnemo::cpu {

void CpuBackend::adamw(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                       const Tensor& exp_avg_sq, const AdamWParams& p) {
  visit_floating(param.dtype(), "adamw", [&](auto tag) {
    using Scalar = typename decltype(tag)::type;
    using Acc = ComputeType<Scalar>;  // the moments' type (f32 for bf16/f16)
    Scalar* w = static_cast<Scalar*>(param.data_ptr());
    const Scalar* g = static_cast<const Scalar*>(grad.data_ptr());
    Acc* m = static_cast<Acc*>(exp_avg.data_ptr());
    Acc* v = static_cast<Acc*>(exp_avg_sq.data_ptr());
    const Acc b1 = Acc(p.beta1), b2 = Acc(p.beta2), eps = Acc(p.eps);
    const Acc scale = Acc(p.grad_scale);
    // Bias corrections folded into the step size and the denominator:
    //   update = lr / c1 * m / (sqrt(v) / sqrt(c2) + eps).
    const double c1 = 1 - std::pow(p.beta1, double(p.step));
    const double c2 = 1 - std::pow(p.beta2, double(p.step));
    const Acc step_size = Acc(p.lr / c1);
    const Acc inv_sqrt_c2 = Acc(1 / std::sqrt(c2));
    const Acc decay = Acc(1 - p.lr * p.weight_decay);
    parallel_for(param.numel(), 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const Acc gi = Acc(g[i]) * scale;
        const Acc mi = b1 * m[i] + (1 - b1) * gi;
        const Acc vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const Acc wi = Acc(w[i]) * decay;
        w[i] = Scalar(wi - step_size * mi / (std::sqrt(vi) * inv_sqrt_c2 + eps));
      }
    });
  });
}

}  // namespace mnemo::cpu
