// gradcheck: view and copy ops (their rules are inverse views, or zeros with the gradient
// written into the viewed region).
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using mnemo::test::check_gradients;

// Each output is multiplied by a fixed non-uniform weight so that a gradient routed to the
// wrong element changes the result.
namespace {
Tensor weigh(const Tensor& y) {
  Tensor w = core::reshape(arange(1, double(y.numel()) + 1, 1, {DType::f64}), y.shape());
  return mul(y, w);
}
}  // namespace

TEST_CASE("gradcheck: view ops") {
  check_gradients({
      {"view (2,3,4) -> (6,4)", {{2, 3, 4}},
       [](const TensorList& in) { return weigh(view(in[0], {6, -1})); }},
      {"reshape of a transposed input copies", {{3, 4}},
       [](const TensorList& in) { return weigh(reshape(in[0], {12})); }, -2, 2, {0}},
      {"flatten", {{2, 3, 2}}, [](const TensorList& in) { return weigh(flatten(in[0], 1)); }},
      {"transpose", {{2, 3, 4}},
       [](const TensorList& in) { return weigh(transpose(in[0], 0, 2)); }},
      {"permute", {{2, 3, 4}},
       [](const TensorList& in) { return weigh(permute(in[0], {2, 0, 1})); }},
      {"narrow", {{4, 5}}, [](const TensorList& in) { return weigh(narrow(in[0], 1, 1, 3)); },
       -2, 2, {0}},
      {"slice with step", {{7, 3}},
       [](const TensorList& in) { return weigh(slice(in[0], 0, 1, 7, 2)); }},
      {"select", {{3, 4}}, [](const TensorList& in) { return weigh(select(in[0], 1, -1)); }},
      {"expand", {{3, 1}}, [](const TensorList& in) { return weigh(expand(in[0], {2, 3, 4})); }},
      {"squeeze / unsqueeze", {{3, 1, 2}},
       [](const TensorList& in) { return weigh(unsqueeze(squeeze(in[0]), 0)); }},
      {"clone and contiguous", {{3, 4}},
       [](const TensorList& in) { return weigh(contiguous(clone(in[0]))); }, -2, 2, {0}},
  });
}
