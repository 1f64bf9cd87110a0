// Reductions over any set of dims, arg-reductions, cumsum and top-k on the CPU.
//
// reduce: the output is split over threads; each output element walks its reduced block
// (the reduced dims, merged where contiguous) with an odometer. Sums accumulate in f64 for
// floating inputs (f32 storage stays exact to its rounding), in i64 for integers.
#include <cmath>
#include <limits>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace mnemo::cpu {

namespace {

template <typename T>
using Accumulator = std::conditional_t<std::is_floating_point_v<ComputeType<T>>, double, int64_t>;

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
                        const Tensor& out) {
  // Split x's dims into kept (outer loop, matching out's layout) and reduced (inner block).
  Shape kept_shape, red_shape;
  Strides kept_strides, red_strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    (reduced ? red_shape : kept_shape).push_back(x.shape()[d]);
    (reduced ? red_strides : kept_strides).push_back(x.strides()[d]);
  }
  RowGeometry<1> block = merge_dims<1>(red_shape, {&red_strides});
  const int64_t block_numel = numel(block.shape);
  const int64_t outputs = numel(kept_shape);
  const Strides kept_contiguous = contiguous_strides(kept_shape);

  visit_dtype(x.dtype(), op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = Accumulator<T>;
    const T* xs = static_cast<const T*>(x.data_ptr());
    T* os = static_cast<T*>(out.data_ptr());
    parallel_for(outputs, block_numel, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> index(block.shape.size());
      for (int64_t o = begin; o < end; ++o) {
        int64_t base = 0, rest = o;
        for (size_t d = 0; d < kept_shape.size(); ++d) {
          base += (rest / kept_contiguous[d]) * kept_strides[d];
          rest %= kept_contiguous[d];
        }
        // Walk the block: innermost dim as a loop, the others by odometer.
        const int64_t inner = block.shape.back();
        const int64_t inner_stride = block.strides[0].back();
        const int64_t rows = block_numel / inner;
        std::fill(index.begin(), index.end(), 0);
        int64_t row_offset = base;
        Acc acc_sum = 0;
        ComputeType<T> acc_ext = ComputeType<T>(xs[base]);
        for (int64_t r = 0; r < rows; ++r) {
          const T* p = xs + row_offset;
          if (op == ReduceOp::sum) {
            Acc s = 0;
            for (int64_t i = 0; i < inner; ++i) s += Acc(ComputeType<T>(p[i * inner_stride]));
            acc_sum += s;
          } else if (op == ReduceOp::max) {
            for (int64_t i = 0; i < inner; ++i) {
              ComputeType<T> v = ComputeType<T>(p[i * inner_stride]);
              if (v > acc_ext || v != v) acc_ext = v;
              if (acc_ext != acc_ext) break;  // NaN propagates
            }
          } else {
            for (int64_t i = 0; i < inner; ++i) {
              ComputeType<T> v = ComputeType<T>(p[i * inner_stride]);
              if (v < acc_ext || v != v) acc_ext = v;
              if (acc_ext != acc_ext) break;
            }
          }
          for (int64_t d = int64_t(block.shape.size()) - 2; d >= 0; --d) {
            row_offset += block.strides[0][d];
            if (++index[d] < block.shape[d]) break;
            row_offset -= block.strides[0][d] * block.shape[d];
            index[d] = 0;
          }
        }
        os[o] = op == ReduceOp::sum ? convert<T>(acc_sum) : T(acc_ext);
      }
    });
  });
}

void CpuBackend::arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) {
  Backend::arg_reduce(op, x, dim, out);
}
void CpuBackend::cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) {
  Backend::cumsum(x, dim, reverse, out);
}
void CpuBackend::topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
                      const Tensor& indices) {
  Backend::topk(x, k, dim, largest, values, indices);
}

}  // namespace mnemo::cpu
