// The data-driven gradient-check table behind every `gradcheck: <op>` test case.
//
//   TEST_GRADCHECK("mul") {
//     check_gradients({
//         {"same shape", {{3, 4}, {3, 4}}, [](const TensorList& in) { return mul(in[0], in[1]); }},
//         {"broadcast", {{3, 1}, {1, 4}}, ...},
//         {"non-contiguous", {{3, 4}, {3, 4}}, ..., .non_contiguous = {0}},
//     });
//   }
//
// TEST_GRADCHECK(op) is the doctest case "gradcheck: op" for an op of the derivative index
// (autograd/ops.h; another name does not compile). It registers op (gradcheck_ops()), and
// after its body checks that the gradchecks it ran went through op's rule (for an op with a
// rule of its own; a composite has none). tests/autograd/test_derivative_index.cpp checks that
// every op of the index has exactly one such case.
//
// Each input is an f64 leaf filled uniformly in [lo, hi] (seeded by the case label), made
// non-contiguous when listed (a transposed view for rank >= 2, a stride-2 slice otherwise),
// and requires grad unless listed in `constant`.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/ops.h"
#include "core/tensor.h"

namespace mnemo::test {

using GradcheckFn = std::function<Tensor(const TensorList&)>;

struct GradcheckCase {
  std::string label;
  std::vector<Shape> shapes;
  GradcheckFn fn;
  double lo = -2.0;
  double hi = 2.0;
  std::vector<int> non_contiguous = {};
  std::vector<int> constant = {};
  double atol = 1e-6;
  double rtol = 1e-4;
  double eps = 1e-6;  // the finite-difference step
};

// Builds the inputs of a case (exposed for tests that want the same inputs).
TensorList make_inputs(const GradcheckCase& c);

// Runs gradcheck on each case and reports failures through doctest (one message per case,
// naming the label).
void check_gradients(const std::vector<GradcheckCase>& cases);

// y multiplied by the fixed weights 1, 2, 3, ... (row-major), so that a gradient routed to
// the wrong element changes the result.
Tensor weigh(const Tensor& y);

// The backward pass of op as a function of its cotangent: in[0] is x (keep it constant),
// in[1] the cotangent w, and the function returns d(w . op(x))/dx recorded with
// create_graph. Its gradcheck checks that op's rule is itself differentiable. Grad mode is
// forced on (gradcheck evaluates its finite differences under no_grad).
GradcheckFn backward_of_dy(std::function<Tensor(const Tensor&)> op);

// The ops with a TEST_GRADCHECK case in this binary, in registration order.
const std::vector<std::string_view>& gradcheck_ops();

namespace detail {
bool register_gradcheck_op(std::string_view op);
void run_gradcheck_case(std::string_view op, void (*body)());
}  // namespace detail

}  // namespace mnemo::test

#define TEST_GRADCHECK(op) MNEMO_TEST_GRADCHECK_(op, DOCTEST_ANONYMOUS(mnemo_gradcheck_body_))
#define MNEMO_TEST_GRADCHECK_(op, body)                                                        \
  static_assert(::mnemo::autograd::in_derivative_index(op),                                    \
                "TEST_GRADCHECK(" op "): not an op of the derivative index (autograd/ops.h)"); \
  static void body();                                                                          \
  [[maybe_unused]] static const bool DOCTEST_ANONYMOUS(mnemo_gradcheck_registered_) =          \
      ::mnemo::test::detail::register_gradcheck_op(op);                                        \
  TEST_CASE("gradcheck: " op) {                                                                \
    ::mnemo::test::detail::run_gradcheck_case(op, &body);                                      \
  }                                                                                            \
  static void body()
