// fused_linear: one GEMM, pieces equal to separate linear maps, with the same gradients. Its
// f64 gradcheck is "gradcheck: fused_linear" (tests/autograd/test_gradcheck_nn_rules.cpp).
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "nn/fused_linear.h"
#include "nn_test_util.h"

namespace mnemo::nn {
namespace {

using test::check_error;
using test::max_abs_diff;

TEST_CASE("fused_linear: pieces and gradients equal separate linears") {
  const Tensor x = randn({5, 4}, TensorOptions().with_requires_grad());
  const Tensor w1 = randn({3, 4}, TensorOptions().with_requires_grad());
  const Tensor w2 = randn({2, 4}, TensorOptions().with_requires_grad());
  const std::vector<Tensor> pieces = fused_linear(x, {w1, w2});
  REQUIRE(pieces.size() == 2);
  CHECK(max_abs_diff(pieces[0], linear(x, w1)) < 1e-6);
  CHECK(max_abs_diff(pieces[1], linear(x, w2)) < 1e-6);
  // Only the second piece used, then both with different weights.
  const Tensor c1 = randn({5, 3}), c2 = randn({5, 2});
  const TensorList fused = grad({sum(pieces[0] * c1) + sum(pieces[1] * c2)}, {x, w1, w2});
  const TensorList ref = grad({sum(linear(x, w1) * c1) + sum(linear(x, w2) * c2)}, {x, w1, w2});
  for (size_t i = 0; i < 3; ++i) CHECK(max_abs_diff(fused[i], ref[i]) < 1e-5);
  // d sum(x @ w2^T) / dw2 = ones(5, 2)^T @ x: every row is the column sums of x. w1 is
  // unused and gets no gradient.
  const TensorList only_second = grad({sum(fused_linear(x, {w1, w2})[1])}, {w1, w2});
  CHECK(!only_second[0].defined());
  CHECK(max_abs_diff(only_second[1], expand(sum(x, {0}, true), {2, 4})) < 1e-5);
  check_error([&] { fused_linear(x, {randn({3, 5})}); }, {"fused_linear", "weight 0"});
}

}  // namespace
}  // namespace mnemo::nn
