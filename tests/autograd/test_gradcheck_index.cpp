// gradcheck: indexing and joining ops (autograd/rules_index.cpp: embedding, index_select,
// index_add, gather, scatter_add, concat, stack, pad; split and chunk, composites of narrow
// from autograd/rules_view.cpp), with repeated indices (gradients must add up), several dims,
// non-contiguous inputs and size-1 dims. The "create_graph" cases check that the rules are
// themselves differentiable: index_select's rule is index_add (whose rule is index_select),
// gather's is scatter_add (whose rule is gather), pad's is pad.
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

namespace {

Tensor ids(std::vector<int64_t> values, Shape shape, DType dtype = DType::i64) {
  return core::to(from_vector(values, shape), dtype);
}

}  // namespace

TEST_GRADCHECK("embedding") {
  Tensor tokens = ids({3, 1, 3, 0, 4, 3}, {2, 3}, DType::i32);
  check_gradients({
      {"(5,4) weight, (2,3) ids with repeats",
       {{5, 4}},
       [tokens](const TensorList& in) { return embedding(in[0], tokens); }},
      {"(6,) ids",
       {{5, 2}},
       [tokens](const TensorList& in) { return embedding(in[0], core::reshape(tokens, {6})); }},
      {"0-d id",
       {{5, 3}},
       [](const TensorList& in) { return embedding(in[0], scalar_tensor(2, {DType::i64})); }},
      {"non-contiguous weight",
       {{5, 4}},
       [tokens](const TensorList& in) { return embedding(in[0], tokens); },
       -2,
       2,
       {0}},
      {"size-1 C", {{5, 1}}, [tokens](const TensorList& in) { return embedding(in[0], tokens); }},
  });
}

TEST_GRADCHECK("index_select") {
  Tensor index = ids({2, 0, 2, 2}, {4});
  auto along = [index](int64_t dim) -> GradcheckFn {
    return [index, dim](const TensorList& in) { return index_select(in[0], dim, index); };
  };
  check_gradients({
      {"(3,4) dim 0", {{3, 4}}, along(0)},
      {"(4,3) dim 1", {{4, 3}}, along(1)},
      {"(2,3,5) dim -1", {{2, 3, 5}}, along(-1)},
      {"non-contiguous (3,4) dim 0", {{3, 4}}, along(0), -2, 2, {0}},
      {"non-contiguous (4,3) dim 1", {{4, 3}}, along(1), -2, 2, {0}},
      {"non-contiguous (6,)", {{6}}, along(0), -2, 2, {0}},
      {"size-1 dims (3,1) dim 0", {{3, 1}}, along(0)},
      {"i32 index",
       {{3, 2}},
       [](const TensorList& in) {
         return index_select(in[0], 0, ids({1, 1}, {2}, DType::i32));
       }},
  });
}

// index_add is index_select's rule (it records itself, so that index_select differentiates
// twice): check it as the backward of index_select, a function of the cotangent.
TEST_GRADCHECK("index_add") {
  Tensor index = ids({2, 0, 2, 2}, {4});
  check_gradients({
      {"backward of index_select (3,4) dim 0, repeated rows",
       {{3, 4}, {4, 4}},
       backward_of_dy([index](const Tensor& x) { return index_select(x, 0, index); }),
       -2,
       2,
       {},
       {0}},
      {"backward of index_select (2,3) dim 1",
       {{2, 3}, {2, 4}},
       backward_of_dy([index](const Tensor& x) { return index_select(x, 1, index); }),
       -2,
       2,
       {},
       {0}},
  });
}

