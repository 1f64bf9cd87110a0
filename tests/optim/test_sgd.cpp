// SGD against a plain-loop transcription of PyTorch's torch.optim.SGD update (dampening 0):
//
//   g = grad + wd * p;  buf = g (first step) | momentum * buf + g;
//   g = nesterov ? g + momentum * buf : buf;  p = p - lr * g
//
// over several steps, with gradients that depend on the current parameters.
#include <doctest/doctest.h>

#include "optim/sgd.h"
#include "optim_test_util.h"

using namespace mnemo;
using namespace mnemo::test;

namespace {

struct SgdCase {
  const char* label;
  double lr, momentum, weight_decay;
  bool nesterov;
};

// The reference: one parameter vector, its buffer, plain loops in double.
struct SgdReference {
  explicit SgdReference(std::vector<double> init) : p(std::move(init)) {}
  std::vector<double> p, buf;
  bool has_buf = false;
  void step(const std::vector<double>& grad, const SgdCase& c) {
    std::vector<double> g = grad;
    for (size_t i = 0; i < p.size(); ++i) g[i] += c.weight_decay * p[i];
    if (c.momentum != 0) {
      if (!has_buf) {
        buf = g;
        has_buf = true;
      } else {
        for (size_t i = 0; i < p.size(); ++i) buf[i] = c.momentum * buf[i] + g[i];
      }
      for (size_t i = 0; i < p.size(); ++i) g[i] = c.nesterov ? g[i] + c.momentum * buf[i] : buf[i];
    }
    for (size_t i = 0; i < p.size(); ++i) p[i] -= c.lr * g[i];
  }
};

}  // namespace

TEST_CASE("SGD: matches the PyTorch update over several steps") {
  const std::vector<SgdCase> cases = {
      {"plain", 0.1, 0, 0, false},         {"weight decay", 0.1, 0, 0.05, false},
      {"momentum", 0.05, 0.9, 0, false},   {"momentum and weight decay", 0.05, 0.9, 0.01, false},
      {"nesterov", 0.05, 0.8, 0.02, true},
  };
  const std::vector<double> init = {0.5, -1.25, 2.0, 0.125, -0.75, 1.5};
  for (const SgdCase& c : cases) {
    INFO(c.label);
    Tensor p = make_param(init, {2, 3});
    optim::SGD sgd({{{"w"}, {p}}}, c.lr, c.momentum, c.weight_decay, c.nesterov);
    SgdReference ref(init);
    for (int step = 0; step < 5; ++step) {
      std::vector<double> g = set_grad(p, grad_rule(p.to_vector<double>(), step));
      sgd.step();
      ref.step(g, c);
      check_close(p.to_vector<double>(), ref.p, 1e-13, 1e-14);
    }
    CHECK(sgd.steps_taken() == 5);
    CHECK(sgd.state_tensors().size() == (c.momentum != 0 ? 1u : 0u));
  }
}

TEST_CASE("SGD: group weight decay adds to the global one, lr_scale scales the step") {
  const std::vector<double> init = {1.0, -2.0, 0.5};
  Tensor a = make_param(init, {3});
  Tensor b = make_param(init, {3});
  optim::ParamGroup ga{{"a"}, {a}, 0.1, 1.0};
  optim::ParamGroup gb{{"b"}, {b}, 0.0, 0.5};
  optim::SGD sgd({ga, gb}, 0.2, 0.5, 0.01);
  SgdReference ra(init), rb(init);
  for (int step = 0; step < 3; ++step) {
    std::vector<double> g_a = set_grad(a, grad_rule(a.to_vector<double>(), step));
    std::vector<double> g_b = set_grad(b, grad_rule(b.to_vector<double>(), step));
    sgd.step();
    ra.step(g_a, {"a", 0.2, 0.5, 0.11, false});
    rb.step(g_b, {"b", 0.1, 0.5, 0.01, false});
  }
  check_close(a.to_vector<double>(), ra.p, 1e-13, 1e-14);
  check_close(b.to_vector<double>(), rb.p, 1e-13, 1e-14);
}

TEST_CASE("SGD: f32 parameters follow the f64 reference to f32 rounding") {
  const std::vector<double> init = {0.3, -0.7, 1.1, 2.5};
  Tensor p = make_param(init, {4}, DType::f32);
  optim::SGD sgd({{{"w"}, {p}}}, 0.05, 0.9, 0.01, true);
  SgdReference ref(p.to_vector<double>());
  for (int step = 0; step < 4; ++step) {
    std::vector<double> g = set_grad(p, grad_rule(p.to_vector<double>(), step));
    sgd.step();
    ref.step(g, {"f32", 0.05, 0.9, 0.01, true});
    // A few f32 roundings per step (the reference keeps its buffer in f64).
    check_close(p.to_vector<double>(), ref.p, 1e-6, 1e-7);
    ref.p = p.to_vector<double>();  // continue from the rounded values, as the optimizer does
  }
  CHECK(p.dtype() == DType::f32);
  CHECK(sgd.state_tensors()[0].second.dtype() == DType::f32);
}

TEST_CASE("SGD: parameters without a gradient are skipped, zero_grad clears gradients") {
  Tensor a = make_param({1, 2}, {2});
  Tensor b = make_param({3, 4}, {2});
  optim::SGD sgd({{{"a", "b"}, {a, b}}}, 0.5, 0.9, 0.1);
  set_grad(a, {1, 1});
  sgd.step();
  CHECK(a.to_vector<double>() == std::vector<double>{1 - 0.5 * 1.1, 2 - 0.5 * 1.2});
  CHECK(b.to_vector<double>() == std::vector<double>{3, 4});  // no decay without a gradient
  const auto state = sgd.state_tensors();
  REQUIRE(state.size() == 1);
  CHECK(state[0].first == "a.momentum_buffer");
  sgd.zero_grad();
  CHECK_FALSE(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("SGD: misuse throws naming the option") {
  Tensor p = make_param({1, 2}, {2});
  CHECK_THROWS_WITH_AS(optim::SGD({{{"w"}, {p}}}, -1), doctest::Contains("lr"), Error);
  CHECK_THROWS_WITH_AS(optim::SGD({{{"w"}, {p}}}, 0.1, -0.5), doctest::Contains("momentum"), Error);
  CHECK_THROWS_WITH_AS(optim::SGD({{{"w"}, {p}}}, 0.1, 0, 0, true), doctest::Contains("nesterov"),
                       Error);
  CHECK_THROWS_WITH_AS(optim::SGD({{{"w"}, {p}}}, 0.1, 0, -1), doctest::Contains("weight_decay"),
                       Error);
}
