// Normalisation layers over the last dim: RMSNorm (Llama) and LayerNorm.
//
//   RMSNorm:   y = x / sqrt(mean(x^2) + eps) * weight
//   LayerNorm: y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias   (population variance)
// Both call the fused ops (one pass forward, one backward); weight starts at ones, bias at 0.
#pragma once

#include "nn/module.h"

namespace mnemo::nn {

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6);
  Tensor forward(const Tensor& x) const;  // x (..., dim) -> (..., dim)

  int64_t dim;
  double eps;
  Tensor weight;  // (dim,)
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true);
  Tensor forward(const Tensor& x) const;  // x (..., dim) -> (..., dim)

  int64_t dim;
  double eps;
  Tensor weight;  // (dim,)
  Tensor bias;    // (dim,) or undefined
};

}  // namespace mnemo::nn
