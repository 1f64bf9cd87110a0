// attention: scaled dot-product attention as one fused op, and its explicit backward.
//
//   out[b, h, i] = sum_j P[i, j] v[b, hk, j],   P = softmax_j(scale * q[b, h, i] . k[b, hk, j]
//                                                            + mask[b, h, i, j])
// with hk = h / (H / Hkv) (grouped-query attention: H query heads share Hkv kv heads) and, when
// causal, P[i, j] = 0 for j > i + (Tk - Tq). That offset aligns the causal triangle to the
// bottom-right corner: with keys [cache; new] and queries [new], query i of the new part sees
// the whole cache and the new keys up to itself.
//
// The op layer checks the shapes, makes q, k, v contiguous, casts the user's mask to q's dtype
// and expands it to a (B, H, Tq, Tk) view (broadcast dims get stride 0, nothing is copied),
// resolves scale = 0 to 1/sqrt(D), and allocates out (B, H, Tq, Dv) and the row logsumexp
// lse (B, H, Tq) that the backward uses to recompute P without storing it.
#include <cmath>

#include "core/backend.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"

namespace mnemo::core {

namespace {

struct AttentionDims {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
};

// Checks q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv) and returns the sizes.
AttentionDims check_qkv(std::string_view op, const Tensor& q, const Tensor& k, const Tensor& v) {
  MNEMO_CHECK(q.defined() && k.defined() && v.defined(), "{}: undefined q, k or v", op);
  common_device(op, {&q, &k, &v});
  MNEMO_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "{}: expected q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv), got {}, {}, {}",
              op, shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  MNEMO_CHECK(is_floating(q.dtype()) && k.dtype() == q.dtype() && v.dtype() == q.dtype(),
              "{}: q, k, v must share one floating dtype, got {}, {}, {}", op, q.dtype(), k.dtype(),
              v.dtype());
  AttentionDims d{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), v.size(3)};
  MNEMO_CHECK(k.size(0) == d.B && v.size(0) == d.B && v.size(1) == d.Hkv && v.size(2) == d.Tk &&
                  k.size(3) == d.D,
              "{}: q {}, k {}, v {} disagree (expected q (B, H, Tq, D), k (B, Hkv, Tk, D), "
              "v (B, Hkv, Tk, Dv))",
              op, shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  MNEMO_CHECK(d.Hkv > 0 && d.H % d.Hkv == 0,
              "{}: {} query heads cannot be shared evenly by {} kv heads (q {}, k {})", op, d.H,
              d.Hkv, shape_str(q.shape()), shape_str(k.shape()));
  MNEMO_CHECK(d.D > 0, "{}: head dim D of q {} must be positive", op, shape_str(q.shape()));
  return d;
}

// scale = 0 means 1/sqrt(D).
double resolve_scale(std::string_view op, double scale, int64_t D) {
  MNEMO_CHECK(std::isfinite(scale), "{}: scale must be finite, got {}", op, scale);
  return scale == 0 ? 1.0 / std::sqrt(double(D)) : scale;
}

// The user's mask as a (B, H, Tq, Tk) broadcast view in q's dtype (undefined stays undefined).
Tensor expand_mask(std::string_view op, const Tensor& mask, const Tensor& q,
                   const AttentionDims& d) {
  if (!mask.defined()) return mask;
  common_device(op, {&q, &mask});
  MNEMO_CHECK(is_floating(mask.dtype()),
              "{}: the mask is an additive bias and must be floating (use -inf to hide a key), "
              "got {}",
              op, mask.dtype());
  const Shape full = {d.B, d.H, d.Tq, d.Tk};
  bool fits = mask.dim() <= 4;
  for (int64_t i = 1; fits && i <= mask.dim(); ++i) {
    int64_t m = mask.size(-i), f = full[size_t(4 - i)];
    fits = m == 1 || m == f;
  }
  MNEMO_CHECK(fits, "{}: mask of shape {} does not broadcast to (B, H, Tq, Tk) = {}", op,
              shape_str(mask.shape()), shape_str(full));
  return expand(to(mask, q.dtype()), full);
}

}  // namespace

AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v,
                          const AttentionOptions& options) {
  AttentionDims d = check_qkv("attention", q, k, v);
  double scale = resolve_scale("attention", options.scale, d.D);
  Tensor mask = expand_mask("attention", options.mask, q, d);
  Tensor out = Tensor::empty({d.B, d.H, d.Tq, d.Dv}, q.dtype(), q.device());
  Tensor lse = Tensor::empty({d.B, d.H, d.Tq}, stats_dtype(q.dtype()), q.device());
  if (lse.numel() > 0) {
    backend_for(q.device())
        .attention(contiguous(q), contiguous(k), contiguous(v), mask, options.causal, scale, out,
                   lse);
  }
  return {out, lse};
}

AttentionGrads attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionOptions& options, const Tensor& out,
                                  const Tensor& lse, const Tensor& dout) {
  std::string_view op = "attention_backward";
  AttentionDims d = check_qkv(op, q, k, v);
  double scale = resolve_scale(op, options.scale, d.D);
  Tensor mask = expand_mask(op, options.mask, q, d);
  MNEMO_CHECK(out.defined() && lse.defined() && dout.defined(), "{}: undefined out, lse or dout",
              op);
  common_device(op, {&q, &out, &lse, &dout});
  const Shape out_shape = {d.B, d.H, d.Tq, d.Dv};
  MNEMO_CHECK(out.shape() == out_shape && dout.shape() == out_shape,
              "{}: out {} and dout {} must both be (B, H, Tq, Dv) = {}", op, shape_str(out.shape()),
              shape_str(dout.shape()), shape_str(out_shape));
  MNEMO_CHECK(out.dtype() == q.dtype() && dout.dtype() == q.dtype(),
              "{}: out ({}) and dout ({}) must have q's dtype {}", op, out.dtype(), dout.dtype(),
              q.dtype());
  MNEMO_CHECK(lse.shape() == Shape({d.B, d.H, d.Tq}) && lse.dtype() == stats_dtype(q.dtype()),
              "{}: lse {} {} must be (B, H, Tq) = ({}, {}, {}) in {}", op, shape_str(lse.shape()),
              lse.dtype(), d.B, d.H, d.Tq, stats_dtype(q.dtype()));
  AttentionGrads grads{Tensor::empty(q.shape(), q.dtype(), q.device()),
                       Tensor::empty(k.shape(), k.dtype(), k.device()),
                       Tensor::empty(v.shape(), v.dtype(), v.device())};
  if (d.Tk == 0 || lse.numel() == 0) {
    fill_(grads.dq, 0);  // no keys or no queries: nothing flows
    fill_(grads.dk, 0);
    fill_(grads.dv, 0);
    return grads;
  }
  backend_for(q.device())
      .attention_backward(contiguous(q), contiguous(k), contiguous(v), mask, options.causal, scale,
                          contiguous(out), contiguous(lse), contiguous(dout), grads.dq, grads.dk,
                          grads.dv);
  return grads;
}

}  // namespace mnemo::core
