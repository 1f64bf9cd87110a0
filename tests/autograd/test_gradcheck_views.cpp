// gradcheck: view and copy ops (autograd/rules_view.cpp). Their rules are inverse views, or
// zeros with the gradient written into the viewed region. Each output is weighed (a fixed
// non-uniform weight per element) so that a gradient routed to the wrong element shows.
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

TEST_GRADCHECK("view") {
  check_gradients({
      {"(2,3,4) -> (6,4)",
       {{2, 3, 4}},
       [](const TensorList& in) {
         return weigh(view(in[0], {6, -1}));
       }},
      {"(6,) -> (2,1,3)",
       {{6}},
       [](const TensorList& in) {
         return weigh(view(in[0], {2, 1, 3}));
       }},
  });
}
TEST_GRADCHECK("reshape") {
  check_gradients({
      {"a view: (3,4) -> (2,6)",
       {{3, 4}},
       [](const TensorList& in) {
         return weigh(reshape(in[0], {2, 6}));
       }},
      {"a transposed input copies",
       {{3, 4}},
       [](const TensorList& in) { return weigh(reshape(in[0], {12})); },
       -2,
       2,
       {0}},
  });
}
TEST_GRADCHECK("flatten") {
  check_gradients({
      {"(2,3,2) from dim 1",
       {{2, 3, 2}},
       [](const TensorList& in) { return weigh(flatten(in[0], 1)); }},
      {"(2,3,2,2) dims 1..2",
       {{2, 3, 2, 2}},
       [](const TensorList& in) { return weigh(flatten(in[0], 1, 2)); }},
  });
}
TEST_GRADCHECK("transpose") {
  check_gradients({
      {"(2,3,4) dims 0, 2",
       {{2, 3, 4}},
       [](const TensorList& in) { return weigh(transpose(in[0], 0, 2)); }},
      {"non-contiguous (3,4)",
       {{3, 4}},
       [](const TensorList& in) { return weigh(transpose(in[0], -1, -2)); },
       -2,
       2,
       {0}},
  });
}
TEST_GRADCHECK("permute") {
  check_gradients({{"(2,3,4) to (4,2,3)", {{2, 3, 4}}, [](const TensorList& in) {
                      return weigh(permute(in[0], {2, 0, 1}));
                    }}});
}
TEST_GRADCHECK("narrow") {
  check_gradients({{"non-contiguous (4,5) dim 1",
                    {{4, 5}},
                    [](const TensorList& in) { return weigh(narrow(in[0], 1, 1, 3)); },
                    -2,
                    2,
                    {0}},
                   // zeros on both sides, a negative dim and start
                   {"(3,6,2) dim -2 from -4",
                    {{3, 6, 2}},
                    [](const TensorList& in) { return weigh(narrow(in[0], -2, -4, 2)); }},
                   {"(5,2) the first rows", {{5, 2}}, [](const TensorList& in) {
                      return weigh(narrow(in[0], 0, 0, 3));
                    }}});
}
TEST_GRADCHECK("slice") {
  check_gradients({{"(7,3) with step 2", {{7, 3}}, [](const TensorList& in) {
                      return weigh(slice(in[0], 0, 1, 7, 2));
                    }}});
}
TEST_GRADCHECK("select") {
  check_gradients({{"(3,4) the last column",
                    {{3, 4}},
                    [](const TensorList& in) { return weigh(select(in[0], 1, -1)); }},
                   {"(4,3,2) a middle row, dim -3",
                    {{4, 3, 2}},
                    [](const TensorList& in) { return weigh(select(in[0], -3, 2)); }},
                   {"(3,2) the first row", {{3, 2}}, [](const TensorList& in) {
                      return weigh(select(in[0], 0, 0));
                    }}});
}
TEST_GRADCHECK("expand") {
  check_gradients({{"(3,1) to (2,3,4)", {{3, 1}}, [](const TensorList& in) {
                      return weigh(expand(in[0], {2, 3, 4}));
                    }}});
}
TEST_GRADCHECK("squeeze") {
  check_gradients({
      {"every size-1 dim of (3,1,2,1)",
       {{3, 1, 2, 1}},
       [](const TensorList& in) { return weigh(squeeze(in[0])); }},
      {"dim 1 of (3,1,2)",
       {{3, 1, 2}},
       [](const TensorList& in) { return weigh(squeeze(in[0], 1)); }},
  });
}
TEST_GRADCHECK("unsqueeze") {
  check_gradients({{"(3,2) at dim -1", {{3, 2}}, [](const TensorList& in) {
                      return weigh(unsqueeze(in[0], -1));
                    }}});
}
TEST_GRADCHECK("clone") {
  check_gradients({{"non-contiguous (3,4)",
                    {{3, 4}},
                    [](const TensorList& in) { return weigh(clone(in[0])); },
                    -2,
                    2,
                    {0}}});
}
TEST_GRADCHECK("contiguous") {
  // A non-contiguous input is cloned (the clone rule); a contiguous one is returned as is.
  check_gradients({
      {"non-contiguous (3,4)",
       {{3, 4}},
       [](const TensorList& in) { return weigh(contiguous(in[0])); },
       -2,
       2,
       {0}},
      {"contiguous (3,4)", {{3, 4}}, [](const TensorList& in) { return weigh(contiguous(in[0])); }},
  });
}
TEST_GRADCHECK("to") {
  // f64 -> f32 -> f64: the gradient passes through both casts. The function is linear, so a
  // large step costs nothing, and it keeps the f32 rounding (~1e-7) small against it.
  check_gradients(
      {{"f64 -> f32 -> f64",
        {{3, 4}},
        [](const TensorList& in) { return weigh(to(to(in[0], DType::f32), DType::f64)); },
        -2,
        2,
        {},
        {},
        1e-5,
        1e-4,
        /*eps=*/1e-2}});
}
