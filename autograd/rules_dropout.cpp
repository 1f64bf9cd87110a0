// Dropout (Srivastava et al. 2014, "inverted" form): while training, each element is zeroed
// with probability p and the survivors are scaled by 1 / (1 - p), so the expected value of
// every element is unchanged and evaluation needs no rescaling (it is the identity).
//
// The mask is one bernoulli(1 - p) draw from the generator's stream (core/ops/random.h), in
// x's dtype and on x's device, so it is the same on every backend for the same state. The
// op is written with the differentiable mul, whose rule gives the gradient; the scaled mask
// is a constant.
#include "autograd/ops.h"

namespace mnemo {

// y = x * mask / (1 - p),  mask ~ bernoulli(1 - p)  =>  dx = dy * mask / (1 - p)
// x (any shape, floating)
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  MNEMO_CHECK(x.defined(), "dropout: undefined input");
  MNEMO_CHECK(p >= 0 && p <= 1, "dropout: probability p={} is outside [0, 1]", p);
  MNEMO_CHECK(is_floating(x.dtype()), "dropout: expected a floating tensor, got {} of shape {}",
              x.dtype(), shape_str(x.shape()));
  if (!training || p == 0) return x;
  if (p == 1) {  // everything dropped: exact zeros (even for inf/nan), gradient zero
    Tensor none = scalar_tensor(0, TensorOptions{DType::boolean, x.device()});
    return where(none, x, scalar_tensor(0, options_of(x)));
  }
  Tensor keep = bernoulli(x.shape(), 1 - p, options_of(x), gen);  // 1 = kept
  Tensor scaled_keep = core::mul(keep, scalar_tensor(1 / (1 - p), options_of(x)));
  return mul(x, scaled_keep);
}

}  // namespace mnemo
