// The data-driven gradient-check table used by every `gradcheck: <op>` test case.
//
//   TEST_CASE("gradcheck: mul") {
//     check_gradients({
//         {"same shape", {{3, 4}, {3, 4}}, [](const TensorList& in) { return mul(in[0], in[1]); }},
//         {"broadcast", {{3, 1}, {1, 4}}, ...},
//         {"non-contiguous", {{3, 4}, {3, 4}}, ..., .non_contiguous = {0}},
//     });
//   }
//
// Each input is an f64 leaf filled uniformly in [lo, hi] (seeded by the case label), made
// non-contiguous when listed (a transposed view for rank >= 2, a stride-2 slice otherwise),
// and requires grad unless listed in `constant`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mnemo::test {

struct GradcheckCase {
  std::string label;
  std::vector<Shape> shapes;
  std::function<Tensor(const TensorList&)> fn;
  double lo = -2.0;
  double hi = 2.0;
  std::vector<int> non_contiguous = {};
  std::vector<int> constant = {};
  double atol = 1e-6;
  double rtol = 1e-4;
};

// Builds the inputs of a case (exposed for tests that want the same inputs).
TensorList make_inputs(const GradcheckCase& c);

// Runs gradcheck on each case and reports failures through doctest (one SUBCASE-like
// message per case, naming the label).
void check_gradients(const std::vector<GradcheckCase>& cases);

}  // namespace mnemo::test
