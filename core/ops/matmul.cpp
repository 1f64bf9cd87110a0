// Matrix products: argument checks, 1-d promotion and batch broadcasting, then one backend call.
//
// matmul follows NumPy/PyTorch semantics:
//   (M, K) @ (K, N)             -> (M, N)
//   (..., M, K) @ (..., K, N)   -> (..., M, N), batch dims broadcast (NumPy rules)
//   (K,) @ (..., K, N)          -> (..., N)      a is a row vector, that dim is dropped
//   (..., M, K) @ (K,)          -> (..., M)      b is a column vector, that dim is dropped
//   (K,) @ (K,)                 -> ()            the dot product
// The backend always sees matrices: the op layer turns vectors into (1, K) / (K, 1) views and
// expands the batch dims of both operands to the output's (stride 0, no copy), so a kernel
// only has to walk one batch index.
#include "core/ops/linalg.h"

#include "core/backend.h"
#include "core/ops/view.h"

namespace mnemo::core {

namespace {

// The broadcast of two batch shapes, or an error naming both operand shapes.
Shape broadcast_batch(const Shape& a_batch, const Shape& b_batch, const Tensor& a,
                      const Tensor& b) {
  const size_t rank = std::max(a_batch.size(), b_batch.size());
  Shape out(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    // Align at the right: dim i of the output is dim i - (rank - size) of each operand.
    int64_t da = i + a_batch.size() >= rank ? a_batch[i + a_batch.size() - rank] : 1;
    int64_t db = i + b_batch.size() >= rank ? b_batch[i + b_batch.size() - rank] : 1;
    MNEMO_CHECK(da == db || da == 1 || db == 1,
                "matmul: batch dims of shapes {} and {} do not broadcast", shape_str(a.shape()),
                shape_str(b.shape()));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  MNEMO_CHECK(a.defined() && b.defined(), "matmul: undefined operand");
  common_device("matmul", {&a, &b});
  MNEMO_CHECK(a.dim() >= 1 && b.dim() >= 1,
              "matmul: both operands need at least one dim, got shapes {} and {}",
              shape_str(a.shape()), shape_str(b.shape()));
  MNEMO_CHECK(is_floating(a.dtype()) && is_floating(b.dtype()),
              "matmul: expected floating tensors, got {} of shape {} and {} of shape {}", a.dtype(),
              shape_str(a.shape()), b.dtype(), shape_str(b.shape()));
  const DType dtype = promote(a.dtype(), b.dtype());

  // Vectors become matrices; remember which dims to drop from the result.
  const bool a_vector = a.dim() == 1, b_vector = b.dim() == 1;
  Tensor a2 = to(a_vector ? unsqueeze(a, 0) : a, dtype);  // (..., M, K)
  Tensor b2 = to(b_vector ? unsqueeze(b, 1) : b, dtype);  // (..., K, N)
  const int64_t M = a2.size(-2), K = a2.size(-1), N = b2.size(-1);
  MNEMO_CHECK(b2.size(-2) == K, "matmul: shapes {} and {} do not align", shape_str(a.shape()),
              shape_str(b.shape()));

  Shape batch = broadcast_batch(Shape(a2.shape().begin(), a2.shape().end() - 2),
                                Shape(b2.shape().begin(), b2.shape().end() - 2), a, b);
  Shape a_shape = batch, b_shape = batch, out_shape = batch;
  a_shape.insert(a_shape.end(), {M, K});
  b_shape.insert(b_shape.end(), {K, N});
  out_shape.insert(out_shape.end(), {M, N});

  Tensor out = Tensor::empty(out_shape, dtype, a.device());
  if (out.numel() > 0) {
    if (K == 0) {
      fill_(out, 0);  // an empty sum
    } else {
      backend_for(a.device()).matmul(expand(a2, a_shape), expand(b2, b_shape), out);
    }
  }
  if (a_vector) out = squeeze(out, -2);
  if (b_vector) out = squeeze(out, -1);
  return out;
}

Tensor matmul_segment_sum(const Tensor& a, const Tensor& b, int64_t segment) {
  MNEMO_CHECK(a.defined() && b.defined(), "matmul_segment_sum: undefined operand");
  common_device("matmul_segment_sum", {&a, &b});
  MNEMO_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0),
              "matmul_segment_sum: expects a (M, K) and b (K, N), got shapes {} and {}",
              shape_str(a.shape()), shape_str(b.shape()));
  MNEMO_CHECK(is_floating(a.dtype()) && a.dtype() == b.dtype(),
              "matmul_segment_sum: expects two floating tensors of one dtype, got {} and {}",
              a.dtype(), b.dtype());
  MNEMO_CHECK(segment > 0, "matmul_segment_sum: the segment length must be positive, got {}",
              segment);
  Tensor out = Tensor::empty({a.size(0), b.size(1)}, DType::f64, a.device());
  fill_(out, 0);
  if (out.numel() > 0 && a.size(1) > 0) {
    backend_for(a.device()).matmul_segment_sum(a, b, segment, out);
  }
  return out;
}

}  // namespace mnemo::core
