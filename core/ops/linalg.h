// Matrix products without autograd.
#pragma once

#include "core/tensor.h"

namespace mnemo::core {

// a (..., M, K) @ b (..., K, N) -> (..., M, N), batch dims broadcast. 1-d operands are
// treated as a row (a) or column (b) vector and that dim is dropped from the result.
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace mnemo::core
