// Derivative rules for softmax, log_softmax and cross_entropy (the last with its reduction).
//
// softmax and log_softmax save their output y, from which the backward needs nothing else:
//     y = softmax(x)      =>  dx = y * (dy - sum(dy * y))
//     y = log_softmax(x)  =>  dx = dy - exp(y) * sum(dy)
// (sums along dim). Normally the rule calls the fused backward op (core::softmax_backward,
// one pass per row in a kernel). When the backward itself is being recorded (create_graph),
// the same formula is written with differentiable ops instead, so that gradients of gradients
// flow through dy.
//
// cross_entropy is fused: the forward keeps only lse (N,) per row, never the (N, C)
// probabilities, and core::cross_entropy_backward recomputes softmax(z) = exp(z - lse). The
// differentiable op accepts logits (..., C) and targets (...): it flattens them to (N, C) and
// (N,), and its reduction maps the per-row losses to the output:
//     none:  loss (...)                    dloss_n = dy_n
//     sum:   sum_n loss_n                  dloss_n = dy
//     mean:  sum_n loss_n / count          dloss_n = dy / count
// where count is the number of rows whose target is not ignore_index. If every target is
// ignored, mean is 0 / 0 = NaN (as in PyTorch) and every gradient is 0 (ignored rows never
// receive gradient).
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

using autograd::Needs;

namespace {

// softmax (log = false) or log_softmax (log = true) with its rule.
Tensor softmax_with_rule(autograd::RuleName name, const Tensor& x, int64_t dim, bool log) {
  Tensor out = log ? core::log_softmax(x, dim) : core::softmax(x, dim);
  if (autograd::should_record({&x})) {
    autograd::record(name, out, {x}, [y = detach(out), dim, log](const Tensor& dy, const Needs&) {
      if (!GradMode::is_enabled()) {  // plain backward: the fused op
        return TensorList{log ? core::log_softmax_backward(y, dy, dim)
                              : core::softmax_backward(y, dy, dim)};
      }
      // create_graph: the same math in differentiable ops (a 0-d softmax is constant)
      if (y.dim() == 0) return TensorList{mul(dy, 0.0)};
      if (log) return TensorList{sub(dy, mul(exp(y), sum(dy, {dim}, true)))};
      return TensorList{mul(y, sub(dy, sum(mul(dy, y), {dim}, true)))};
    });
  }
  return out;
}

// The per-row gradient dloss (N,) that a reduction's output gradient dy implies.
Tensor row_gradient(const Tensor& dy, Reduction reduction, int64_t N, const Tensor& count) {
  switch (reduction) {
    case Reduction::none: return reshape(dy, {N});
    case Reduction::sum: return expand(reshape(dy, {1}), {N});
    case Reduction::mean: return expand(reshape(div(dy, count), {1}), {N});
  }
  fail_internal("cross_entropy: invalid reduction {}", int(reduction));
}

}  // namespace

// y = softmax(x)  =>  dx = y * (dy - sum(dy * y))
Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_with_rule("softmax", x, dim, false);
}

// y = log_softmax(x)  =>  dx = dy - exp(y) * sum(dy)
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_with_rule("log_softmax", x, dim, true);
}

// loss_n = (1 - s)(lse_n - z_nt) + s (lse_n - mean_c z_nc)
//   =>  dz_nc = dloss_n (softmax(z_n)_c - (1 - s) [c == t_n] - s / C),  0 for ignored rows
// logits (..., C), target (...) integer ids.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double label_smoothing, Reduction reduction) {
  MNEMO_CHECK(logits.defined() && target.defined(), "cross_entropy: undefined logits or target");
  MNEMO_CHECK(logits.dim() >= 1, "cross_entropy: logits must be (..., C), got shape {}",
              shape_str(logits.shape()));
  const Shape rows_shape(logits.shape().begin(), logits.shape().end() - 1);
  MNEMO_CHECK(target.shape() == rows_shape,
              "cross_entropy: target of shape {} does not match logits of shape {} (expected {})",
              shape_str(target.shape()), shape_str(logits.shape()), shape_str(rows_shape));
  const int64_t N = numel(rows_shape), C = logits.size(-1);
  const Tensor z = core::reshape(logits, {N, C});  // (N, C)
  const Tensor t = core::reshape(target, {N});     // (N,)
  core::CrossEntropyOutput rows = core::cross_entropy(z, t, ignore_index, label_smoothing);

  // sum and mean accumulate in stats_dtype (f32 for bf16/f16 logits), where a count or a sum
  // of thousands of rows is still exact enough; the result has the logits' dtype.
  const DType acc = stats_dtype(logits.dtype());
  Tensor out, count;
  switch (reduction) {
    case Reduction::none: out = core::reshape(rows.loss, rows_shape); break;
    case Reduction::sum: out = core::to(core::sum(core::to(rows.loss, acc)), logits.dtype()); break;
    case Reduction::mean:
      // count stays a tensor on the device: no host round trip to count the targets.
      count = core::to(core::sum(ne(t, double(ignore_index))), acc);
      out = core::to(core::div(core::sum(core::to(rows.loss, acc)), count), logits.dtype());
      break;
  }
  MNEMO_CHECK(out.defined(), "cross_entropy: invalid reduction {}", int(reduction));

  if (autograd::should_record({&logits})) {
    autograd::record(
        "cross_entropy", out, {logits},
        [z = detach(z), t = detach(t), lse = rows.lse, count, logits_shape = logits.shape(),
         ignore_index, label_smoothing, reduction, N](const Tensor& dy, const Needs&) {
          const Tensor dloss = row_gradient(dy, reduction, N, count);  // (N,)
          if (!GradMode::is_enabled()) {
            return TensorList{reshape(
                core::cross_entropy_backward(z, t, lse, dloss, ignore_index, label_smoothing),
                logits_shape)};
          }
          // create_graph: dz is linear in dloss, dz = dloss[:, None] * G with G the gradient
          // for dloss = 1, so the dloss path stays differentiable.
          const Tensor G = core::cross_entropy_backward(z, t, lse, ones({N}, options_of(z)),
                                                        ignore_index, label_smoothing);
          return TensorList{reshape(mul(unsqueeze(dloss, 1), G), logits_shape)};
        });
  }
  return out;
}

}  // namespace mnemo
