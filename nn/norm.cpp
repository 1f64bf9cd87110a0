// RMSNorm and LayerNorm (norm.h).
#include "nn/norm.h"

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::nn {

RMSNorm::RMSNorm(int64_t dim_, double eps_) : dim(dim_), eps(eps_) {
  MNEMO_CHECK(dim > 0 && eps >= 0, "RMSNorm: need dim > 0 and eps >= 0, got dim={} eps={}", dim,
              eps);
  weight = register_parameter("weight", ones({dim}));
}

Tensor RMSNorm::forward(const Tensor& x) const {
  return rms_norm(x, weight, eps);
}

LayerNorm::LayerNorm(int64_t dim_, double eps_, bool has_bias) : dim(dim_), eps(eps_) {
  MNEMO_CHECK(dim > 0 && eps >= 0, "LayerNorm: need dim > 0 and eps >= 0, got dim={} eps={}", dim,
              eps);
  weight = register_parameter("weight", ones({dim}));
  if (has_bias) bias = register_parameter("bias", zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return layer_norm(x, weight, bias, eps);
}

}  // namespace mnemo::nn
