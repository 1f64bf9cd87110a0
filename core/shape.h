// Shape and stride arithmetic shared by every op: element counts, contiguous strides,
// broadcasting (NumPy rules), and dim normalisation (negative dims count from the end).
//
// Strides are in elements, not bytes. A dim of size 1 may carry any stride; an expanded
// (broadcast) dim has stride 0.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mnemo {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t numel(const Shape& shape);
Strides contiguous_strides(const Shape& shape);  // row-major
std::string shape_str(const Shape& shape);        // "(4, 3)"

// Maps dim in [-rank, rank) to [0, rank); throws naming op otherwise.
int64_t normalize_dim(int64_t dim, int64_t rank, std::string_view op);

// The broadcast of two shapes (aligned at the right); throws naming op if incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op);

// Reduction dims: normalised, sorted, unique. An empty list means "all dims".
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t rank,
                                    std::string_view op);

// The shape left after reducing dims, with size-1 placeholders if keepdim.
Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim);

// A contiguous tensor seen as (outer, D, inner) around dim: outer the product of the dims
// before it, D its size, inner the product of the dims after it (the softmax kernels' view).
struct DimSplit {
  int64_t outer = 1, D = 1, inner = 1;
};
DimSplit split_at(const Shape& shape, int64_t dim);

}  // namespace mnemo
