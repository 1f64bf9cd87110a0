// MemGen's trigger (memgen_trigger.h).
#include "memory/memgen_trigger.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::memory {

MemGenTrigger::MemGenTrigger(int64_t hidden, double p_insert, Generator* gen) {
  MNEMO_CHECK(hidden >= 1, "MemGenTrigger: hidden must be positive, got {}", hidden);
  MNEMO_CHECK(p_insert > 0 && p_insert < 1, "MemGenTrigger: p_insert must be in (0, 1), got {}",
              p_insert);
  head = register_module("head", std::make_shared<nn::Linear>(hidden, 1, true, gen, 0.02));
  NoGradGuard no_grad;
  fill_(head->bias, std::log(p_insert / (1 - p_insert)));
}

Tensor MemGenTrigger::logits(const Tensor& features) const {
  MNEMO_CHECK(features.dim() == 2 && features.size(1) == head->weight.size(1),
              "MemGenTrigger: features must be (N, {}), got {}", head->weight.size(1),
              shape_str(features.shape()));
  return reshape(head->forward(features), {features.size(0)});
}

Tensor MemGenTrigger::log_prob(const Tensor& features, const Tensor& decisions) const {
  const Tensor z = logits(features);
  MNEMO_CHECK(decisions.shape() == z.shape(), "MemGenTrigger: decisions must be ({}), got {}",
              z.size(0), shape_str(decisions.shape()));
  return neg(softplus((1.0 - 2.0 * decisions) * z));
}

}  // namespace mnemo::memory
