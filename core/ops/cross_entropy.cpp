// Fused cross_entropy and its explicit backward op: argument checks, contiguous inputs,
// output allocation, then one backend call each.
//
//   cross_entropy(z (N, C), t (N,)) -> loss (N,) = -log softmax(z)_t per row (with label
//       smoothing s: against the target distribution (1 - s) one_hot(t) + s / C), and
//       lse (N,) = logsumexp of each row, which the backward reuses.
//
// The math and the kernels are in core/cpu/cross_entropy.cpp. The backends receive contiguous
// tensors (the fused-op convention of core/backend_ops.def), i64 targets, and lse in
// stats_dtype (f32 for bf16/f16 logits).
#include "core/backend.h"
#include "core/ops/checks.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"

namespace mnemo::core {

namespace {

// Checks logits (N, C) and target (N,) and returns the target as contiguous i64.
Tensor check_logits_and_target(std::string_view op, const Tensor& logits, const Tensor& target,
                               double label_smoothing) {
  check_floating(op, "logits", logits);
  MNEMO_CHECK(target.defined(), "{}: undefined target", op);
  common_device(op, {&logits, &target});
  MNEMO_CHECK(logits.dim() == 2 && logits.size(1) > 0,
              "{}: expected logits of shape (N, C) with C > 0, got {}", op,
              shape_str(logits.shape()));
  MNEMO_CHECK(target.dtype() == DType::i64 || target.dtype() == DType::i32,
              "{}: target must hold class ids as i64 or i32, got {}", op, target.dtype());
  MNEMO_CHECK(target.dim() == 1 && target.size(0) == logits.size(0),
              "{}: target of shape {} does not match logits of shape {} (expected ({},))", op,
              shape_str(target.shape()), shape_str(logits.shape()), logits.size(0));
  MNEMO_CHECK(label_smoothing >= 0 && label_smoothing <= 1,
              "{}: label_smoothing must be in [0, 1], got {}", op, label_smoothing);
  return contiguous(to(target, DType::i64));
}

// A per-row tensor (N,) of the expected dtype, contiguous.
Tensor check_rows(std::string_view op, std::string_view what, const Tensor& t, int64_t N,
                  DType dtype, const Tensor& logits) {
  MNEMO_CHECK(t.defined(), "{}: undefined {}", op, what);
  common_device(op, {&logits, &t});
  MNEMO_CHECK(t.dim() == 1 && t.size(0) == N,
              "{}: {} of shape {} does not match logits of shape {} (expected ({},))", op, what,
              shape_str(t.shape()), shape_str(logits.shape()), N);
  MNEMO_CHECK(is_floating(t.dtype()), "{}: {} must be floating, got {}", op, what, t.dtype());
  return contiguous(to(t, dtype));
}

}  // namespace

// logits (N, C), target (N,) -> loss (N,) in the logits dtype, lse (N,) in stats_dtype.
CrossEntropyOutput cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                 double label_smoothing) {
  const Tensor t = check_logits_and_target("cross_entropy", logits, target, label_smoothing);
  const int64_t N = logits.size(0);
  CrossEntropyOutput out{Tensor::empty({N}, logits.dtype(), logits.device()),
                         Tensor::empty({N}, stats_dtype(logits.dtype()), logits.device())};
  if (N > 0) {
    backend_for(logits.device())
        .cross_entropy(contiguous(logits), t, ignore_index, label_smoothing, out.loss, out.lse);
  }
  return out;
}

// dloss (N,): the gradient of each row's loss -> dlogits (N, C).
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                              const Tensor& dloss, int64_t ignore_index, double label_smoothing) {
  const std::string_view op = "cross_entropy_backward";
  const Tensor t = check_logits_and_target(op, logits, target, label_smoothing);
  const int64_t N = logits.size(0);
  MNEMO_CHECK(lse.defined() && lse.dtype() == stats_dtype(logits.dtype()),
              "{}: lse must be {} for {} logits", op, stats_dtype(logits.dtype()), logits.dtype());
  const Tensor l = check_rows(op, "lse", lse, N, lse.dtype(), logits);
  const Tensor g = check_rows(op, "dloss", dloss, N, logits.dtype(), logits);
  Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  if (N > 0) {
    backend_for(logits.device())
        .cross_entropy_backward(contiguous(logits), t, l, g, ignore_index, label_smoothing,
                                dlogits);
  }
  return dlogits;
}

}  // namespace mnemo::core
