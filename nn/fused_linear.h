// fused_linear: several linear maps of the same input as ONE GEMM, returned as separate pieces.
//
//   x (R, in), weights W_i (out_i, in)  ->  pieces y_i = x @ W_i^T  (R, out_i)
//
// Forward: one (R, in) @ (in, sum out_i) product over the concatenated weights (a wide GEMM
// beats several narrow ones: x is packed once), and the pieces are column views of it.
// Backward: each piece is its own tape node with linear's rule,
//     dx += dy_i @ W_i,   dW_i = dy_i^T @ x
// so no gradient is ever scattered into a zero-filled (R, sum out_i) buffer — which is what
// splitting the output of one differentiable GEMM would cost (each split piece's backward
// makes a full-width zero tensor, copies into it, and the engine adds them up).
// Used for q/k/v (attention.h) and gate/up (mlp.h), keeping HF's separate parameters.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mnemo::nn {

std::vector<Tensor> fused_linear(const Tensor& x, const std::vector<Tensor>& weights);

}  // namespace mnemo::nn
