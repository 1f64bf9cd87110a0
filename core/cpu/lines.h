// Walking a tensor line by line along one dim, for the CPU kernels that work along a dim
// (arg-reductions, cumsum, top-k, scatter/index_add), and the few helpers those kernels share
// with the reductions (kTile, is_nan, SumAcc).
//
// A "line" is the 1-d slice x[i0, .., :, .., ik] through every position of the OTHER dims.
// The other dims are merged where possible (strided.h merge_dims), so a contiguous (B, T, C)
// tensor walked along T has B rows of C adjacent lines each.
//
// Two ways to walk them, chosen by the kernel from the memory layout:
//   - line mode (for_each_line): one line at a time, good when the dim itself is contiguous
//     (stride 1), e.g. a cumsum along the last dim;
//   - tile mode (for_each_tile): a tile of adjacent lines at once, stepping along the dim in the
//     outer loop and across the tile in the inner loop, good when the dim is strided and the
//     innermost other dim is contiguous (a cumsum along dim 0 of (N, C) runs over whole rows
//     of C, vectorised, instead of striding through memory once per column).
// Each line is processed by exactly one thread in a fixed order, so results never depend on the
// thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "core/cpu/parallel.h"
#include "core/cpu/strided.h"
#include "core/dtype.h"

namespace mnemo::cpu {

// ---- shared by the kernels along a dim and the reductions ----

constexpr int64_t kTile = 2048;  // lines advanced together in tile mode (arg_reduce, cumsum)

// NaN test that is false for integer types.
template <typename A>
bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) {
    return v != v;
  } else {
    return false;
  }
}

// The accumulator of a sum (reduce and cumsum) over stored type T: f64 or i64.
template <typename T>
using SumAcc = std::conditional_t<std::is_floating_point_v<ComputeType<T>>, double, int64_t>;

// ---- lines ----

template <size_t N>
struct LineGeometry {
  RowGeometry<N> others;                   // the other dims, merged (rank >= 1)
  std::array<int64_t, N> dim_strides{};    // per operand, the step along the dim
  std::array<int64_t, N> inner_strides{};  // per operand, the step between adjacent lines
  int64_t length = 0;  // the dim's size in the shape given (operands may differ; see callers)
  int64_t lines = 0;   // number of lines = numel of the other dims
  int64_t width = 0;   // adjacent lines along the innermost other dim

  // Element offsets, in each operand, of the first element of line number `line` (row-major
  // over the other dims).
  std::array<int64_t, N> offsets(int64_t line) const {
    std::array<int64_t, N> out{};
    for (int64_t d = int64_t(others.shape.size()) - 1; d >= 0; --d) {
      const int64_t i = line % others.shape[d];
      line /= others.shape[d];
      for (size_t k = 0; k < N; ++k) out[k] += i * others.strides[k][d];
    }
    return out;
  }
};

// The lines along dim of N operands. shape gives the sizes of the other dims (shared by all
// operands) and the line length; strides[k] are operand k's strides (same rank as shape).
template <size_t N>
LineGeometry<N> line_geometry(const Shape& shape, int64_t dim,
                              const std::array<const Strides*, N>& strides) {
  Shape other_shape;
  std::array<Strides, N> other_strides;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d == dim) continue;
    other_shape.push_back(shape[d]);
    for (size_t k = 0; k < N; ++k) other_strides[k].push_back((*strides[k])[d]);
  }
  std::array<const Strides*, N> other_ptrs;
  for (size_t k = 0; k < N; ++k) other_ptrs[k] = &other_strides[k];

  LineGeometry<N> g;
  g.others = merge_dims<N>(other_shape, other_ptrs);
  for (size_t k = 0; k < N; ++k) {
    g.dim_strides[k] = (*strides[k])[dim];
    g.inner_strides[k] = g.others.strides[k].back();
  }
  g.length = shape[dim];
  g.lines = numel(other_shape);
  g.width = g.others.shape.back();
  return g;
}

// fn(offsets) for every line; lines are split over threads.
template <size_t N, typename Fn>
void for_each_line(const LineGeometry<N>& g, int64_t cost_per_line, Fn&& fn) {
  if (g.lines == 0) return;
  parallel_for(g.lines, cost_per_line, [&](int64_t begin, int64_t end) {
    for (int64_t line = begin; line < end; ++line) fn(g.offsets(line));
  });
}

// fn(offsets, n): n adjacent lines starting at offsets (the next line is inner_strides away),
// at most `tile` of them. Tiles never straddle a row of the innermost other dim.
template <size_t N, typename Fn>
void for_each_tile(const LineGeometry<N>& g, int64_t tile, int64_t cost_per_line, Fn&& fn) {
  if (g.lines == 0) return;
  const int64_t rows = g.lines / g.width;
  const int64_t tiles_per_row = (g.width + tile - 1) / tile;
  parallel_for(rows * tiles_per_row, tile * cost_per_line, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t row = task / tiles_per_row;
      const int64_t first = (task % tiles_per_row) * tile;
      fn(g.offsets(row * g.width + first), std::min(tile, g.width - first));
    }
  });
}

// Whether tile mode suits the operand k: its dim is strided while adjacent lines are closer.
template <size_t N>
bool prefers_tiles(const LineGeometry<N>& g, size_t k = 0) {
  return g.width > 1 && std::abs(g.inner_strides[k]) < std::abs(g.dim_strides[k]);
}

}  // namespace mnemo::cpu
