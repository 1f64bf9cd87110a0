// fused_linear (fused_linear.h).
#include "nn/fused_linear.h"

#include "autograd/exact_grad.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/ops/linalg.h"

namespace mnemo::nn {

using autograd::Needs;

std::vector<Tensor> fused_linear(const Tensor& x, const std::vector<Tensor>& weights) {
  MNEMO_CHECK(x.defined() && x.dim() == 2, "fused_linear: input must be (R, in), got {}",
              x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  MNEMO_CHECK(!weights.empty(), "fused_linear: no weights");
  for (size_t i = 0; i < weights.size(); ++i) {
    MNEMO_CHECK(weights[i].defined() && weights[i].dim() == 2 && weights[i].size(1) == x.size(1),
                "fused_linear: weight {} must be (out, {}), got {}", i, x.size(1),
                weights[i].defined() ? shape_str(weights[i].shape()) : std::string("undefined"));
  }
  // y = x @ [W_0; W_1; ...]^T  (R, sum out_i), computed off the tape.
  const Tensor w_all = weights.size() == 1 ? weights[0] : core::concat(weights, 0);
  const Tensor y = core::matmul(x, core::transpose(w_all, 0, 1));
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (const Tensor& w : weights) {
    const int64_t out = w.size(0);
    Tensor piece = core::narrow(y, 1, start, out);  // (R, out_i), a view
    start += out;
    if (autograd::should_record({&x, &w})) {
      // y_i = x @ W_i^T  =>  dx = dy_i @ W_i,  dW_i = dy_i^T @ x
      autograd::record(
          "fused_linear", piece, {x, w},
          [x = detach(x), w = detach(w)](const Tensor& dy, const Needs& needs) -> TensorList {
            Tensor dx, dw;
            if (needs[0]) dx = matmul(dy, w);
            if (needs[1]) dw = autograd::row_product_sum(dy, x);  // split-invariant sum
            return {dx, dw};
          });
    }
    pieces.push_back(piece);
  }
  return pieces;
}

}  // namespace mnemo::nn
