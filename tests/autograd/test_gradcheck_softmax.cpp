// gradcheck: softmax, log_softmax and cross_entropy, over several dims, shapes, non-contiguous
// inputs and size-1 dims; cross_entropy with ignored rows, label smoothing, every reduction
// and (..., C) logits. The "create_graph" cases check the rules' differentiable form: the
// gradient computed with create_graph is itself checked with respect to the cotangent.
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

namespace {

// The sweep of shapes and dims shared by softmax and log_softmax.
std::vector<GradcheckCase> softmax_cases(Tensor (*op)(const Tensor&, int64_t)) {
  auto along = [op](int64_t dim) -> GradcheckFn {
    return [op, dim](const TensorList& in) { return op(in[0], dim); };
  };
  return {
      {"(3,4) dim -1", {{3, 4}}, along(-1)},
      {"(3,4) dim 0", {{3, 4}}, along(0)},
      {"(2,3,4) dim 1", {{2, 3, 4}}, along(1)},
      {"non-contiguous (4,3) dim -1", {{4, 3}}, along(-1), -2, 2, {0}},
      {"non-contiguous (4,3) dim 0", {{4, 3}}, along(0), -2, 2, {0}},
      {"non-contiguous (6,)", {{6}}, along(0), -2, 2, {0}},
      {"size-1 dims (1,5,1) dim 1", {{1, 5, 1}}, along(1)},
      {"size-1 softmax dim (3,1) dim 1", {{3, 1}}, along(1)},
      {"0-d", {{}}, along(-1)},
      {"create_graph: backward as a function of dy",
       {{3, 5}, {3, 5}},
       backward_of_dy([op](const Tensor& x) { return op(x, -1); }),
       -2,
       2,
       {},
       {0}},
  };
}

Tensor targets(std::vector<int64_t> ids, Shape shape) {
  return from_vector(ids, shape);
}

// cross_entropy with fixed targets and options, as a gradcheck function of the logits.
GradcheckFn ce(Tensor target, int64_t ignore_index, double smoothing, Reduction reduction) {
  return [=](const TensorList& in) {
    return cross_entropy(in[0], target, ignore_index, smoothing, reduction);
  };
}

}  // namespace

TEST_GRADCHECK("softmax") {
  check_gradients(softmax_cases(&softmax));
}

TEST_GRADCHECK("log_softmax") {
  check_gradients(softmax_cases(&log_softmax));
}

TEST_GRADCHECK("cross_entropy") {
  const Tensor t5 = targets({1, -100, 0, 3, 3}, {5});
  const Tensor t23 = targets({0, 3, -100, 1, 2, 2}, {2, 3});
  const Tensor t5_i32 = from_vector(std::vector<int32_t>{2, 0, 1, -100, 3}, {5});
  const Tensor none_ignored = targets({1, 2, 0, 3, 3}, {5});
  const Tensor t5_ignore3 = targets({1, 3, 0, 3, 2}, {5});  // ignore_index 3: rows 1 and 3
  const Tensor all_ignored = targets({-100, -100, -100}, {3});
  check_gradients({
      {"(5,4) mean, one ignored row", {{5, 4}}, ce(t5, -100, 0, Reduction::mean)},
      {"(5,4) sum", {{5, 4}}, ce(t5, -100, 0, Reduction::sum)},
      {"(5,4) none", {{5, 4}}, ce(t5, -100, 0, Reduction::none)},
      {"label smoothing 0.2, mean", {{5, 4}}, ce(t5, -100, 0.2, Reduction::mean)},
      {"label smoothing 0.3, none", {{5, 4}}, ce(t5, -100, 0.3, Reduction::none)},
      {"custom ignore_index 3 (two rows)", {{5, 4}}, ce(t5_ignore3, 3, 0.1, Reduction::mean)},
      {"no row ignored", {{5, 4}}, ce(none_ignored, -100, 0, Reduction::mean)},
      {"(2,3,4) logits, (2,3) targets, mean", {{2, 3, 4}}, ce(t23, -100, 0, Reduction::mean)},
      {"(2,3,4) logits, none", {{2, 3, 4}}, ce(t23, -100, 0.1, Reduction::none)},
      {"(2,3,4) logits, sum", {{2, 3, 4}}, ce(t23, -100, 0, Reduction::sum)},
      {"non-contiguous logits", {{5, 4}}, ce(t5, -100, 0.1, Reduction::mean), -2, 2, {0}},
      {"non-contiguous (2,3,4) logits", {{2, 3, 4}}, ce(t23, -100, 0, Reduction::sum), -2, 2, {0}},
      {"i32 targets", {{5, 4}}, ce(t5_i32, -100, 0, Reduction::mean)},
      {"size-1 dims: one class (3,1)",
       {{3, 1}},
       ce(targets({0, 0, -100}, {3}), -100, 0.5, Reduction::sum)},
      {"(4,) logits, 0-d target", {{4}}, ce(targets({2}, {}), -100, 0, Reduction::mean)},
      {"every row ignored, sum", {{3, 4}}, ce(all_ignored, -100, 0, Reduction::sum)},
      {"create_graph: backward as a function of dloss",
       {{5, 4}, {5}},
       backward_of_dy(
           [t5](const Tensor& z) { return cross_entropy(z, t5, -100, 0.1, Reduction::none); }),
       -2,
       2,
       {},
       {0}},
  });
}
