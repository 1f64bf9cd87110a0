// Derivative rule for attention. The forward is one fused op that saves only its output and
// the row logsumexp (lse); the explicit backward op recomputes the probabilities from lse
// (core/cpu/attention.cpp has the algorithm).
//
// The mask is an additive constant: no gradient flows into it. Rather than drop a gradient
// silently, attention refuses a mask that requires grad while grad mode is on.
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

using autograd::Needs;

// O = P V,  P = softmax(scale q k^T + mask)  (per head, causal/grouped-query as in core)
//   =>  dV = P^T dO,  dP = dO V^T,  dS = P (dP - rowsum(dO O)),
//       dQ = scale dS K,  dK = scale dS^T Q  (summed over the query heads sharing a kv head)
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const core::AttentionOptions& options) {
  MNEMO_CHECK(!(GradMode::is_enabled() && options.mask.defined() && options.mask.requires_grad()),
              "attention: the mask (shape {}) requires grad, but attention gives it no gradient; "
              "pass a detached mask",
              shape_str(options.mask.shape()));
  core::AttentionOutput fwd = core::attention(q, k, v, options);
  if (autograd::should_record({&q, &k, &v})) {
    core::AttentionOptions saved = options;
    if (saved.mask.defined()) saved.mask = detach(saved.mask);
    autograd::record("attention", fwd.out, {q, k, v},
                     [q = detach(q), k = detach(k), v = detach(v), saved, out = detach(fwd.out),
                      lse = fwd.lse](const Tensor& dout, const Needs& needs) {
                       core::AttentionGrads g =
                           core::attention_backward(q, k, v, saved, out, lse, dout);
                       return TensorList{needs[0] ? g.dq : Tensor(), needs[1] ? g.dk : Tensor(),
                                         needs[2] ? g.dv : Tensor()};
                     });
  }
  return fwd.out;
}

}  // namespace mnemo
