// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), PyTorch
// torch.optim.AdamW semantics, one fused kernel call per parameter (core/ops/optim.h adamw_).
//
// For each parameter p with gradient g at step t = steps_taken() + 1, with
// lr' = lr * group.lr_scale and wd = group.weight_decay:
//
//   g = g * grad_scale                      (step(grad_scale); 1 for step())
//   m = beta1 * m + (1 - beta1) * g         ("<name>.exp_avg")
//   v = beta2 * v + (1 - beta2) * g^2       ("<name>.exp_avg_sq")
//   p = p * (1 - lr' * wd)                  (decoupled decay: not part of the gradient)
//   p = p - lr' / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// m and v start at zero, created at a parameter's first step with a gradient, in f32 for
// bf16/f16 parameters and in the parameter's dtype otherwise. grad_scale lets clipping (or
// loss-scale removal) multiply the gradient without rewriting it: clip_grad_norm's factor can
// be passed here instead of scaling every .grad in place.
#pragma once

#include "core/backend.h"
#include "optim/optimizer.h"

namespace mnemo::optim {

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, double lr, double beta1 = 0.9, double beta2 = 0.95,
        double eps = 1e-8)
      : AdamW("AdamW", std::move(groups), lr, beta1, beta2, eps) {}

  using Optimizer::step;
  void step(double grad_scale) override;

  double beta1() const { return beta1_; }
  double beta2() const { return beta2_; }
  double eps() const { return eps_; }

 protected:
  // For a variant (train/lib/zero_adamw.h: the state sharded across ranks): its name in
  // messages, the same checks of the hyper-parameters.
  AdamW(std::string_view kind, std::vector<ParamGroup> groups, double lr, double beta1,
        double beta2, double eps);
  DType state_dtype(DType param_dtype) const override;
  // The kernel's hyper-parameters of the next step (its count, betas, eps, grad_scale); lr
  // and weight decay are the group's, set per parameter.
  AdamWParams next_step_params(double grad_scale) const;

 private:
  double beta1_, beta2_, eps_;
};

}  // namespace mnemo::optim
