// Derivative rules for matrix products: matmul and linear.
//
// For Y = A @ B (one matrix of a batch) and a scalar loss L with dY = dL/dY:
//     dA = dY @ B^T     (M, N) @ (N, K) -> (M, K)
//     dB = A^T @ dY     (K, M) @ (M, N) -> (K, N)
// The transposes are views (strides swapped), which the CPU GEMM reads in place. Batch dims
// that were broadcast in the forward come back with the output's batch shape; the engine sums
// them down to each input's shape (sum_to). Vectors (1-d operands) are treated as in the
// forward: a row (1, K) for a, a column (K, 1) for b.
//
// linear(x, W, b) = x @ W^T + b is the layer every MLP and attention projection calls, so it
// gets its own rule that keeps it at one GEMM per product: x (..., in) is flattened to X
// (R, in) with R the number of rows (batch * sequence), and
//     Y = X @ W^T + b,   dX = dY @ W,   dW = dY^T @ X,   db = sum over rows of dY
// dW is then a single (out, R) @ (R, in) GEMM over all rows, where a batched matmul would
// compute one product per batch item and then sum them.
#include "autograd/exact_grad.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/ops/linalg.h"

namespace mnemo {

using autograd::Needs;

// Y = A @ B  =>  dA = dY @ B^T,  dB = A^T @ dY  (batch-broadcast dims summed by the engine)
Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = core::matmul(a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record(
        "matmul", out, {a, b},
        [a = detach(a), b = detach(b)](const Tensor& dy, const Needs& needs) -> TensorList {
          // Work with matrices: a vector a is a row (1, K), a vector b a column (K, 1), and
          // dy gets back the dims the forward dropped for them.
          const Tensor a2 = a.dim() == 1 ? unsqueeze(a, 0) : a;   // (..., M, K)
          const Tensor b2 = b.dim() == 1 ? unsqueeze(b, -1) : b;  // (..., K, N)
          Tensor dy2 = dy;                                        // (..., M, N)
          if (a.dim() == 1) dy2 = unsqueeze(dy2, b.dim() == 1 ? 0 : -2);
          if (b.dim() == 1) dy2 = unsqueeze(dy2, -1);
          Tensor da, db;
          if (needs[0]) {
            da = matmul(dy2, transpose(b2, -1, -2));  // (..., M, K)
            if (a.dim() == 1) da = squeeze(da, -2);   // (..., K), summed to (K,)
          }
          if (needs[1]) {
            db = matmul(transpose(a2, -1, -2), dy2);  // (..., K, N)
            if (b.dim() == 1) db = squeeze(db, -1);   // (..., K), summed to (K,)
          }
          return {da, db};
        });
  }
  return out;
}

namespace {

// Checks linear's arguments; messages name the op and the shapes.
void check_linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MNEMO_CHECK(x.defined() && weight.defined(), "linear: undefined input or weight");
  MNEMO_CHECK(x.dim() >= 1, "linear: input must have at least one dim, got shape {}",
              shape_str(x.shape()));
  MNEMO_CHECK(weight.dim() == 2, "linear: weight must be (out, in), got shape {}",
              shape_str(weight.shape()));
  MNEMO_CHECK(x.size(-1) == weight.size(1),
              "linear: input of shape {} and weight of shape {} do not align (the input's last "
              "dim must equal the weight's in = {})",
              shape_str(x.shape()), shape_str(weight.shape()), weight.size(1));
  MNEMO_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
              "linear: bias of shape {} does not match weight of shape {} (expected ({},))",
              shape_str(bias.shape()), shape_str(weight.shape()), weight.size(0));
}

}  // namespace

// Y = X @ W^T + b  =>  dX = dY @ W,  dW = dY^T @ X,  db = sum_rows dY
//   x (..., in) flattened to X (R, in); W (out, in); b (out,) or undefined; Y (R, out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_linear(x, weight, bias);
  const int64_t in = weight.size(1), out_features = weight.size(0);
  const int64_t R = numel(Shape(x.shape().begin(), x.shape().end() - 1));
  Shape out_shape = x.shape();
  out_shape.back() = out_features;

  const Tensor X = core::reshape(x, {R, in});                 // a view if it can be
  Tensor Y = core::matmul(X, core::transpose(weight, 0, 1));  // (R, out)
  if (bias.defined()) add_(Y, bias);                          // fresh, so in place is safe
  Tensor out = core::view(Y, out_shape);

  if (autograd::should_record({&x, &weight, &bias})) {
    autograd::record("linear", out, {x, weight, bias},
                     [X = detach(X), W = detach(weight), x_shape = x.shape(), R, out_features](
                         const Tensor& dy, const Needs& needs) -> TensorList {
                       const Tensor dY = reshape(dy, {R, out_features});  // (R, out)
                       Tensor dx, dW, db;
                       if (needs[0]) dx = reshape(matmul(dY, W), x_shape);
                       // Both sums over rows are split-invariant under ExactGradGuard.
                       if (needs[1]) dW = autograd::row_product_sum(dY, X);  // (out, in)
                       if (needs[2]) db = autograd::row_sum(dY);             // (out,)
                       return {dx, dW, db};
                     });
  }
  return out;
}

}  // namespace mnemo
