// Indexing, gathering and joining without autograd. Index tensors are integer (i32 or i64);
// out-of-range indices throw mnemo::Error naming the op and the index.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mnemo::core {

// x with dim replaced by index's length: out[.., i, ..] = x[.., index[i], ..]. index (n,).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// A copy of x with src added at rows index along dim (the gradient of index_select).
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// out has index's shape: out[i][j] = x[index[i][j]][j] (dim 0) or x[i][index[i][j]] (dim 1).
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// A copy of x with src[i][j] added at x[index[i][j]][j] (dim 0); index and src same shape.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// weight (V, C), ids any shape of integers in [0, V) -> (*ids.shape, C).
Tensor embedding(const Tensor& weight, const Tensor& ids);
// The gradient of embedding: (V, C) zeros with each row of grad_out added at its id.
Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_embeddings);

// Joins tensors of equal shape but for dim (dtypes promoted).
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
// Pads with value: pads lists (before, after) pairs starting from the LAST dim, as in
// PyTorch's F.pad: {left, right} pads dim -1, {left, right, top, bottom} pads dims -1 and -2.
// Negative amounts crop.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0);

}  // namespace mnemo::core

namespace mnemo {
// (*ids.shape, num_classes) with a 1 at each id. Not differentiable.
Tensor one_hot(const Tensor& ids, int64_t num_classes, DType dtype = DType::f32);
}  // namespace mnemo
