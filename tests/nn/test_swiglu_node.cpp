// The recorded SwiGLU gate (nn/mlp.h swiglu): values and gradients against silu(g) * u built
// from the separate ops. Its f64 gradcheck is "gradcheck: swiglu"
// (tests/autograd/test_gradcheck_nn_rules.cpp).
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "nn/mlp.h"
#include "nn_test_util.h"

namespace mnemo::nn {
namespace {

using test::check_error;
using test::max_abs_diff;

TEST_CASE("swiglu node: equals silu(g) * u, with the same gradients") {
  const Tensor g = randn({6, 5}, TensorOptions().with_requires_grad());
  const Tensor u = randn({6, 5}, TensorOptions().with_requires_grad());
  const Tensor c = randn({6, 5});
  CHECK(max_abs_diff(swiglu(g, u), silu(g) * u) < 1e-6);
  const TensorList fused = grad({sum(swiglu(g, u) * c)}, {g, u});
  const TensorList ref = grad({sum(silu(g) * u * c)}, {g, u});
  CHECK(max_abs_diff(fused[0], ref[0]) < 1e-5);
  CHECK(max_abs_diff(fused[1], ref[1]) < 1e-5);
  // Only up needs a gradient: gate gets none.
  const TensorList only_up = grad({sum(swiglu(detach(g), u))}, {u});
  CHECK(max_abs_diff(only_up[0], silu(detach(g))) < 1e-6);
  check_error([&] { swiglu(randn({2, 3}), randn({3, 2})); }, {"swiglu", "one shape"});
}

}  // namespace
}  // namespace mnemo::nn
