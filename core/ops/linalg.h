// Matrix products without autograd.
#pragma once

#include "core/tensor.h"

namespace mnemo::core {

// a (..., M, K) @ b (..., K, N) -> (..., M, N), batch dims broadcast. 1-d operands are
// treated as a row (a) or column (b) vector and that dim is dropped from the result.
Tensor matmul(const Tensor& a, const Tensor& b);

// a (M, K) @ b (K, N) -> (M, N) f64, summed segment by segment: K is cut into segments of
// `segment` (the last may be shorter), each segment's product is computed in the inputs'
// dtype as matmul computes it, and the products are added in f64. The result is the same bits
// however a caller splits K at segment boundaries and adds the pieces (exactly, in f64): the
// split-invariant weight gradients of autograd/exact_grad.h. a and b: one floating dtype.
Tensor matmul_segment_sum(const Tensor& a, const Tensor& b, int64_t segment);

}  // namespace mnemo::core
