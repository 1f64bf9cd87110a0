// SGD: the update of sgd.h in a few in-place tensor ops per parameter (any backend).
#include "optim/sgd.h"

#include <cmath>

#include "core/error.h"
#include "core/ops/elementwise.h"
#include "core/ops/view.h"

namespace mnemo::optim {

namespace {

std::vector<std::string> sgd_slots(double momentum) {
  if (momentum == 0) return {};
  return {"momentum_buffer"};
}

}  // namespace

SGD::SGD(std::vector<ParamGroup> groups, double lr, double momentum, double weight_decay,
         bool nesterov)
    : Optimizer("SGD", std::move(groups), lr, sgd_slots(momentum)),
      momentum_(momentum),
      weight_decay_(weight_decay),
      nesterov_(nesterov) {
  MNEMO_CHECK(std::isfinite(momentum) && momentum >= 0,
              "SGD: momentum must be finite and >= 0, got {}", momentum);
  MNEMO_CHECK(std::isfinite(weight_decay) && weight_decay >= 0,
              "SGD: weight_decay must be finite and >= 0, got {}", weight_decay);
  MNEMO_CHECK(!nesterov || momentum > 0, "SGD: nesterov needs momentum > 0");
}

void SGD::step(double grad_scale) {
  MNEMO_CHECK(std::isfinite(grad_scale), "SGD: grad_scale must be finite, got {}", grad_scale);
  for (ParamState& p : params()) {
    Tensor g = gradient_of(p);
    if (!g.defined()) continue;
    if (grad_scale != 1) g = core::affine(g, grad_scale, 0);
    const ParamGroup& group = groups()[p.group];
    const double lr = this->lr() * group.lr_scale;
    const double wd = weight_decay_ + group.weight_decay;
    if (wd != 0) g = core::add(g, core::affine(p.param, wd, 0));  // g + wd * p
    if (momentum_ != 0) {
      Tensor& buf = p.slots[0];
      if (!buf.defined()) {
        buf = core::clone(g);
      } else {
        add_(mul_(buf, momentum_), g);  // buf = momentum * buf + g
      }
      g = nesterov_ ? core::add(g, core::affine(buf, momentum_, 0)) : buf;
    }
    sub_(p.param, core::affine(g, lr, 0));  // p -= lr * g
  }
  count_step();
}

}  // namespace mnemo::optim
