// softmax and log_softmax, with their explicit backward ops: argument checks, contiguous
// inputs, output allocation, then one backend call each.
//
//   softmax(x, dim)_c     = exp(x_c) / sum_j exp(x_j)     along dim (stable: max subtracted)
//   log_softmax(x, dim)_c = x_c - logsumexp(x)
//
// The math and the kernels are in core/cpu/softmax.cpp. The backends receive contiguous
// tensors (the fused-op convention of core/backend_ops.def).
#include "core/backend.h"
#include "core/ops/checks.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"

namespace mnemo::core {

namespace {

// softmax/log_softmax forward. A 0-d x is treated as a single element (dim 0 or -1).
Tensor softmax_impl(std::string_view op, const Tensor& x, int64_t dim, bool log) {
  check_floating(op, "input", x);
  const Tensor x1 = x.dim() == 0 ? reshape(x, {1}) : x;
  const int64_t d = normalize_dim(dim, x1.dim(), op);
  Tensor out = Tensor::empty(x1.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).softmax(contiguous(x1), d, log, out);
  return x.dim() == 0 ? reshape(out, {}) : out;
}

// dx from the forward output y and its gradient dy (same shape; dy cast to y's dtype).
Tensor softmax_backward_impl(std::string_view op, const Tensor& y, const Tensor& dy, int64_t dim,
                             bool log) {
  check_floating(op, "output y", y);
  check_floating(op, "gradient dy", dy);
  common_device(op, {&y, &dy});
  MNEMO_CHECK(y.shape() == dy.shape(),
              "{}: output y of shape {} and gradient dy of shape {} differ", op,
              shape_str(y.shape()), shape_str(dy.shape()));
  const Tensor y1 = y.dim() == 0 ? reshape(y, {1}) : y;
  const Tensor dy1 = reshape(to(dy, y.dtype()), y1.shape());
  const int64_t d = normalize_dim(dim, y1.dim(), op);
  Tensor dx = Tensor::empty(y1.shape(), y.dtype(), y.device());
  if (dx.numel() > 0) {
    backend_for(y.device()).softmax_backward(contiguous(y1), contiguous(dy1), d, log, dx);
  }
  return y.dim() == 0 ? reshape(dx, {}) : dx;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_impl("softmax", x, dim, false);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_impl("log_softmax", x, dim, true);
}
Tensor softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim) {
  return softmax_backward_impl("softmax_backward", y, dy, dim, false);
}
Tensor log_softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim) {
  return softmax_backward_impl("log_softmax_backward", y, dy, dim, true);
}

}  // namespace mnemo::core
