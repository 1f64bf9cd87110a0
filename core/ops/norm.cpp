// rms_norm and layer_norm: argument checks, flattening to rows, output allocation.
//
// Both normalise every row of x (..., C) over its last dim C:
//   rms_norm:   y = x * rstd * weight,                 rstd = 1 / sqrt(mean(x^2) + eps)
//   layer_norm: y = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var(x) + eps)
// (var is the population variance). The op layer flattens x to contiguous rows (N, C) with
// N the product of the leading dims, casts weight/bias to x's dtype, allocates y and the
// per-row statistics (N,) in stats_dtype (f32 for bf16/f16), and lets the backend compute.
// The statistics are what the backward ops need, so the forward saves them.
#include <cmath>

#include "core/backend.h"
#include "core/ops/checks.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"

namespace mnemo::core {

namespace {

void check_input(std::string_view op, const Tensor& x) {
  check_floating(op, "input", x);
  MNEMO_CHECK(x.dim() >= 1 && x.size(-1) > 0,
              "{}: input of shape {} has no last dim to normalise over", op, shape_str(x.shape()));
}

// weight or bias: undefined, or (C,) on x's device; returned in x's dtype.
Tensor check_affine(std::string_view op, std::string_view what, const Tensor& param,
                    const Tensor& x) {
  if (!param.defined()) return param;
  common_device(op, {&x, &param});
  MNEMO_CHECK(param.dim() == 1 && param.size(0) == x.size(-1),
              "{}: {} of shape {} does not match the last dim of input {} (expected ({},))", op,
              what, shape_str(param.shape()), shape_str(x.shape()), x.size(-1));
  MNEMO_CHECK(is_floating(param.dtype()), "{}: {} must be floating, got {}", op, what,
              param.dtype());
  return contiguous(to(param, x.dtype()));
}

void check_eps(std::string_view op, double eps) {
  MNEMO_CHECK(eps >= 0 && std::isfinite(eps), "{}: eps must be finite and >= 0, got {}", op, eps);
}

// x (..., C) as contiguous rows (N, C).
Tensor as_rows(const Tensor& x) {
  return reshape(contiguous(x), {-1, x.size(-1)});
}

// A saved statistic: (N,) in stats_dtype of x, on x's device.
Tensor check_stats(std::string_view op, std::string_view what, const Tensor& stats,
                   const Tensor& x) {
  MNEMO_CHECK(stats.defined(), "{}: undefined {}", op, what);
  common_device(op, {&x, &stats});
  int64_t rows = x.numel() / x.size(-1);
  MNEMO_CHECK(stats.dim() == 1 && stats.size(0) == rows,
              "{}: {} of shape {} does not match input {} (expected ({},))", op, what,
              shape_str(stats.shape()), shape_str(x.shape()), rows);
  MNEMO_CHECK(stats.dtype() == stats_dtype(x.dtype()), "{}: {} must be {} for a {} input, got {}",
              op, what, stats_dtype(x.dtype()), x.dtype(), stats.dtype());
  return contiguous(stats);
}

// The gradient of the output: x's shape and dtype; returned as rows (N, C).
Tensor check_dy(std::string_view op, const Tensor& dy, const Tensor& x) {
  MNEMO_CHECK(dy.defined(), "{}: undefined output gradient", op);
  common_device(op, {&x, &dy});
  MNEMO_CHECK(dy.shape() == x.shape() && dy.dtype() == x.dtype(),
              "{}: output gradient {} {} does not match input {} {}", op, shape_str(dy.shape()),
              dy.dtype(), shape_str(x.shape()), x.dtype());
  return as_rows(dy);
}

// An empty (C,) gradient for a parameter, in the dtype it will be computed in.
Tensor param_grad(const Tensor& param, const Tensor& x) {
  return param.defined() ? Tensor::empty({x.size(-1)}, x.dtype(), x.device()) : Tensor();
}

// The parameter gradient in the parameter's own dtype.
Tensor in_dtype_of(const Tensor& grad, const Tensor& param) {
  return grad.defined() ? to(grad, param.dtype()) : grad;
}

}  // namespace

NormOutput rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_input("rms_norm", x);
  check_eps("rms_norm", eps);
  Tensor w = check_affine("rms_norm", "weight", weight, x);
  Tensor rows = as_rows(x);
  Tensor y = Tensor::empty(rows.shape(), x.dtype(), x.device());
  Tensor rstd = Tensor::empty({rows.size(0)}, stats_dtype(x.dtype()), x.device());
  if (rows.numel() > 0) backend_for(x.device()).rms_norm(rows, w, eps, y, rstd);
  return {view(y, x.shape()), Tensor(), rstd};
}

NormGrads rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                            const Tensor& dy) {
  check_input("rms_norm_backward", x);
  Tensor w = check_affine("rms_norm_backward", "weight", weight, x);
  Tensor r = check_stats("rms_norm_backward", "rstd", rstd, x);
  Tensor dy_rows = check_dy("rms_norm_backward", dy, x);
  Tensor rows = as_rows(x);
  Tensor dx = Tensor::empty(rows.shape(), x.dtype(), x.device());
  Tensor dweight = param_grad(w, x);
  if (rows.numel() > 0) {
    backend_for(x.device()).rms_norm_backward(rows, w, r, dy_rows, dx, dweight);
  } else if (dweight.defined()) {
    fill_(dweight, 0);
  }
  return {view(dx, x.shape()), in_dtype_of(dweight, weight), Tensor()};
}

NormOutput layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_input("layer_norm", x);
  check_eps("layer_norm", eps);
  Tensor w = check_affine("layer_norm", "weight", weight, x);
  Tensor b = check_affine("layer_norm", "bias", bias, x);
  Tensor rows = as_rows(x);
  Tensor y = Tensor::empty(rows.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows.size(0)}, stats_dtype(x.dtype()), x.device());
  Tensor rstd = Tensor::empty({rows.size(0)}, stats_dtype(x.dtype()), x.device());
  if (rows.numel() > 0) backend_for(x.device()).layer_norm(rows, w, b, eps, y, mean, rstd);
  return {view(y, x.shape()), mean, rstd};
}

NormGrads layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                              const Tensor& rstd, const Tensor& dy, bool has_bias) {
  check_input("layer_norm_backward", x);
  Tensor w = check_affine("layer_norm_backward", "weight", weight, x);
  Tensor m = check_stats("layer_norm_backward", "mean", mean, x);
  Tensor r = check_stats("layer_norm_backward", "rstd", rstd, x);
  Tensor dy_rows = check_dy("layer_norm_backward", dy, x);
  Tensor rows = as_rows(x);
  Tensor dx = Tensor::empty(rows.shape(), x.dtype(), x.device());
  Tensor dweight = param_grad(w, x);
  Tensor dbias = has_bias ? Tensor::empty({x.size(-1)}, x.dtype(), x.device()) : Tensor();
  if (rows.numel() > 0) {
    backend_for(x.device()).layer_norm_backward(rows, w, m, r, dy_rows, dx, dweight, dbias);
  } else {
    if (dweight.defined()) fill_(dweight, 0);
    if (dbias.defined()) fill_(dbias, 0);
  }
  return {view(dx, x.shape()), in_dtype_of(dweight, weight), dbias};
}

}  // namespace mnemo::core
