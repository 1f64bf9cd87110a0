// Fused optimizer steps: one pass over a parameter, its gradient and its state, in place.
//
// These are raw ops (no autograd: an optimizer step is not differentiated). optim/ calls them
// once per parameter tensor; each backend runs them as one kernel, so a step reads and writes
// every parameter exactly once instead of once per elementwise op.
#pragma once

#include "core/backend.h"
#include "core/tensor.h"

namespace mnemo {

// AdamW (see Backend::adamw for the update). param and grad: same shape, device and dtype;
// exp_avg and exp_avg_sq: that shape, f32 for bf16/f16 params, else the param dtype; all four
// contiguous. Throws mnemo::Error naming "adamw_" and the mismatch otherwise.
void adamw_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
            const Tensor& exp_avg_sq, const AdamWParams& params);

}  // namespace mnemo
