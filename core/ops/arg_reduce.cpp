// argmax and argmin along one dim: argument checks and output allocation (i64, keepdim
// shape, squeezed afterwards unless keepdim), then one backend call. Not differentiable.
#include "core/backend.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"
#include "core/ops/view.h"

namespace mnemo {

namespace {

Tensor arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  std::string_view name = op_name(op);
  MNEMO_CHECK(x.defined(), "{}: undefined input", name);
  if (x.dim() == 0) return zeros({}, {DType::i64, x.device()});
  int64_t d = normalize_dim(dim, x.dim(), name);
  MNEMO_CHECK(x.shape()[d] > 0, "{}: dim {} of shape {} is empty", name, d, shape_str(x.shape()));
  Tensor out = Tensor::empty(reduced_shape(x.shape(), {d}, true), DType::i64, x.device());
  if (out.numel() > 0) backend_for(x.device()).arg_reduce(op, x, d, out);
  return keepdim ? out : core::squeeze(out, d);
}

}  // namespace

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_reduce(ArgReduceOp::argmax, x, dim, keepdim);
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_reduce(ArgReduceOp::argmin, x, dim, keepdim);
}

}  // namespace mnemo
