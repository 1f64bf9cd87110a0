// gradcheck: matmul and linear, over plain, batched, broadcast, 1-d, non-contiguous and
// size-1 shapes; plus linear's forward against matmul + bias and its argument errors.
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "support/errors.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

namespace {

Tensor matmul_fn(const TensorList& in) {
  return matmul(in[0], in[1]);
}
Tensor linear_fn(const TensorList& in) {
  return linear(in[0], in[1], in[2]);
}
Tensor linear_no_bias_fn(const TensorList& in) {
  return linear(in[0], in[1]);
}

}  // namespace

TEST_GRADCHECK("matmul") {
  check_gradients({
      {"(3,4) @ (4,5)", {{3, 4}, {4, 5}}, matmul_fn},
      {"non-contiguous (transposed) a and b", {{3, 4}, {4, 5}}, matmul_fn, -2, 2, {0, 1}},
      {"batched (2,3,4) @ (2,4,5)", {{2, 3, 4}, {2, 4, 5}}, matmul_fn},
      {"broadcast batch (2,1,3,4) @ (3,4,2)", {{2, 1, 3, 4}, {3, 4, 2}}, matmul_fn},
      {"batched @ matrix (2,3,4) @ (4,5)", {{2, 3, 4}, {4, 5}}, matmul_fn},
      {"matrix @ batched (3,4) @ (2,4,5)", {{3, 4}, {2, 4, 5}}, matmul_fn},
      {"non-contiguous batched", {{2, 3, 4}, {2, 4, 2}}, matmul_fn, -2, 2, {0, 1}},
      {"vector @ matrix (4,) @ (4,5)", {{4}, {4, 5}}, matmul_fn},
      {"matrix @ vector (3,4) @ (4,)", {{3, 4}, {4}}, matmul_fn},
      {"vector @ vector (4,) @ (4,)", {{4}, {4}}, matmul_fn},
      {"vector @ batched (4,) @ (2,4,3)", {{4}, {2, 4, 3}}, matmul_fn},
      {"batched @ vector (2,3,4) @ (4,)", {{2, 3, 4}, {4}}, matmul_fn},
      {"non-contiguous vectors", {{4}, {4}}, matmul_fn, -2, 2, {0, 1}},
      {"size-1 dims (1,4) @ (4,1)", {{1, 4}, {4, 1}}, matmul_fn},
      {"inner dim 1 (3,1) @ (1,2)", {{3, 1}, {1, 2}}, matmul_fn},
      {"only b requires grad", {{3, 4}, {4, 2}}, matmul_fn, -2, 2, {}, {0}},
      {"only a requires grad", {{3, 4}, {4, 2}}, matmul_fn, -2, 2, {}, {1}},
      {"a @ a^T (one tensor, two edges)",
       {{3, 4}},
       [](const TensorList& in) { return matmul(in[0], transpose(in[0], 0, 1)); }},
  });
}

TEST_GRADCHECK("linear") {
  check_gradients({
      {"x (5,3), W (4,3), b (4,)", {{5, 3}, {4, 3}, {4}}, linear_fn},
      {"rows of a batch x (2,3,3)", {{2, 3, 3}, {4, 3}, {4}}, linear_fn},
      {"one vector x (3,)", {{3}, {4, 3}, {4}}, linear_fn},
      {"no bias", {{5, 3}, {4, 3}}, linear_no_bias_fn},
      {"non-contiguous x, W and b", {{5, 3}, {4, 3}, {4}}, linear_fn, -2, 2, {0, 1, 2}},
      {"non-contiguous batched x (2,4,3)", {{2, 4, 3}, {2, 3}, {2}}, linear_fn, -2, 2, {0}},
      {"size-1 dims x (1,1,3), W (1,3)", {{1, 1, 3}, {1, 3}, {1}}, linear_fn},
      {"x constant", {{5, 3}, {4, 3}, {4}}, linear_fn, -2, 2, {}, {0}},
      {"only x requires grad", {{5, 3}, {4, 3}, {4}}, linear_fn, -2, 2, {}, {1, 2}},
  });
}

TEST_CASE("linear: equals matmul with the transposed weight plus the bias") {
  TensorList in = mnemo::test::make_inputs({"linear forward", {{2, 5, 3}, {4, 3}, {4}}, linear_fn});
  Tensor y = linear(in[0], in[1], in[2]);
  Tensor expected = add(matmul(in[0], transpose(in[1], 0, 1)), in[2]);
  REQUIRE(y.shape() == Shape{2, 5, 4});
  std::vector<double> got = y.to_vector<double>(), want = expected.to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-14));
  CHECK(y.grad_fn_name() == "linear");
}

TEST_CASE("linear: errors name the op and the shapes") {
  Tensor x = ones({5, 3}), w = ones({4, 2}), b = ones({4});
  CHECK_THROWS_AS(linear(x, w, b), Error);
  const std::string align = test::error_message([&] { linear(x, w, b); });
  CHECK(align.find("linear") != std::string::npos);
  CHECK(align.find("(5, 3)") != std::string::npos);
  CHECK(align.find("(4, 2)") != std::string::npos);
  const std::string bias = test::error_message([&] { linear(x, ones({4, 3}), ones({3})); });
  CHECK(bias.find("linear: bias of shape (3,)") != std::string::npos);
  CHECK(test::error_message([&] { linear(x, ones({3})); }).find("linear: weight") !=
        std::string::npos);
}
