// The backward engine: accumulation, graph shapes (chains, diamonds, broadcast), retain_graph,
// no_grad, detach, hooks, retain_grad and the functional grad().
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "support/tensors.h"

using namespace mnemo;
using mnemo::test::values;

namespace {

Tensor leaf(std::vector<double> v, Shape shape) {
  return from_vector(v, shape, {DType::f64}).set_requires_grad();
}
}  // namespace

TEST_CASE("gradients accumulate across backward calls") {
  Tensor x = leaf({1, 2, 3}, {3});
  backward(sum(mul(x, x)));
  CHECK(values(x.grad()) == std::vector<double>{2, 4, 6});
  backward(sum(mul(x, 3.0)));
  CHECK(values(x.grad()) == std::vector<double>{5, 7, 9});
  x.set_grad(Tensor());
  backward(sum(x));
  CHECK(values(x.grad()) == std::vector<double>{1, 1, 1});
}

TEST_CASE("a diamond delivers both paths before the shared node runs") {
  // y = (2x) * (3x) = 6x^2  =>  dy/dx = 12x
  Tensor x = leaf({1, -2}, {2});
  Tensor a = mul(x, 2.0);
  Tensor b = mul(x, 3.0);
  backward(sum(mul(a, b)));
  CHECK(values(x.grad()) == std::vector<double>{12, -24});
}

TEST_CASE("broadcast gradients are summed back to the input shape") {
  Tensor w = leaf({1, 2, 3}, {3});
  Tensor x =
      from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {4, 3}, {DType::f64});
  backward(sum(add(x, w)));
  CHECK(values(w.grad()) == std::vector<double>{4, 4, 4});
  Tensor s = leaf({2}, {});
  backward(sum(mul(x, s)));  // 0-d times (4, 3)
  CHECK(s.grad().shape() == Shape{});
  CHECK(s.grad().item() == 78);
}

TEST_CASE("non-scalar roots need a grad_output of their shape") {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = mul(x, x);
  CHECK_THROWS_WITH_AS(backward(y), doctest::Contains("not a scalar"), Error);
  CHECK_THROWS_AS(backward(y, ones({3}, {DType::f64})), Error);
  backward(y, from_vector(std::vector<double>{1, 10}, {2}, {DType::f64}));
  CHECK(values(x.grad()) == std::vector<double>{2, 40});
}

TEST_CASE("the graph is freed after backward unless retained") {
  Tensor x = leaf({3}, {1});
  Tensor y = sum(mul(x, x));
  backward(y, {}, {.retain_graph = true});
  backward(y);
  CHECK(x.grad().item() == 12);
  CHECK_THROWS_WITH_AS(backward(y), doctest::Contains("retain_graph"), Error);
}

TEST_CASE("no_grad records nothing and detach cuts the tape") {
  Tensor x = leaf({1, 2}, {2});
  {
    NoGradGuard guard;
    Tensor y = mul(x, x);
    CHECK(!y.requires_grad());
    CHECK(y.is_leaf());
    CHECK_THROWS_WITH_AS(backward(sum(y)), doctest::Contains("does not require grad"), Error);
    {
      EnableGradGuard enable;
      CHECK(mul(x, x).requires_grad());
    }
  }
  CHECK(GradMode::is_enabled());
  Tensor d = detach(mul(x, x));
  CHECK(!d.requires_grad());
  CHECK(d.storage() != x.storage());
  Tensor z = sum(add(mul(x, d), x));  // d is a constant here
  backward(z);
  CHECK(values(x.grad()) == std::vector<double>{2, 5});  // d + 1
}

TEST_CASE("requires_grad is for floating leaves") {
  Tensor x = leaf({1}, {1});
  Tensor y = mul(x, 2.0);
  CHECK(y.grad_fn_name() == "mul");
  CHECK(x.grad_fn_name().empty());
  CHECK_THROWS_AS(y.set_requires_grad(false), Error);
  CHECK_THROWS_WITH_AS(ones({2}, {DType::i64}).set_requires_grad(), doctest::Contains("floating"),
                       Error);
}

TEST_CASE("hooks can rewrite gradients, and post-accumulate hooks fire once with the full sum") {
  Tensor x = leaf({1, 2}, {2});
  Tensor h = mul(x, 3.0);
  register_hook(h, [](const Tensor& g) { return mul(g, 10.0); });  // on a non-leaf
  int fired = 0;
  std::vector<double> seen;
  register_post_accumulate_grad_hook(x, [&](const Tensor& grad) {
    ++fired;
    seen = values(grad);
  });
  // x is used three times: through h, directly, and squared.
  Tensor loss = sum(add(add(h, x), mul(x, x)));
  backward(loss);
  CHECK(fired == 1);
  CHECK(seen == std::vector<double>{30 + 1 + 2, 30 + 1 + 4});
  CHECK(values(x.grad()) == seen);

  Tensor w = leaf({1}, {1});
  register_hook(w, [](const Tensor& g) { return neg(g); });  // on a leaf
  backward(sum(mul(w, 5.0)));
  CHECK(w.grad().item() == -5);
  CHECK_THROWS_AS(register_post_accumulate_grad_hook(mul(w, 2.0), [](const Tensor&) {}), Error);
}

TEST_CASE("retain_grad keeps a non-leaf's gradient") {
  Tensor x = leaf({1, 2}, {2});
  Tensor h = mul(x, x);
  retain_grad(h);
  Tensor m = mul(x, 4.0);
  backward(sum(mul(h, 3.0)));
  CHECK(values(h.grad()) == std::vector<double>{3, 3});
  CHECK(!m.grad().defined());
}

TEST_CASE("grad() returns gradients without touching .grad") {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = leaf({3}, {1});
  Tensor unused = leaf({0}, {1});
  Tensor h = mul(x, y);
  TensorList g = grad({sum(mul(h, h))}, {x, y, unused, h});
  CHECK(values(g[0]) == std::vector<double>{18, 36});  // 2 x y^2
  CHECK(values(g[1]) == std::vector<double>{30});      // 2 y sum(x^2)
  CHECK(!g[2].defined());
  CHECK(values(g[3]) == std::vector<double>{6, 12});  // 2 h
  CHECK(!x.grad().defined());
  CHECK(!y.grad().defined());
}

TEST_CASE("views of a leaf send gradients to the right elements") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = transpose(x, 0, 1);                // (3, 2)
  Tensor r = select(narrow(t, 0, 1, 2), 1, 0);  // t[1:3, 0] = x[0, 1:3]
  backward(sum(mul(r, from_vector(std::vector<double>{10, 100}, {2}, {DType::f64}))));
  CHECK(values(x.grad()) == std::vector<double>{0, 10, 100, 0, 0, 0});
  x.set_grad(Tensor());
  std::vector<Tensor> parts = chunk(x, 3, 1);
  REQUIRE(parts.size() == 3);
  backward(sum(add(mul(parts[0], 1.0), mul(parts[2], 2.0))));
  CHECK(values(x.grad()) == std::vector<double>{1, 0, 2, 1, 0, 2});
}

TEST_CASE("a long chain runs and tears down without deep recursion") {
  Tensor x = leaf({1}, {1});
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, 1e-5);
  backward(sum(y));
  CHECK(x.grad().item() == 1);
  y = Tensor();  // frees the whole tape
  Tensor z = x;
  for (int i = 0; i < 100000; ++i) z = mul(z, 1.0);
  z = Tensor();  // freed without ever running backward
}
