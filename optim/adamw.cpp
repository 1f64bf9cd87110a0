// AdamW: lazily created moments, then one adamw_ kernel call per parameter (see adamw.h).
#include "optim/adamw.h"

#include <cmath>

#include "core/error.h"
#include "core/ops/optim.h"

namespace mnemo::optim {

AdamW::AdamW(std::vector<ParamGroup> groups, double lr, double beta1, double beta2, double eps)
    : Optimizer("AdamW", std::move(groups), lr, {"exp_avg", "exp_avg_sq"}),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps) {
  MNEMO_CHECK(beta1 >= 0 && beta1 < 1, "AdamW: beta1 must be in [0, 1), got {}", beta1);
  MNEMO_CHECK(beta2 >= 0 && beta2 < 1, "AdamW: beta2 must be in [0, 1), got {}", beta2);
  MNEMO_CHECK(std::isfinite(eps) && eps >= 0, "AdamW: eps must be finite and >= 0, got {}", eps);
}

DType AdamW::state_dtype(DType param_dtype) const {
  return stats_dtype(param_dtype);
}

void AdamW::step(double grad_scale) {
  MNEMO_CHECK(std::isfinite(grad_scale), "AdamW: grad_scale must be finite, got {}", grad_scale);
  AdamWParams hyper;
  hyper.beta1 = beta1_;
  hyper.beta2 = beta2_;
  hyper.eps = eps_;
  hyper.step = steps_taken() + 1;
  hyper.grad_scale = grad_scale;
  for (ParamState& p : params()) {
    Tensor grad = gradient_of(p);
    if (!grad.defined()) continue;
    if (!p.slots[0].defined()) p.slots[0] = zero_state(p.param);
    if (!p.slots[1].defined()) p.slots[1] = zero_state(p.param);
    const ParamGroup& group = groups()[p.group];
    hyper.lr = lr() * group.lr_scale;
    hyper.weight_decay = group.weight_decay;
    adamw_(p.param, grad, p.slots[0], p.slots[1], hyper);
  }
  count_step();
}

}  // namespace mnemo::optim
