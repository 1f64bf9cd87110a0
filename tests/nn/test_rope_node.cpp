// The recorded RoPE node (nn/rotary.h rope): values against the rotate-half composite, the
// (B, T, H, D) layout against the (B, H, T, D) one, and its argument errors. Its f64
// gradchecks are "gradcheck: rope" (tests/autograd/test_gradcheck_nn_rules.cpp).
#include <doctest/doctest.h>

#include "nn/rotary.h"
#include "nn_test_util.h"

namespace mnemo::nn {
namespace {

using test::check_error;
using test::max_abs_diff;

TEST_CASE("rope node: equals x * cos + rotate_half(x) * sin in both layouts") {
  const int64_t B = 2, H = 3, T = 4, D = 6;
  RotaryEmbedding rotary(D, 16);
  const Tensor pos = from_vector(std::vector<int64_t>{3, 1, 4, 1, 5, 9, 2, 6}, {B, T});
  for (const RopeTables& tables : {rotary.tables({}, 5, T), rotary.tables(pos, 0, T)}) {
    const Tensor x = randn({B, H, T, D});
    const Tensor reference = x * tables.cos + rotate_half(x) * tables.sin;
    CHECK(max_abs_diff(apply_rotary(x, tables), reference) < 1e-6);
    // Undefined sin_signed is derived from sin.
    CHECK(max_abs_diff(apply_rotary(x, {tables.cos, tables.sin, Tensor()}), reference) < 1e-6);
    const Tensor x_bthd = contiguous(permute(x, {0, 2, 1, 3}));
    const Tensor y_bthd = apply_rotary_bthd(x_bthd, tables);
    CHECK(y_bthd.is_contiguous());
    CHECK(max_abs_diff(permute(y_bthd, {0, 2, 1, 3}), reference) < 1e-6);
  }
  check_error([&] { rope(randn({2, 5}), randn({2, 5}), randn({2, 5})); }, {"rope", "even"});
  check_error([&] { rope(randn({2, 4}), randn({2, 4}), randn({3, 4})); }, {"rope"});
}

}  // namespace
}  // namespace mnemo::nn
