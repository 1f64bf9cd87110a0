// Global-norm gradient clipping (as torch.nn.utils.clip_grad_norm_ with p = 2).
//
// The global norm is the L2 norm of all gradients taken together, as if concatenated into one
// vector: sqrt(sum over parameters of sum over elements of grad^2). Clipping rescales every
// gradient by the same factor, so the update keeps its direction and only its length is
// capped:
//
//   factor = max_norm / (norm + 1e-6)   when norm > max_norm, else 1 (no change)
//
// Parameters with an undefined gradient are skipped. The sum is accumulated in f64 in a fixed
// order (fixed-size blocks, block sums added in order), so the result does not depend on the
// thread count. On the CPU each gradient is read once in place (no temporary tensors); on
// other devices it is one f64 sum of squares per tensor through core ops.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mnemo::optim {

// The L2 norm over every defined gradient of params.
double global_grad_norm(const std::vector<Tensor>& params);

// The factor clip_grad_norm would scale by: max_norm / (norm + 1e-6) if norm > max_norm,
// else 1. Pass it to Optimizer::step(grad_scale) to clip without touching the gradients.
double clip_factor(double norm, double max_norm);

// Scales every defined gradient in place by clip_factor(norm, max_norm) and returns the norm
// before clipping. max_norm must be finite and > 0. A non-finite norm (inf/NaN gradients) is
// returned as is and leaves the gradients untouched: check it and skip the step.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace mnemo::optim