TEST_GRADCHECK("gather") {
  Tensor index0 = ids({2, 0, 1, 2, 2, 0, 0, 1}, {2, 4});  // for dim 0 of (3, 4)
  Tensor index1 = ids({3, 3, 0, 1, 2, 3}, {3, 2});        // for dim 1 of (3, 4)
  check_gradients({
      {"(3,4) dim 0",
       {{3, 4}},
       [index0](const TensorList& in) { return gather(in[0], 0, index0); }},
      {"(3,4) dim 1",
       {{3, 4}},
       [index1](const TensorList& in) { return gather(in[0], 1, index1); }},
      {"(3,4) dim -1 index longer than x",
       {{3, 4}},
       [](const TensorList& in) {
         return gather(in[0], -1, ids({0, 3, 3, 1, 2, 2, 0, 0, 1, 1, 3, 3, 2, 1, 0}, {3, 5}));
       }},
      {"(2,3,4) dim 1",
       {{2, 3, 4}},
       [](const TensorList& in) {
         return gather(in[0], 1, ids({0, 2, 1, 1, 2, 2, 0, 1}, {2, 1, 4}));
       }},
      {"non-contiguous (3,4) dim 0",
       {{3, 4}},
       [index0](const TensorList& in) { return gather(in[0], 0, index0); },
       -2,
       2,
       {0}},
      {"non-contiguous (3,4) dim 1",
       {{3, 4}},
       [index1](const TensorList& in) { return gather(in[0], 1, index1); },
       -2,
       2,
       {0}},
      {"size-1 dims (3,1) dim 0",
       {{3, 1}},
       [](const TensorList& in) {
         return gather(in[0], 0, ids({2, 2, 0}, {3, 1}));
       }},
      {"create_graph: backward as a function of dy",
       {{3, 4}, {3, 2}},
       backward_of_dy([index1](const Tensor& x) { return gather(x, 1, index1); }),
       -2,
       2,
       {},
       {0}},
  });
}

TEST_GRADCHECK("scatter_add") {
  Tensor index0 = ids({2, 0, 1, 2, 2, 0, 0, 1}, {2, 4});
  Tensor index1 = ids({3, 3, 0, 1, 2, 3}, {3, 2});
  check_gradients({
      {"(3,4) dim 0, x and src",
       {{3, 4}, {2, 4}},
       [index0](const TensorList& in) { return scatter_add(in[0], 0, index0, in[1]); }},
      {"(3,4) dim 1, x and src",
       {{3, 4}, {3, 2}},
       [index1](const TensorList& in) { return scatter_add(in[0], 1, index1, in[1]); }},
      {"(3,4) dim -1, src only",
       {{3, 4}, {3, 2}},
       [index1](const TensorList& in) { return scatter_add(in[0], -1, index1, in[1]); },
       -2,
       2,
       {},
       {0}},
      {"non-contiguous x and src",
       {{3, 4}, {3, 2}},
       [index1](const TensorList& in) { return scatter_add(in[0], 1, index1, in[1]); },
       -2,
       2,
       {0, 1}},
      {"size-1 dims (1,4) dim 1",
       {{1, 4}, {1, 3}},
       [](const TensorList& in) {
         return scatter_add(in[0], 1, ids({3, 0, 3}, {1, 3}), in[1]);
       }},
      {"create_graph: backward as a function of dy",
       {{3, 2}, {3, 4}},
       backward_of_dy([index1](const Tensor& src) {
         return scatter_add(zeros({3, 4}, {DType::f64}), 1, index1, src);
       }),
       -2,
       2,
       {},
       {0}},
  });
}

TEST_GRADCHECK("concat") {
  auto cat = [](int64_t dim) -> GradcheckFn {
    return [dim](const TensorList& in) { return weigh(concat(in, dim)); };
  };
  check_gradients({
      {"(2,3) (4,3) dim 0", {{2, 3}, {4, 3}}, cat(0)},
      {"(3,2) (3,1) (3,4) dim -1", {{3, 2}, {3, 1}, {3, 4}}, cat(-1)},
      {"(2,3,4) (2,1,4) dim 1", {{2, 3, 4}, {2, 1, 4}}, cat(1)},
      {"non-contiguous pieces", {{4, 3}, {4, 3}}, cat(1), -2, 2, {0, 1}},
      {"(5,) (3,) one constant", {{5}, {3}}, cat(0), -2, 2, {}, {1}},
      {"single piece", {{2, 3}}, cat(0)},
  });
}

