// Feed-forward blocks of a transformer.
//
//   MLP (GPT-2 style):      y = proj(gelu(fc(x)))                         names fc, proj
//   SwiGLU (HF Llama):      y = down_proj(silu(gate_proj(x)) * up_proj(x)) no biases
//
// SwiGLU does gate and up as ONE matmul (fused_linear.h: a (rows, 2I) GEMM over [W_gate; W_up]
// whose two column views are the gate and up activations), while the parameters keep HF's
// names and shapes and get their gradients separately. The gating silu(gate) * up is one
// recorded node (swiglu below) whose backward makes both gradients in 7 elementwise passes
// (silu's and mul's separate rules took 8, and two tape nodes).
#pragma once

#include <memory>

#include "nn/linear.h"

namespace mnemo::nn {

// silu(gate) * up, gate and up (..., I) of one shape (any strides) -> (..., I).
//   h = silu(g) = g s, s = sigmoid(g);   y = h u
//   =>  du = dy h,   dg = dy u s (1 + g (1 - s)) = (dy u) s (1 + g - h)
Tensor swiglu(const Tensor& gate, const Tensor& up);

class MLP : public Module {
 public:
  MLP(int64_t dim, int64_t hidden_dim, bool bias = true, Generator* gen = nullptr,
      double init_std = 0.02);
  Tensor forward(const Tensor& x) const;  // x (..., dim) -> (..., dim)

  std::shared_ptr<Linear> fc;    // dim -> hidden
  std::shared_ptr<Linear> proj;  // hidden -> dim
};

class SwiGLU : public Module {
 public:
  SwiGLU(int64_t dim, int64_t intermediate_dim, Generator* gen = nullptr, double init_std = 0.02);
  Tensor forward(const Tensor& x) const;  // x (..., dim) -> (..., dim)

  int64_t intermediate_dim;
  std::shared_ptr<Linear> gate_proj;  // dim -> I
  std::shared_ptr<Linear> up_proj;    // dim -> I
  std::shared_ptr<Linear> down_proj;  // I -> dim
};

}  // namespace mnemo::nn
