// gradcheck: reductions, scans and sum_to (autograd/rules_reduce.cpp), over single dims,
// several dims, all dims, negative dims, keepdim true/false, non-contiguous inputs and size-1
// dims; plus the forward values of the composites (mean, var, norm) against closed forms, the
// even split of max/min gradients among ties, and the create_graph form of the logsumexp,
// cumsum and topk rules.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "support/gradcheck_cases.h"
#include "support/tensors.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

namespace {

using ReduceFn = std::function<Tensor(const Tensor&, const std::vector<int64_t>&, bool)>;

// The standard sweep of shapes, dims and layouts for a reduction over dims. single: include the
// cases that reduce a single element (0-d, size-1 dims), where var's correction divides by 0.
std::vector<GradcheckCase> reduction_cases(ReduceFn op, double lo = -2, double hi = 2,
                                           bool single = true) {
  auto over = [op](std::vector<int64_t> dims, bool keepdim) -> GradcheckFn {
    return [op, dims, keepdim](const TensorList& in) { return op(in[0], dims, keepdim); };
  };
  std::vector<GradcheckCase> cases = {
      {"(3,4) all dims", {{3, 4}}, over({}, false), lo, hi},
      {"(3,4) dim 1", {{3, 4}}, over({1}, false), lo, hi},
      {"(3,4) dim 0 keepdim", {{3, 4}}, over({0}, true), lo, hi},
      {"(2,3,4) dims 0,2", {{2, 3, 4}}, over({0, 2}, false), lo, hi},
      {"(2,3,4) dims -1,-2 keepdim", {{2, 3, 4}}, over({-1, -2}, true), lo, hi},
      {"(2,3,4) all dims keepdim", {{2, 3, 4}}, over({}, true), lo, hi},
      {"non-contiguous (4,3) dim 0", {{4, 3}}, over({0}, false), lo, hi, {0}},
      {"non-contiguous (4,3) dim -1 keepdim", {{4, 3}}, over({-1}, true), lo, hi, {0}},
      {"non-contiguous (6,)", {{6}}, over({0}, false), lo, hi, {0}},
      {"size-1 dims (1,5,1) dim 1 keepdim", {{1, 5, 1}}, over({1}, true), lo, hi},
      {"size-1 dims (1,5,1) dims 0,1", {{1, 5, 1}}, over({0, 1}, false), lo, hi},
  };
  if (single) {
    cases.push_back({"size-1 dims (1,5,1) dims 0,2", {{1, 5, 1}}, over({0, 2}, false), lo, hi});
    cases.push_back({"0-d", {{}}, over({}, false), lo, hi});
  }
  return cases;
}

}  // namespace

TEST_GRADCHECK("sum") {
  check_gradients(reduction_cases(
      [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return sum(x, d, k); }));
}

TEST_GRADCHECK("mean") {
  check_gradients(reduction_cases(
      [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return mean(x, d, k); }));
}

TEST_GRADCHECK("max") {
  check_gradients(reduction_cases(
      [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return max(x, d, k); }));
}

TEST_GRADCHECK("min") {
  check_gradients(reduction_cases(
      [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return min(x, d, k); }));
}

TEST_GRADCHECK("logsumexp") {
  check_gradients(reduction_cases(
      [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return logsumexp(x, d, k); }));
  check_gradients({{"create_graph: backward as a function of dy",
                    {{3, 4}, {3}},
                    backward_of_dy([](const Tensor& x) { return logsumexp(x, {1}); }),
                    -2,
                    2,
                    {},
                    {0}}});
}

TEST_GRADCHECK("var") {
  for (int64_t correction : {0, 1}) {
    INFO("correction ", correction);
    auto op = [correction](const Tensor& x, const std::vector<int64_t>& d, bool k) {
      return var(x, d, correction, k);
    };
    check_gradients(reduction_cases(op, -2, 2, correction == 0));
  }
}

TEST_GRADCHECK("norm") {
  // Away from 0, where |x| and sqrt have no derivative.
  for (double p : {2.0, 1.0, 3.0, kInf}) {
    INFO("p ", p);
    auto op = [p](const Tensor& x, const std::vector<int64_t>& d, bool k) {
      return norm(x, p, d, k);
    };
    check_gradients(reduction_cases(op, 0.2, 2));
    check_gradients(reduction_cases(op, -2, -0.2));
  }
}

TEST_GRADCHECK("cumsum") {
  auto along = [](int64_t dim) -> GradcheckFn {
    return [dim](const TensorList& in) { return cumsum(in[0], dim); };
  };
  check_gradients({
      {"(3,4) dim 1", {{3, 4}}, along(1)},
      {"(3,4) dim 0", {{3, 4}}, along(0)},
      {"(2,3,4) dim -2", {{2, 3, 4}}, along(-2)},
      {"non-contiguous (4,3) dim -1", {{4, 3}}, along(-1), -2, 2, {0}},
      {"non-contiguous (4,3) dim 0", {{4, 3}}, along(0), -2, 2, {0}},
      {"non-contiguous (6,)", {{6}}, along(0), -2, 2, {0}},
      {"size-1 dims (1,5,1) dim 1", {{1, 5, 1}}, along(1)},
      {"size-1 scan dim (3,1) dim 1", {{3, 1}}, along(1)},
      {"0-d", {{}}, along(0)},
      {"create_graph: backward as a function of dy",
       {{3, 5}, {3, 5}},
       backward_of_dy([](const Tensor& x) { return cumsum(x, 1); }),
       -2,
       2,
       {},
       {0}},
  });
}

