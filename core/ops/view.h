// View and memory ops without autograd (the differentiable versions are in autograd/ops.h).
//
// A view shares storage with its input: only shape, strides and offset change, no data moves.
// reshape returns a view when the strides allow it and copies otherwise; view() insists on a
// view and throws if it is impossible.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mnemo {

// A new handle on the same data without autograd history (no copy).
Tensor detach(const Tensor& x);

// Copies src into dst (same shape; dtype converted; dst may be a strided view; devices may
// differ). Not differentiable. Returns dst.
const Tensor& copy_(const Tensor& dst, const Tensor& src);
// Sets every element of dst (may be a strided view). Returns dst.
const Tensor& fill_(const Tensor& dst, double value);
void synchronize(Device device);

namespace core {

// Shape arguments may contain one -1, inferred from the element count.
Tensor view(const Tensor& x, Shape shape);     // throws if not expressible as a view
Tensor reshape(const Tensor& x, Shape shape);  // view if possible, else a contiguous copy
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
// Elements [start, start + length) of dim.
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
// Python-style x[start:end:step] along dim (negative start/end count from the end, clamped).
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
// Removes dim, keeping element index of it.
Tensor select(const Tensor& x, int64_t dim, int64_t index);
// Broadcasts size-1 dims (and new leading dims) to shape; -1 keeps a dim. Stride 0, no copy.
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x);  // all size-1 dims
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor as_strided(const Tensor& x, const Shape& shape, const Strides& strides, int64_t offset);

Tensor contiguous(const Tensor& x);  // x itself if already contiguous
Tensor clone(const Tensor& x);       // always a fresh contiguous copy
Tensor to(const Tensor& x, DType dtype);    // x itself if already that dtype
Tensor to(const Tensor& x, Device device);  // x itself if already there

}  // namespace core
}  // namespace mnemo
