// GRUCell: one step of a gated recurrent unit, with PyTorch's equations and parameter names.
//
//   r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//   z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//   n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//   h' = (1 - z) * n + z * h
// weight_ih (3H, in) and weight_hh (3H, H) stack the (r, z, n) blocks in that order; the
// biases (3H,) likewise. Like PyTorch, every parameter starts uniform in (-1/sqrt(H), 1/sqrt(H)).
#pragma once

#include "core/ops/random.h"
#include "nn/module.h"

namespace mnemo::nn {

class GRUCell : public Module {
 public:
  GRUCell(int64_t input_size, int64_t hidden_size, bool bias = true, Generator* gen = nullptr);
  // x (B, in), h (B, H) or undefined (zeros) -> h' (B, H)
  Tensor forward(const Tensor& x, const Tensor& h = {}) const;

  int64_t input_size, hidden_size;
  Tensor weight_ih;  // (3H, in)
  Tensor weight_hh;  // (3H, H)
  Tensor bias_ih;    // (3H,) or undefined
  Tensor bias_hh;    // (3H,) or undefined
};

}  // namespace mnemo::nn
