// Derivative rules for reductions.
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

using autograd::Needs;

// y = sum over dims of x  =>  dx = dy broadcast back over the reduced dims
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = core::sum(x, dims, keepdim);
  if (autograd::should_record({&x})) {
    std::vector<int64_t> norm = normalize_dims(dims, x.dim(), "sum");
    autograd::record("sum", out, {x},
                     [shape = x.shape(), norm, keepdim](const Tensor& dy, const Needs&) {
                       Tensor g = keepdim ? dy : reshape(dy, reduced_shape(shape, norm, true));
                       return TensorList{expand(g, shape)};
                     });
  }
  return out;
}

// Gradient reduction of a broadcast: the adjoint of expand.
Tensor sum_to(const Tensor& x, const Shape& shape) {
  Tensor out = core::sum_to(x, shape);
  if (autograd::should_record({&x}) && !out.is_same(x)) {
    autograd::record("sum_to", out, {x}, [shape = x.shape()](const Tensor& dy, const Needs&) {
      return TensorList{expand(dy, shape)};
    });
  }
  return out;
}

}  // namespace mnemo
