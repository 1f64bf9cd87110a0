// Reductions (sum, amax, amin over dims): argument checks, dim normalisation (negative dims,
// an empty list meaning all dims) and output allocation, then one backend call; and the
// reductions composed from other ops (logsumexp, sum_to).
//
// Backends always write the keepdim shape (size 1 at each reduced dim), so a kernel indexes
// input and output with the same rank; dropping the dims afterwards is a free view. Sums of
// integers and bools are computed in i64 (a sum of i32 cannot overflow 32 bits); floating ones
// keep their dtype (the CPU kernels accumulate in f64). logsumexp is composed from the other
// ops here, so every backend has it once it has max, sum, exp and log.
#include "core/ops/reduce.h"

#include <limits>

#include "core/backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"

namespace mnemo {

namespace {

// Runs a ReduceOp over dims into a keepdim-shaped output, then drops the dims unless keepdim.
Tensor reduce_dims(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim,
                   DType out_dtype) {
  std::string_view name = op_name(op);
  MNEMO_CHECK(x.defined(), "{}: undefined input", name);
  std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), name);
  for (int64_t d : dims) {
    MNEMO_CHECK(op == ReduceOp::sum || x.shape()[d] > 0,
                "{}: cannot reduce over dim {} of size 0 (shape {})", name, d,
                shape_str(x.shape()));
  }
  Tensor input = core::to(x, out_dtype);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), dims, true), out_dtype, x.device());
  if (dims.empty()) {
    copy_(out, input);  // nothing to reduce (0-d input)
  } else if (x.numel() == 0) {
    fill_(out, 0);
  } else {
    backend_for(x.device()).reduce(op, input, dims, out);
  }
  return keepdim ? out : core::view(out, reduced_shape(x.shape(), dims, false));
}

}  // namespace

namespace core {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  MNEMO_CHECK(x.defined(), "sum: undefined input");
  DType dtype = is_floating(x.dtype()) ? x.dtype() : DType::i64;
  return reduce_dims(ReduceOp::sum, x, dims, keepdim, dtype);
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  MNEMO_CHECK(x.defined(), "max: undefined input");
  return reduce_dims(ReduceOp::max, x, dims, keepdim, x.dtype());
}

Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  MNEMO_CHECK(x.defined(), "min: undefined input");
  return reduce_dims(ReduceOp::min, x, dims, keepdim, x.dtype());
}

// lse = m + log(sum(exp(x - m))), m = max over dims (0 where m is infinite, so that rows of
// all -inf give -inf rather than NaN).
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  MNEMO_CHECK(x.defined(), "logsumexp: undefined input");
  MNEMO_CHECK(is_floating(x.dtype()), "logsumexp: expected a floating tensor, got {} of shape {}",
              x.dtype(), shape_str(x.shape()));
  std::vector<int64_t> norm = normalize_dims(dims, x.dim(), "logsumexp");
  Tensor m = amax(x, norm, true);
  Tensor finite_m = where(logical_and(gt(m, -std::numeric_limits<double>::infinity()),
                                      lt(m, std::numeric_limits<double>::infinity())),
                          m, zeros_like(m));
  Tensor s = sum(exp(sub(x, finite_m)), norm, true);
  Tensor out = add(log(s), finite_m);
  return keepdim ? out : view(out, reduced_shape(x.shape(), norm, false));
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  MNEMO_CHECK(grad.dim() >= int64_t(shape.size()),
              "sum_to: cannot reduce shape {} to the larger rank of {}", shape_str(grad.shape()),
              shape_str(shape));
  size_t lead = size_t(grad.dim()) - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < size_t(grad.dim()); ++i) {
    if (i < lead) {
      dims.push_back(int64_t(i));
    } else if (shape[i - lead] == 1 && grad.shape()[i] != 1) {
      dims.push_back(int64_t(i));
    } else {
      MNEMO_CHECK(shape[i - lead] == grad.shape()[i], "sum_to: shape {} does not broadcast to {}",
                  shape_str(shape), shape_str(grad.shape()));
    }
  }
  if (dims.empty()) return view(grad, shape);
  return reshape(sum(grad, dims, true), shape);
}

}  // namespace core
}  // namespace mnemo
