// Reductions, scans and selections without autograd. `dims` empty means all dims; negative
// dims count from the end. keepdim leaves size-1 dims in place of the reduced ones.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mnemo {

// Not differentiable.
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);  // i64

namespace core {

// Sums of bool and i32 accumulate in i64; floating sums keep the dtype.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Numerically stable log(sum(exp(x))) over dims (max subtracted first).
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Reduces grad (broadcast from shape) back to shape by summing the broadcast dims.
Tensor sum_to(const Tensor& grad, const Shape& shape);

Tensor cumsum(const Tensor& x, int64_t dim, bool reverse = false);

struct TopK {
  Tensor values;
  Tensor indices;  // i64
};
// The k largest (or smallest) entries along dim, sorted.
TopK topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);

}  // namespace core
}  // namespace mnemo
