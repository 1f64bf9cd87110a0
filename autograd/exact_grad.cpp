// Split-invariant parameter gradients (see exact_grad.h).
#include "autograd/exact_grad.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/ops/linalg.h"
#include "core/ops/view.h"

namespace mnemo::autograd {

namespace {

thread_local int64_t segment_rows = 0;

// Off, or recording the backward itself (create_graph): the f64 accumulation below is done
// in place and would cut the graph, so higher-order gradients take the plain path.
bool active() {
  return segment_rows > 0 && !GradMode::is_enabled();
}

}  // namespace

int64_t exact_grad_segment_rows() {
  return segment_rows;
}

ExactGradGuard::ExactGradGuard(int64_t rows) : previous_(segment_rows) {
  MNEMO_CHECK(rows > 0, "ExactGradGuard: the segment length must be positive, got {}", rows);
  segment_rows = rows;
}

ExactGradGuard::~ExactGradGuard() {
  segment_rows = previous_;
}

DType exact_grad_dtype(DType dtype) {
  return active() && is_floating(dtype) ? DType::f64 : dtype;
}

// sum_s dY[s]^T X[s] over segments s of segment_rows rows (the last one may be shorter):
// each product in X's dtype, the same bits whichever rank or micro-batch holds segment s;
// their sum in f64 (core::matmul_segment_sum: one fused pass on the CPU).
Tensor row_product_sum(const Tensor& dY, const Tensor& X) {
  MNEMO_CHECK(dY.dim() == 2 && X.dim() == 2 && dY.size(0) == X.size(0),
              "row_product_sum: expects dY (R, out) and X (R, in), got {} and {}",
              shape_str(dY.shape()), shape_str(X.shape()));
  if (exact_grad_dtype(X.dtype()) != DType::f64 || X.dtype() == DType::f64 ||
      dY.dtype() != X.dtype()) {
    return matmul(transpose(dY, 0, 1), X);
  }
  return core::matmul_segment_sum(core::transpose(dY, 0, 1), X, segment_rows);
}

Tensor row_sum(const Tensor& dY) {
  return sum(to(dY, exact_grad_dtype(dY.dtype())), {0});
}

}  // namespace mnemo::autograd
