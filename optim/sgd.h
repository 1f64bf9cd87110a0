// SGD with momentum, PyTorch torch.optim.SGD semantics (dampening 0).
//
// For each parameter p with gradient g, learning rate lr' = lr * group.lr_scale, and L2
// coefficient wd' = weight_decay + group.weight_decay:
//
//   g = g * grad_scale                    (step(grad_scale); 1 for step())
//   g = g + wd' * p                       (L2 regularisation, added to the gradient)
//   if momentum != 0:
//     buf = g                             on the first step of p (no decay of zeros)
//     buf = momentum * buf + g            afterwards
//     g = nesterov ? g + momentum * buf : buf
//   p = p - lr' * g
//
// State: "<name>.momentum_buffer" (the parameter's dtype) when momentum != 0, none otherwise.
#pragma once

#include "optim/optimizer.h"

namespace mnemo::optim {

class SGD : public Optimizer {
 public:
  // weight_decay applies to every group, in addition to each group's own weight_decay.
  // nesterov needs momentum > 0.
  SGD(std::vector<ParamGroup> groups, double lr, double momentum = 0, double weight_decay = 0,
      bool nesterov = false);

  using Optimizer::step;
  void step(double grad_scale) override;

  double momentum() const { return momentum_; }
  bool nesterov() const { return nesterov_; }

 private:
  double momentum_;
  double weight_decay_;
  bool nesterov_;
};

}  // namespace mnemo::optim
