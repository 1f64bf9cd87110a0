// AdamW against a plain-loop transcription of PyTorch's torch.optim.AdamW (single-tensor
// path, per element, at step t):
//
//   p = p * (1 - lr * wd)
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   step_size = lr / (1 - b1^t);   denom = sqrt(v) / sqrt(1 - b2^t) + eps
//   p = p - step_size * m / denom
//
// in f64 (tight), f32 (f32 rounding) and bf16 (moments in f32, parameter rounded each step).
#include <doctest/doctest.h>

#include "optim/adamw.h"
#include "optim_test_util.h"

using namespace mnemo;
using namespace mnemo::test;

namespace {

struct AdamReference {
  std::vector<double> p, m, v;
  double lr, b1, b2, eps, wd;
  int t = 0;
  void step(const std::vector<double>& g) {
    ++t;
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double denom = std::sqrt(v[i]) / std::sqrt(bc2) + eps;
      p[i] -= lr / bc1 * m[i] / denom;
    }
  }
};

const std::vector<double> kInit = {0.5, -1.25, 2.0, 0.125, -0.75, 1.5, 0.0, -0.0625};

}  // namespace

TEST_CASE("AdamW: f64 matches the PyTorch update over several steps") {
  struct Case {
    double lr, b1, b2, eps, wd;
  };
  for (const Case& c : {Case{1e-2, 0.9, 0.95, 1e-8, 0.0}, Case{3e-2, 0.9, 0.999, 1e-8, 0.1},
                        Case{5e-3, 0.8, 0.9, 1e-3, 0.5}}) {
    INFO("lr " << c.lr << " betas " << c.b1 << "," << c.b2 << " eps " << c.eps << " wd " << c.wd);
    Tensor p = make_param(kInit, {2, 4});
    optim::AdamW adam({{{"w"}, {p}, c.wd}}, c.lr, c.b1, c.b2, c.eps);
    AdamReference ref{kInit, {}, {}, c.lr, c.b1, c.b2, c.eps, c.wd};
    for (int step = 0; step < 6; ++step) {
      std::vector<double> g = set_grad(p, grad_rule(p.to_vector<double>(), step));
      adam.step();
      ref.step(g);
      check_close(p.to_vector<double>(), ref.p, 1e-12, 1e-14);
    }
    const auto state = adam.state_tensors();
    REQUIRE(state.size() == 2);
    CHECK(state[0].first == "w.exp_avg");
    CHECK(state[1].first == "w.exp_avg_sq");
    CHECK(state[0].second.dtype() == DType::f64);
    check_close(state[0].second.to_vector<double>(), ref.m, 1e-12, 1e-15);
    check_close(state[1].second.to_vector<double>(), ref.v, 1e-12, 1e-15);
  }
}

TEST_CASE("AdamW: f32 parameters within f32 rounding of the reference") {
  Tensor p = make_param(kInit, {8}, DType::f32);
  optim::AdamW adam({{{"w"}, {p}, 0.1}}, 1e-2);
  AdamReference ref{p.to_vector<double>(), {}, {}, 1e-2, 0.9, 0.95, 1e-8, 0.1};
  for (int step = 0; step < 5; ++step) {
    std::vector<double> g = set_grad(p, grad_rule(p.to_vector<double>(), step));
    adam.step();
    ref.step(g);
    check_close(p.to_vector<double>(), ref.p, 2e-6, 1e-7);
  }
  CHECK(adam.state_tensors()[0].second.dtype() == DType::f32);
}

TEST_CASE("AdamW: bf16 parameters keep f32 moments and round once per step") {
  Tensor p = make_param(kInit, {8}, DType::bf16);
  optim::AdamW adam({{{"w"}, {p}, 0.1}}, 2e-2);
  AdamReference ref{p.to_vector<double>(), {}, {}, 2e-2, 0.9, 0.95, 1e-8, 0.1};
  const std::vector<double> before = p.to_vector<double>();
  for (int step = 0; step < 5; ++step) {
    std::vector<double> g = set_grad(p, grad_rule(p.to_vector<double>(), step));
    adam.step();
    ref.step(g);
    // The parameter is within one bf16 rounding (2^-8 relative) of the exact update from the
    // previous (rounded) parameter; the moments, kept in f32, match closely.
    check_close(p.to_vector<double>(), ref.p, std::ldexp(1.0, -8), 1e-30);
    const auto state = adam.state_tensors();
    CHECK(state[0].second.dtype() == DType::f32);
    CHECK(state[1].second.dtype() == DType::f32);
    check_close(state[0].second.to_vector<double>(), ref.m, 1e-6, 1e-9);
    check_close(state[1].second.to_vector<double>(), ref.v, 1e-6, 1e-9);
    ref.p = p.to_vector<double>();
  }
  CHECK(p.dtype() == DType::bf16);
  CHECK(p.to_vector<double>() != before);  // the steps were large enough to show in bf16
}

