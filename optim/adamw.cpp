// AdamW: lazily created moments, then one adamw_ kernel call per parameter (see adamw.h).
#include "optim/adamw.h"

#include <cmath>

#include "core/error.h"
#include "core/ops/optim.h"

namespace mnemo::optim {

AdamW::AdamW(std::string_view kind, std::vector<ParamGroup> groups, double lr, double beta1,
             double beta2, double eps)
    : Optimizer(kind, std::move(groups), lr, {"exp_avg", "exp_avg_sq"}),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps) {
  MNEMO_CHECK(beta1 >= 0 && beta1 < 1, "{}: beta1 must be in [0, 1), got {}", kind, beta1);
  MNEMO_CHECK(beta2 >= 0 && beta2 < 1, "{}: beta2 must be in [0, 1), got {}", kind, beta2);
  MNEMO_CHECK(std::isfinite(eps) && eps >= 0, "{}: eps must be finite and >= 0, got {}", kind, eps);
}

AdamWParams AdamW::next_step_params(double grad_scale) const {
  MNEMO_CHECK(std::isfinite(grad_scale), "{}: grad_scale must be finite, got {}", kind(),
              grad_scale);
  AdamWParams hyper;
  hyper.beta1 = beta1_;
  hyper.beta2 = beta2_;
  hyper.eps = eps_;
  hyper.step = steps_taken() + 1;
  hyper.grad_scale = grad_scale;
  return hyper;
}

DType AdamW::state_dtype(DType param_dtype) const {
  return stats_dtype(param_dtype);
}

void AdamW::step(double grad_scale) {
  AdamWParams hyper = next_step_params(grad_scale);
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