TEST_GRADCHECK("stack") {
  auto st = [](int64_t dim) -> GradcheckFn {
    return [dim](const TensorList& in) { return weigh(stack(in, dim)); };
  };
  check_gradients({
      {"(2,3) x3 dim 0", {{2, 3}, {2, 3}, {2, 3}}, st(0)},
      {"(2,3) x2 dim 1", {{2, 3}, {2, 3}}, st(1)},
      {"(2,3) x2 dim -1", {{2, 3}, {2, 3}}, st(-1)},
      {"non-contiguous", {{3, 4}, {3, 4}}, st(2), -2, 2, {0}},
      {"0-d pieces", {{}, {}, {}}, st(0)},
  });
}

TEST_GRADCHECK("split") {
  check_gradients({
      {"split sizes {2,1,3} dim 1, reordered",
       {{2, 6}},
       [](const TensorList& in) {
         std::vector<Tensor> p = split(in[0], std::vector<int64_t>{2, 1, 3}, 1);
         return weigh(concat({p[2], mul(p[0], p[0]), p[1]}, 1));
       }},
      {"split by 2 dim 0, uneven last piece",
       {{5, 3}},
       [](const TensorList& in) {
         std::vector<Tensor> p = split(in[0], int64_t(2), 0);
         return weigh(concat({p[2], mul(p[0], p[1])}, 0));
       }},
  });
}

TEST_GRADCHECK("chunk") {
  check_gradients({
      {"chunk 3 dim -1, non-contiguous",
       {{4, 6}},
       [](const TensorList& in) {
         std::vector<Tensor> c = chunk(in[0], 3, -1);
         return weigh(add(mul(c[0], 2.0), mul(c[1], c[2])));
       },
       -2,
       2,
       {0}},
      {"chunk of a size-1 dim",
       {{1, 4}},
       [](const TensorList& in) { return weigh(chunk(in[0], 2, 0)[0]); }},
  });
}

TEST_GRADCHECK("pad") {
  auto padded = [](std::vector<int64_t> pads, double value) -> GradcheckFn {
    return [pads, value](const TensorList& in) { return weigh(pad(in[0], pads, value)); };
  };
  check_gradients({
      {"(3,4) pad last dim", {{3, 4}}, padded({1, 2}, 0)},
      {"(3,4) pad both dims with a value", {{3, 4}}, padded({0, 1, 2, 1}, 1.5)},
      {"(3,5) crop", {{3, 5}}, padded({-1, -2}, 0)},
      {"(2,3,4) mixed pad and crop", {{2, 3, 4}}, padded({2, -1, -1, 1, 1, 0}, -1)},
      {"non-contiguous (4,3)", {{4, 3}}, padded({1, -1, 0, 2}, 0), -2, 2, {0}},
      {"size-1 dims (1,3)", {{1, 3}}, padded({1, 1, 1, 1}, 0)},
      {"create_graph: backward as a function of dy",
       {{3, 4}, {4, 5}},
       backward_of_dy([](const Tensor& x) {
         return pad(x, {2, -1, 0, 1});
       }),
       -2,
       2,
       {},
       {0}},
  });
}

TEST_CASE("embedding: the weight gradient adds the rows of repeated ids") {
  Tensor weight = zeros({4, 2}, {DType::f64}).set_requires_grad(true);
  Tensor out = embedding(weight, ids({1, 3, 1, 1}, {4}, DType::i32));
  backward(out, from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}, {4, 2}, {DType::f64}));
  CHECK(weight.grad().to_vector<double>() == std::vector<double>{0, 0, 13, 16, 0, 0, 3, 4});
}