TEST_CASE("AdamW: step(grad_scale) equals a step on the scaled gradient") {
  Tensor a = make_param(kInit, {8}, DType::f32);
  Tensor b = make_param(kInit, {8}, DType::f32);
  optim::AdamW adam_a({{{"w"}, {a}, 0.1}}, 1e-2);
  optim::AdamW adam_b({{{"w"}, {b}, 0.1}}, 1e-2);
  for (int step = 0; step < 3; ++step) {
    std::vector<double> g = grad_rule(a.to_vector<double>(), step);
    set_grad(a, g);
    std::vector<double> half(g.size());
    for (size_t i = 0; i < g.size(); ++i) half[i] = double(float(g[i])) * 0.5;  // exact
    set_grad(b, half);
    adam_a.step(0.5);
    adam_b.step();
    CHECK(bitwise_equal(a, b));
  }
}

TEST_CASE("AdamW: groups carry their own weight decay and lr_scale; no grad, no update") {
  Tensor a = make_param(kInit, {8});
  Tensor b = make_param(kInit, {8});
  Tensor c = make_param(kInit, {8});
  optim::AdamW adam({{{"a"}, {a}, 0.2, 1.0}, {{"b", "c"}, {b, c}, 0.0, 0.25}}, 4e-2);
  AdamReference ra{kInit, {}, {}, 4e-2, 0.9, 0.95, 1e-8, 0.2};
  AdamReference rb{kInit, {}, {}, 1e-2, 0.9, 0.95, 1e-8, 0.0};
  for (int step = 0; step < 3; ++step) {
    ra.step(set_grad(a, grad_rule(a.to_vector<double>(), step)));
    rb.step(set_grad(b, grad_rule(b.to_vector<double>(), step)));
    adam.step();
  }
  check_close(a.to_vector<double>(), ra.p, 1e-12, 1e-14);
  check_close(b.to_vector<double>(), rb.p, 1e-12, 1e-14);
  CHECK(c.to_vector<double>() == kInit);
  CHECK(adam.state_tensors().size() == 4);  // a and b only
  CHECK(adam.steps_taken() == 3);
}

TEST_CASE("AdamW: misuse throws naming the option or parameter") {
  Tensor p = make_param({1, 2}, {2});
  CHECK_THROWS_WITH_AS(optim::AdamW({{{"w"}, {p}}}, 1e-3, 1.0), doctest::Contains("beta1"), Error);
  CHECK_THROWS_WITH_AS(optim::AdamW({{{"w"}, {p}}}, 1e-3, 0.9, -0.1), doctest::Contains("beta2"),
                       Error);
  CHECK_THROWS_WITH_AS(optim::AdamW({{{"w"}, {p}}}, 1e-3, 0.9, 0.9, -1), doctest::Contains("eps"),
                       Error);
  CHECK_THROWS_WITH_AS(optim::AdamW({{{"w", "v"}, {p, p}}}, 1e-3),
                       doctest::Contains("'v' is the same tensor as 'w'"), Error);
  Tensor q = make_param({1, 2}, {2});
  CHECK_THROWS_WITH_AS(optim::AdamW({{{"w"}, {p}}, {{"w"}, {q}}}, 1e-3),
                       doctest::Contains("'w' appears twice"), Error);
  CHECK_THROWS_WITH_AS(optim::AdamW({{{"w"}, {p, q}}}, 1e-3), doctest::Contains("1 names"), Error);
  CHECK_THROWS_WITH_AS(optim::AdamW({{{"w"}, {p}, -0.1}}, 1e-3), doctest::Contains("weight_decay"),
                       Error);
  optim::AdamW adam({{{"w"}, {p}}}, 1e-3);
  CHECK_THROWS_WITH_AS(adam.set_lr(-1), doctest::Contains("lr"), Error);
  // set_grad rejects this, but a gradient written some other way must be caught too.
  p.ensure_autograd_meta().grad = from_vector(std::vector<double>{1, 2, 3}, {3}, {DType::f64});
  CHECK_THROWS_WITH_AS(
      adam.step(), doctest::Contains("gradient of 'w' has shape (3,), the parameter (2,)"), Error);
}
