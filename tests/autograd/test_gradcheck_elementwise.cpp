// gradcheck: the elementwise ops, over plain, broadcast, non-contiguous and size-1 shapes.
// (autograd/rules_elementwise.cpp; the scalar forms x + s and x * s record add and mul.)
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

namespace {

// The standard shape sweep for a binary op.
std::vector<GradcheckCase> binary_cases(std::function<Tensor(const Tensor&, const Tensor&)> op,
                                        double lo = -2, double hi = 2) {
  auto fn = [op](const TensorList& in) { return op(in[0], in[1]); };
  return {
      {"same shape (3,4)", {{3, 4}, {3, 4}}, fn, lo, hi},
      {"broadcast (3,1) with (1,4)", {{3, 1}, {1, 4}}, fn, lo, hi},
      {"broadcast (2,3,4) with (4,)", {{2, 3, 4}, {4}}, fn, lo, hi},
      {"scalar (0-d) with (5,)", {{}, {5}}, fn, lo, hi},
      {"non-contiguous (4,3) with (4,3)", {{4, 3}, {4, 3}}, fn, lo, hi, {0, 1}},
      {"size-1 dims (1,3,1) with (2,1,1)", {{1, 3, 1}, {2, 1, 1}}, fn, lo, hi},
  };
}

// The standard shape sweep for a unary op.
std::vector<GradcheckCase> unary_cases(std::function<Tensor(const Tensor&)> op, double lo = -2,
                                       double hi = 2) {
  auto fn = [op](const TensorList& in) { return op(in[0]); };
  return {
      {"(3,4)", {{3, 4}}, fn, lo, hi},
      {"0-d", {{}}, fn, lo, hi},
      {"non-contiguous (4,3)", {{4, 3}}, fn, lo, hi, {0}},
      {"non-contiguous (5,)", {{5}}, fn, lo, hi, {0}},
      {"size-1 dims (1,5,1)", {{1, 5, 1}}, fn, lo, hi},
  };
}

}  // namespace

TEST_GRADCHECK("add") {
  check_gradients(binary_cases([](const Tensor& a, const Tensor& b) { return add(a, b); }));
  check_gradients(unary_cases([](const Tensor& x) { return x + 3.5; }));
}
TEST_GRADCHECK("sub") {
  check_gradients(binary_cases([](const Tensor& a, const Tensor& b) { return sub(a, b); }));
  check_gradients(unary_cases([](const Tensor& x) { return 2.0 - x; }));
}
TEST_GRADCHECK("mul") {
  check_gradients(binary_cases([](const Tensor& a, const Tensor& b) { return mul(a, b); }));
  check_gradients(unary_cases([](const Tensor& x) { return x * -1.5; }));
  // The same tensor on both sides: gradients from two edges must add up.
  check_gradients({{"x * x", {{3, 2}}, [](const TensorList& in) { return mul(in[0], in[0]); }}});
}
TEST_GRADCHECK("div") {
  check_gradients(binary_cases([](const Tensor& a, const Tensor& b) { return div(a, b); }, 0.5, 2));
  check_gradients(unary_cases([](const Tensor& x) { return 3.0 / x; }, 0.5, 2));
}
TEST_GRADCHECK("neg") {
  check_gradients(unary_cases([](const Tensor& x) { return neg(x); }));
}
TEST_GRADCHECK("affine") {
  check_gradients(unary_cases([](const Tensor& x) { return affine(x, -1.5, 0.25); }));
  check_gradients(unary_cases([](const Tensor& x) { return affine(x, 0.0, 3.0); }));  // flat
}
TEST_GRADCHECK("pow") {
  check_gradients(binary_cases([](const Tensor& a, const Tensor& b) { return pow(a, b); }, 0.5, 2));
  check_gradients(unary_cases([](const Tensor& x) { return pow(x, 3.0); }));
  check_gradients(unary_cases([](const Tensor& x) { return pow(x, -0.5); }, 0.5, 2));
}
TEST_GRADCHECK("exp") {
  check_gradients(unary_cases([](const Tensor& x) { return exp(x); }));
}
TEST_GRADCHECK("log") {
  check_gradients(unary_cases([](const Tensor& x) { return log(x); }, 0.2, 3));
}
TEST_GRADCHECK("sqrt") {
  check_gradients(unary_cases([](const Tensor& x) { return sqrt(x); }, 0.2, 3));
}
TEST_GRADCHECK("rsqrt") {
  check_gradients(unary_cases([](const Tensor& x) { return rsqrt(x); }, 0.2, 3));
}
TEST_GRADCHECK("abs") {
  // Away from the kink at 0, where the derivative does not exist.
  check_gradients(unary_cases([](const Tensor& x) { return abs(x); }, 0.1, 2));
  check_gradients(unary_cases([](const Tensor& x) { return abs(x); }, -2, -0.1));
}
TEST_GRADCHECK("clamp") {
  // Values in [-2, 2] clamped to [-1, 0.5]: both the flat and the identity parts.
  check_gradients(unary_cases([](const Tensor& x) { return clamp(x, -1, 0.5); }));
}
TEST_GRADCHECK("tanh") {
  check_gradients(unary_cases([](const Tensor& x) { return tanh(x); }));
}
TEST_GRADCHECK("sigmoid") {
  check_gradients(unary_cases([](const Tensor& x) { return sigmoid(x); }));
}
TEST_GRADCHECK("relu") {
  check_gradients(unary_cases([](const Tensor& x) { return relu(x); }));
}
TEST_GRADCHECK("gelu") {
  check_gradients(unary_cases([](const Tensor& x) { return gelu(x); }));
  check_gradients(unary_cases([](const Tensor& x) { return gelu(x, true); }));
}
TEST_GRADCHECK("silu") {
  check_gradients(unary_cases([](const Tensor& x) { return silu(x); }));
}
TEST_GRADCHECK("erf") {
  check_gradients(unary_cases([](const Tensor& x) { return erf(x); }));
  check_gradients(unary_cases([](const Tensor& x) { return erf(x); }, -4, 4));  // the flat tails
}
TEST_GRADCHECK("softplus") {
  check_gradients(unary_cases([](const Tensor& x) { return softplus(x); }, -5, 5));
}
TEST_GRADCHECK("where") {
  auto fn = [](const TensorList& in) { return where(gt(in[0], 0.0), in[1], in[2]); };
  check_gradients({
      {"(3,4) all", {{3, 4}, {3, 4}, {3, 4}}, fn},
      {"broadcast cond (3,1), a (1,4), b ()", {{3, 1}, {1, 4}, {}}, fn},
      {"non-contiguous", {{4, 3}, {4, 3}, {4, 3}}, fn, -2, 2, {1, 2}},
  });
}
TEST_GRADCHECK("maximum") {
  check_gradients(binary_cases([](const Tensor& a, const Tensor& b) { return maximum(a, b); }));
}
TEST_GRADCHECK("minimum") {
  check_gradients(binary_cases([](const Tensor& a, const Tensor& b) { return minimum(a, b); }));
}
