// Builds OffsetCalc (cuda/offset_calc.h) from merged dims.
#include "cuda/offset_calc.h"

#include "core/cpu/strided.h"
#include "core/error.h"

namespace mnemo::cuda {

template <int N>
OffsetCalc<N> make_offset_calc(const Shape& shape, const std::array<const Tensor*, N>& operands) {
  std::array<const Strides*, size_t(N)> strides;
  for (int k = 0; k < N; ++k) strides[size_t(k)] = &operands[size_t(k)]->strides();
  const cpu::RowGeometry<size_t(N)> g = cpu::merge_dims<size_t(N)>(shape, strides);
  const int rank = int(g.shape.size());
  MNEMO_ASSERT(rank <= kMaxDims,
               "cuda: a strided view of shape {} has {} dims that cannot be merged (at most {})",
               shape_str(shape), rank, kMaxDims);
  OffsetCalc<N> calc;
  calc.rank = rank;
  for (int d = 0; d < rank; ++d) {  // merge_dims lists dims outermost first; we want innermost
    const size_t from = size_t(rank - 1 - d);
    calc.sizes[d] = g.shape[from];
    for (int k = 0; k < N; ++k) calc.strides[k][d] = g.strides[size_t(k)][from];
  }
  return calc;
}

template OffsetCalc<1> make_offset_calc<1>(const Shape&, const std::array<const Tensor*, 1>&);
template OffsetCalc<2> make_offset_calc<2>(const Shape&, const std::array<const Tensor*, 2>&);
template OffsetCalc<3> make_offset_calc<3>(const Shape&, const std::array<const Tensor*, 3>&);
template OffsetCalc<4> make_offset_calc<4>(const Shape&, const std::array<const Tensor*, 4>&);

}  // namespace mnemo::cuda
