// gradcheck: the three rules that live in nn/ — swiglu (nn/mlp.cpp), rope (nn/rotary.cpp) and
// fused_linear (nn/fused_linear.cpp) — on the strided views the layers feed them: the column
// pieces of one fused product. Their values against the composites they replace are tested
// in tests/nn (test_swiglu_node.cpp, test_rope_node.cpp, test_fused_linear.cpp).
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "nn/fused_linear.h"
#include "nn/mlp.h"
#include "nn/rotary.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

TEST_GRADCHECK("swiglu") {
  check_gradients({
      {"the two column halves of one (3,8) product, times (3,4)",
       {{3, 8}, {3, 4}},
       [](const TensorList& in) {
         return nn::swiglu(narrow(in[0], 1, 0, 4), narrow(in[0], 1, 4, 4)) * in[1];
       }},
      {"gate only (up constant)",
       {{2, 5}, {2, 5}},
       [](const TensorList& in) { return nn::swiglu(in[0], in[1]); },
       -2,
       2,
       {},
       {1}},
  });
}

TEST_GRADCHECK("rope") {
  const int64_t B = 2, T = 3, H = 2, D = 4;
  nn::RotaryEmbedding rotary(D, 8);
  rotary.to(DType::f64);
  const Tensor pos = from_vector(std::vector<int64_t>{0, 2, 7, 5, 1, 1}, {B, T});
  std::vector<GradcheckCase> cases;
  for (const auto& [label, tables] :
       {std::pair{"offset 2", rotary.tables({}, 2, T)},
        std::pair{"per-sequence positions", rotary.tables(pos, 0, T)}}) {
    // The q columns of a wider q|k projection (B*T, 2*H*D), as fused_linear makes them, seen
    // as (B, T, H, D); squared, so that the cotangent reaching rope varies.
    cases.push_back({std::string("strided (B, T, H, D) rows, ") + label,
                     {{B * T, 2 * H * D}},
                     [=](const TensorList& in) {
                       const Tensor q = view(narrow(in[0], 1, 0, H * D), {B, T, H, D});
                       const Tensor y = nn::apply_rotary_bthd(q, tables);
                       return y * y;
                     }});
    // The rule is rope itself (with -t), recorded too: its backward as a function of dy.
    cases.push_back({std::string("create_graph: backward as a function of dy, ") + label,
                     {{B, H, T, D}, {B, H, T, D}},
                     backward_of_dy([=](const Tensor& x) { return nn::apply_rotary(x, tables); }),
                     -2,
                     2,
                     {},
                     {0}});
  }
  check_gradients(cases);
}

TEST_GRADCHECK("fused_linear") {
  check_gradients({
      {"x (4,3), W_0 (2,3), W_1 (5,3): pieces used nonlinearly",
       {{4, 3}, {2, 3}, {5, 3}},
       [](const TensorList& in) {
         const std::vector<Tensor> p = nn::fused_linear(in[0], {in[1], in[2]});
         return concat({p[0] * p[0], tanh(p[1])}, 1);
       }},
      {"one weight, x constant",
       {{3, 4}, {6, 4}},
       [](const TensorList& in) { return tanh(nn::fused_linear(in[0], {in[1]})[0]); },
       -2,
       2,
       {},
       {0}},
  });
}
