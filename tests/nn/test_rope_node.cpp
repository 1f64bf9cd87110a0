// The recorded RoPE node (nn/rotary.h rope): values against the rotate-half composite, the
// (B, T, H, D) layout against the (B, H, T, D) one, f64 gradchecks (also of its
// self-calling rule), strided inputs.
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "nn/rotary.h"
#include "nn_test_util.h"

namespace mnemo::nn {
namespace {

using test::check_error;
using test::max_abs_diff;

TensorOptions f64_grad() { return TensorOptions().with_dtype(DType::f64).with_requires_grad(); }

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

TEST_CASE("gradcheck: rope, strided (B, T, H, D) rows and per-sequence tables") {
  const int64_t B = 2, T = 3, H = 2, D = 4;
  RotaryEmbedding rotary(D, 8);
  rotary.to(DType::f64);
  const Tensor pos = from_vector(std::vector<int64_t>{0, 2, 7, 5, 1, 1}, {B, T});
  for (const RopeTables& tables : {rotary.tables({}, 2, T), rotary.tables(pos, 0, T)}) {
    // The q columns of a wider q|k projection, as fused_linear produces them.
    const Tensor wide = randn({B * T, 2 * H * D}, f64_grad());
    const GradcheckResult r = gradcheck(
        [&](const TensorList& in) {
          const Tensor q = view(narrow(in[0], 1, 0, H * D), {B, T, H, D});
          const Tensor y = apply_rotary_bthd(q, tables);
          return y * y;  // nonlinear, so the cotangent reaching rope varies
        },
        {wide});
    CHECK_MESSAGE(r.ok, r.message);
    // The rule is rope itself (with -t), recorded too: differentiate the backward pass
    // dx = rope^T(c) with respect to the cotangent c.
    const Tensor x = randn({B, H, T, D}, f64_grad());
    const Tensor c = randn({B, H, T, D}, f64_grad());
    const GradcheckResult r2 = gradcheck(
        [&](const TensorList& in) {
          EnableGradGuard grad_mode;  // gradcheck evaluates fn under no_grad too
          return grad({apply_rotary(x, tables)}, {x}, {in[0]}, {.create_graph = true})[0];
        },
        {c});
    CHECK_MESSAGE(r2.ok, r2.message);
  }
}

}  // namespace
}  // namespace mnemo::nn
