#include "core/shape.h"

#include <algorithm>

#include "core/error.h"

namespace mnemo {

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Strides contiguous_strides(const Shape& shape) {
  Strides strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

std::string shape_str(const Shape& shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

int64_t normalize_dim(int64_t dim, int64_t rank, std::string_view op) {
  int64_t lo = rank == 0 ? -1 : -rank;
  int64_t hi = rank == 0 ? 0 : rank - 1;
  MNEMO_CHECK(dim >= lo && dim <= hi, "{}: dim {} out of range for a tensor of rank {}", op, dim,
              rank);
  return dim < 0 ? dim + std::max<int64_t>(rank, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    MNEMO_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} cannot be broadcast", op,
                shape_str(a), shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t rank,
                                    std::string_view op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < rank; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(normalize_dim(d, rank, op));
  std::sort(out.begin(), out.end());
  MNEMO_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(),
              "{}: dim listed twice in [{}]", op, fmt::join(dims, ", "));
  if (rank == 0) out.clear();  // a 0-d tensor reduces over nothing
  return out;
}

Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!reduced) {
      out.push_back(shape[d]);
    } else if (keepdim) {
      out.push_back(1);
    }
  }
  return out;
}

DimSplit split_at(const Shape& shape, int64_t dim) {
  DimSplit s;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d < dim) s.outer *= shape[d];
    if (d == dim) s.D = shape[d];
    if (d > dim) s.inner *= shape[d];
  }
  return s;
}

}  // namespace mnemo
