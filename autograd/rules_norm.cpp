// Derivative rules for rms_norm and layer_norm. Both are fused ops: the forward saves the
// per-row statistics (rstd, and mean for layer_norm) and the rule hands them to the explicit
// backward op (core::*_norm_backward), which every backend implements as one kernel. The
// math is in core/cpu/norm.cpp's header.
#include "autograd/exact_grad.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

using autograd::Needs;

namespace {

// Under ExactGradGuard, the weight and bias gradients (sums over rows) are recomputed so that
// they do not depend on how the rows are split (exact_grad.h): each row's term in x's dtype,
// the same bits whoever computes it, and their sum in f64 (exact for f32 terms):
//   xhat = (x - mean) rstd   (mean undefined for rms_norm),   dw = sum_rows dy xhat,
//   db = sum_rows dy.
// x, dy (..., C); mean, rstd (...) statistics.
bool exact_norm_grads(const Tensor& x) {
  return autograd::exact_grad_dtype(x.dtype()) == DType::f64 && x.dtype() != DType::f64;
}

Tensor rows_of(const Tensor& t, int64_t C, DType dtype) {
  return reshape(to(t, dtype), {-1, C});  // (R, C)
}

Tensor exact_weight_grad(const Tensor& x, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dy) {
  const int64_t C = x.size(-1);
  const DType dtype = x.dtype();
  Tensor xhat = rows_of(x, C, dtype);
  if (mean.defined()) xhat = sub(xhat, rows_of(mean, 1, dtype));
  xhat = mul(xhat, rows_of(rstd, 1, dtype));
  return sum(to(mul(rows_of(dy, C, dtype), xhat), DType::f64), {0});  // (C,)
}

}  // namespace

// y = x r w,  r = (mean(x^2) + eps)^-1/2 over the last dim
//   =>  dx = r (w dy) - x r^3 mean(w dy x),  dw = sum_rows(dy x r)
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  core::NormOutput fwd = core::rms_norm(x, weight, eps);
  if (autograd::should_record({&x, &weight})) {
    autograd::record("rms_norm", fwd.y, {x, weight},
                     [x = detach(x), weight = weight.defined() ? detach(weight) : Tensor(),
                      rstd = fwd.rstd](const Tensor& dy, const Needs&) {
                       core::NormGrads g = core::rms_norm_backward(x, weight, rstd, dy);
                       if (g.dweight.defined() && exact_norm_grads(x)) {
                         g.dweight = exact_weight_grad(x, Tensor(), rstd, dy);
                       }
                       return TensorList{g.dx, g.dweight};
                     });
  }
  return fwd.y;
}

// y = xhat w + b,  xhat = (x - mean) r,  r = (var(x) + eps)^-1/2 over the last dim
//   =>  dx = r (g - mean(g) - xhat mean(g xhat)) with g = w dy,
//       dw = sum_rows(dy xhat),  db = sum_rows(dy)
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  core::NormOutput fwd = core::layer_norm(x, weight, bias, eps);
  if (autograd::should_record({&x, &weight, &bias})) {
    autograd::record(
        "layer_norm", fwd.y, {x, weight, bias},
        [x = detach(x), weight = weight.defined() ? detach(weight) : Tensor(), mean = fwd.mean,
         rstd = fwd.rstd, has_bias = bias.defined()](const Tensor& dy, const Needs&) {
          core::NormGrads g = core::layer_norm_backward(x, weight, mean, rstd, dy, has_bias);
          if (exact_norm_grads(x)) {
            if (g.dweight.defined()) g.dweight = exact_weight_grad(x, mean, rstd, dy);
            if (g.dbias.defined()) {
              g.dbias = sum(rows_of(dy, x.size(-1), DType::f64), {0});
            }
          }
          return TensorList{g.dx, g.dweight, g.dbias};
        });
  }
  return fwd.y;
}

}  // namespace mnemo
