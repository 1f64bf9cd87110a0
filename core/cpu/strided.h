// Walking strided tensors on the CPU.
//
// for_each_row visits N operands that share one shape (broadcast inputs carry stride 0) as a
// sequence of rows along the innermost dim. Adjacent dims that are laid out contiguously for
// every operand are merged first, so a contiguous tensor is one long row and the row body is
// a plain loop the compiler vectorises; a transposed or broadcast operand costs an odometer
// step per row instead of a division per element.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "core/cpu/parallel.h"
#include "core/shape.h"

namespace mnemo::cpu {

template <size_t N>
struct RowGeometry {
  Shape shape;                     // merged shape, rank >= 1
  std::array<Strides, N> strides;  // per operand, in elements
};

// Merges dims i and i+1 wherever stride[i] == stride[i+1] * shape[i+1] for every operand, and
// drops size-1 dims.
template <size_t N>
RowGeometry<N> merge_dims(const Shape& shape, const std::array<const Strides*, N>& strides) {
  RowGeometry<N> g;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool mergeable = !g.shape.empty();
    for (size_t k = 0; k < N && mergeable; ++k) {
      mergeable = g.strides[k].back() == (*strides[k])[d] * shape[d];
    }
    if (mergeable) {
      g.shape.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) g.strides[k].back() = (*strides[k])[d];
    } else {
      g.shape.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) g.strides[k].push_back((*strides[k])[d]);
    }
  }
  if (g.shape.empty()) {  // a scalar, or all dims of size 1
    g.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) g.strides[k].push_back(1);
  }
  return g;
}

// fn(offsets, n, inner_strides): offsets[k] is the element offset of the row start in operand
// k, n the row length, inner_strides[k] the step between its elements. Rows are split over
// threads when the work (numel * cost_per_element) is large.
template <size_t N, typename Fn>
void for_each_row(const Shape& shape, const std::array<const Strides*, N>& strides,
                  int64_t cost_per_element, Fn&& fn) {
  if (numel(shape) == 0) return;
  RowGeometry<N> g = merge_dims(shape, strides);
  const int64_t rank = int64_t(g.shape.size());
  const int64_t inner = g.shape.back();
  const int64_t rows = numel(g.shape) / inner;
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = g.strides[k].back();

  parallel_for(rows, inner * cost_per_element, [&](int64_t begin, int64_t end) {
    // Odometer over the outer dims, started at row `begin`.
    std::vector<int64_t> index(size_t(std::max<int64_t>(rank - 1, 0)), 0);
    std::array<int64_t, N> offsets{};
    int64_t rest = begin;
    for (int64_t d = rank - 2; d >= 0; --d) {
      index[d] = rest % g.shape[d];
      rest /= g.shape[d];
      for (size_t k = 0; k < N; ++k) offsets[k] += index[d] * g.strides[k][d];
    }
    for (int64_t row = begin; row < end; ++row) {
      fn(offsets, inner, inner_strides);
      for (int64_t d = rank - 2; d >= 0; --d) {  // advance the odometer
        for (size_t k = 0; k < N; ++k) offsets[k] += g.strides[k][d];
        if (++index[d] < g.shape[d]) break;
        for (size_t k = 0; k < N; ++k) offsets[k] -= g.strides[k][d] * g.shape[d];
        index[d] = 0;
      }
    }
  });
}

}  // namespace mnemo::cpu
