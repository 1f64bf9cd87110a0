// Dropout (dropout.h).
#include "nn/dropout.h"

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::nn {

Dropout::Dropout(double p_, Generator* gen) : p(p_), gen_(gen) {
  MNEMO_CHECK(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got {}", p);
}

Tensor Dropout::forward(const Tensor& x) const {
  if (!is_training() || p == 0) return x;
  return dropout(x, p, true, gen_);
}

}  // namespace mnemo::nn