TEST_GRADCHECK("topk") {
  auto top = [](int64_t k, int64_t dim, bool largest) -> GradcheckFn {
    return [=](const TensorList& in) { return topk(in[0], k, dim, largest).values; };
  };
  check_gradients({
      {"(3,5) k 2 dim -1", {{3, 5}}, top(2, -1, true)},
      {"(3,5) k 2 dim -1 smallest", {{3, 5}}, top(2, -1, false)},
      {"(4,3) k 3 dim 0", {{4, 3}}, top(3, 0, true)},
      {"(2,3,4) k 1 dim 1", {{2, 3, 4}}, top(1, 1, true)},
      {"(3,5) k = length", {{3, 5}}, top(5, 1, false)},
      {"non-contiguous (5,4) k 2 dim 0", {{5, 4}}, top(2, 0, true), -2, 2, {0}},
      {"non-contiguous (6,) k 4", {{6}}, top(4, 0, false), -2, 2, {0}},
      {"size-1 dims (1,6,1) k 3 dim 1", {{1, 6, 1}}, top(3, 1, true)},
      {"create_graph: backward as a function of dy",
       {{3, 5}, {3, 2}},
       backward_of_dy([](const Tensor& x) { return topk(x, 2, 1).values; }),
       -2,
       2,
       {},
       {0}},
  });
}

TEST_GRADCHECK("sum_to") {
  // The adjoint of expand (the engine calls it to undo broadcasting).
  auto to_shape = [](Shape shape) -> GradcheckFn {
    return [shape](const TensorList& in) { return weigh(sum_to(in[0], shape)); };
  };
  check_gradients({
      {"(2,3,4) to (3,1)", {{2, 3, 4}}, to_shape({3, 1})},
      {"(2,3,4) to (4,)", {{2, 3, 4}}, to_shape({4})},
      {"(3,4) to ()", {{3, 4}}, to_shape({})},
      {"non-contiguous (4,3) to (1,3)", {{4, 3}}, to_shape({1, 3}), -2, 2, {0}},
  });
}

TEST_CASE("max/min: the gradient is split evenly among tied extremes") {
  Tensor x = from_vector(std::vector<double>{1, 3, 3, 0, 2, 2, 2, 5}, {2, 4}, {DType::f64});
  x.set_requires_grad(true);
  backward(sum(max(x, {1})));
  CHECK(values(x.grad()) == std::vector<double>{0, 0.5, 0.5, 0, 0, 0, 0, 1});
  Tensor y = detach(x).set_requires_grad(true);
  backward(sum(min(y, {1}, true)));
  CHECK(values(y.grad()) == std::vector<double>{0, 0, 0, 1, 1.0 / 3, 1.0 / 3, 1.0 / 3, 0});
  Tensor z = detach(x).set_requires_grad(true);
  backward(min(z) * 3.0);  // the global min (0) is unique
  CHECK(values(z.grad()) == std::vector<double>{0, 0, 0, 3, 0, 0, 0, 0});
  Tensor w = from_vector(std::vector<double>{2, 2, 2}, {3}, {DType::f64}).set_requires_grad(true);
  backward(max(w));
  CHECK(values(w.grad()) == std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 3});
}

TEST_CASE("mean, var, norm: forward values against closed forms") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4, -2, 6}, {2, 3}, {DType::f64});
  CHECK(values(mean(x)) == std::vector<double>{14.0 / 6});
  CHECK(values(mean(x, {1})) == std::vector<double>{2, 8.0 / 3});
  CHECK(mean(x, {0}, true).shape() == Shape{1, 3});
  // Row 0: mean 2, squared deviations 1 + 0 + 1 = 2. Row 1: mean 8/3, 16/9 + 196/9 + 100/9.
  std::vector<double> v1 = values(var(x, {1}));
  CHECK(v1[0] == doctest::Approx(1.0));
  CHECK(v1[1] == doctest::Approx(312.0 / 9 / 2));
  std::vector<double> v0 = values(var(x, {1}, 0, true));
  CHECK(v0[0] == doctest::Approx(2.0 / 3));
  CHECK(var(x, {1}, 0, true).shape() == Shape{2, 1});
  CHECK(values(norm(x))[0] == doctest::Approx(std::sqrt(1 + 4 + 9 + 16 + 4 + 36.0)));
  CHECK(values(norm(x, 1, {1})) == std::vector<double>{6, 12});
  CHECK(values(norm(x, kInf, {0})) == std::vector<double>{4, 2, 6});
  CHECK(values(norm(x, 3, {1}))[1] == doctest::Approx(std::cbrt(64 + 8 + 216.0)));
  CHECK_THROWS_WITH_AS(mean(from_vector(std::vector<int64_t>{1, 2}, {2})),
                       doctest::Contains("mean: expected a floating tensor"), Error);
  CHECK_THROWS_WITH_AS(norm(x, -1), doctest::Contains("norm: p must be positive"), Error);
  CHECK_THROWS_WITH_AS(var(x, {2}), doctest::Contains("var"), Error);
  CHECK_THROWS_WITH_AS(var(x, {}, -1), doctest::Contains("var: correction"), Error);
}
