// Derivative rules for rms_norm and layer_norm. Both are fused ops: the forward saves the
// per-row statistics (rstd, and mean for layer_norm) and the rule hands them to the explicit
// backward op (core::*_norm_backward), which every backend implements as one kernel. The
// math is in core/cpu/norm.cpp's header.
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

using autograd::Needs;

// y = x r w,  r = (mean(x^2) + eps)^-1/2 over the last dim
//   =>  dx = r (w dy) - x r^3 mean(w dy x),  dw = sum_rows(dy x r)
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  core::NormOutput fwd = core::rms_norm(x, weight, eps);
  if (autograd::should_record({&x, &weight})) {
    autograd::record("rms_norm", fwd.y, {x, weight},
                     [x = detach(x), weight = weight.defined() ? detach(weight) : Tensor(),
                      rstd = fwd.rstd](const Tensor& dy, const Needs&) {
                       core::NormGrads g = core::rms_norm_backward(x, weight, rstd, dy);
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
          return TensorList{g.dx, g.dweight, g.dbias};
        });
  }
  return fwd.y;
}

}  // namespace mnemo
