// adamw_: argument checks, then the backend's fused kernel.
#include "core/ops/optim.h"

#include "core/error.h"

namespace mnemo {

namespace {

void check_state(const Tensor& param, const Tensor& t, std::string_view what, DType dtype) {
  MNEMO_CHECK(t.defined(), "adamw_: undefined {}", what);
  MNEMO_CHECK(t.shape() == param.shape(), "adamw_: {} has shape {}, the parameter {}", what,
              shape_str(t.shape()), shape_str(param.shape()));
  MNEMO_CHECK(t.device() == param.device(), "adamw_: {} is on {}, the parameter on {}", what,
              t.device(), param.device());
  MNEMO_CHECK(t.dtype() == dtype, "adamw_: {} is {}, expected {}", what, t.dtype(), dtype);
  MNEMO_CHECK(t.is_contiguous(), "adamw_: {} must be contiguous", what);
}

}  // namespace

void adamw_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
            const Tensor& exp_avg_sq, const AdamWParams& params) {
  MNEMO_CHECK(param.defined(), "adamw_: undefined parameter");
  MNEMO_CHECK(is_floating(param.dtype()), "adamw_: parameter must be floating, got {}",
              param.dtype());
  MNEMO_CHECK(param.is_contiguous(), "adamw_: the parameter must be contiguous");
  MNEMO_CHECK(params.step >= 1, "adamw_: step must be >= 1, got {}", params.step);
  MNEMO_CHECK(params.beta1 >= 0 && params.beta1 < 1 && params.beta2 >= 0 && params.beta2 < 1,
              "adamw_: betas must be in [0, 1), got ({}, {})", params.beta1, params.beta2);
  const DType state = (param.dtype() == DType::bf16 || param.dtype() == DType::f16)
                          ? DType::f32
                          : param.dtype();
  check_state(param, grad, "grad", param.dtype());
  check_state(param, exp_avg, "exp_avg", state);
  check_state(param, exp_avg_sq, "exp_avg_sq", state);
  if (param.numel() == 0) return;
  backend_for(param.device()).adamw(param, grad, exp_avg, exp_avg_sq, params);
}

}  // namespace mnemo
