// Optimizer state save/restore: a run interrupted after k steps and continued from the saved
// state tensors and step count matches the uninterrupted run bitwise; malformed state is
// rejected naming the key, and leaves the optimizer unchanged.
#include <doctest/doctest.h>

#include <functional>
#include <memory>

#include "core/ops/view.h"
#include "optim/adamw.h"
#include "optim/sgd.h"
#include "optim_test_util.h"

using namespace mnemo;
using namespace mnemo::test;

namespace {

using MakeOptimizer = std::function<std::unique_ptr<optim::Optimizer>(Tensor, Tensor)>;

// Two parameters (a matrix and a vector) of dtype; the optimizer made by make over them.
struct Run {
  Tensor w, b;
  std::unique_ptr<optim::Optimizer> opt;
  Run(DType dtype, const MakeOptimizer& make) {
    w = make_param({0.5, -1.25, 2.0, 0.125, -0.75, 1.5}, {2, 3}, dtype);
    b = make_param({0.25, -0.5}, {2}, dtype);
    opt = make(w, b);
  }
  void step(int s) {
    set_grad(w, grad_rule(w.to_vector<double>(), s));
    set_grad(b, grad_rule(b.to_vector<double>(), s + 7));
    opt->step();
  }
};

void check_resume(DType dtype, const MakeOptimizer& make) {
  Run full(dtype, make);
  for (int s = 0; s < 6; ++s) full.step(s);

  Run first(dtype, make);
  for (int s = 0; s < 3; ++s) first.step(s);
  // "Save": copies of the parameters and the state tensors, and the step count.
  optim::NamedTensors saved;
  for (const auto& [name, t] : first.opt->state_tensors()) saved.emplace_back(name, core::clone(t));
  const int64_t steps = first.opt->steps_taken();

  Run resumed(dtype, make);
  copy_(resumed.w, first.w);
  copy_(resumed.b, first.b);
  resumed.opt->load_state_tensors(saved);
  resumed.opt->set_steps_taken(steps);
  for (int s = 3; s < 6; ++s) resumed.step(s);

  CHECK(bitwise_equal(resumed.w, full.w));
  CHECK(bitwise_equal(resumed.b, full.b));
  const auto a = full.opt->state_tensors(), b = resumed.opt->state_tensors();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].first == b[i].first);
    CHECK(bitwise_equal(a[i].second, b[i].second));
  }
}

std::unique_ptr<optim::Optimizer> make_adamw(Tensor w, Tensor b) {
  return std::make_unique<optim::AdamW>(
      std::vector<optim::ParamGroup>{{{"w"}, {w}, 0.1}, {{"b"}, {b}, 0.0}}, 1e-2);
}
std::unique_ptr<optim::Optimizer> make_sgd(Tensor w, Tensor b) {
  return std::make_unique<optim::SGD>(std::vector<optim::ParamGroup>{{{"w", "b"}, {w, b}}}, 0.05,
                                      0.9, 0.01, true);
}

}  // namespace

TEST_CASE("optimizer state: a resumed run continues bitwise identically") {
  for (DType dtype : {DType::f64, DType::f32, DType::bf16}) {
    INFO("dtype " << dtype_name(dtype));
    check_resume(dtype, make_adamw);
    check_resume(dtype, make_sgd);
  }
}

TEST_CASE("optimizer state: names, dtypes, and conversion on load") {
  Run run(DType::bf16, make_adamw);
  run.step(0);
  const auto state = run.opt->state_tensors();
  REQUIRE(state.size() == 4);
  CHECK(state[0].first == "w.exp_avg");
  CHECK(state[1].first == "w.exp_avg_sq");
  CHECK(state[2].first == "b.exp_avg");
  CHECK(state[3].first == "b.exp_avg_sq");
  for (const auto& [name, t] : state) CHECK(t.dtype() == DType::f32);
  // f64 state given for bf16 parameters is converted to the f32 state dtype.
  optim::NamedTensors f64_state;
  for (const auto& [name, t] : state) f64_state.emplace_back(name, core::to(t, DType::f64));
  Run other(DType::bf16, make_adamw);
  other.opt->load_state_tensors(f64_state);
  const auto loaded = other.opt->state_tensors();
  REQUIRE(loaded.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(loaded[i].second.dtype() == DType::f32);
    CHECK(bitwise_equal(loaded[i].second, state[i].second));
    CHECK_FALSE(loaded[i].second.is_same(f64_state[i].second));
  }
}

TEST_CASE("optimizer state: malformed state is rejected naming the key") {
  Run run(DType::f32, make_adamw);
  run.step(0);
  const optim::NamedTensors good = run.opt->state_tensors();
  auto with = [&](size_t i, Tensor t) {
    optim::NamedTensors s = good;
    s[i].second = t;
    return s;
  };
  const Tensor wrong_shape = zeros({3, 2});
  CHECK_THROWS_WITH_AS(run.opt->load_state_tensors(with(0, wrong_shape)),
                       "AdamW: optimizer state 'w.exp_avg' has shape (3, 2), its parameter (2, 3)",
                       Error);
  CHECK_THROWS_WITH_AS(run.opt->load_state_tensors(with(3, zeros({2}, {DType::i64}))),
                       doctest::Contains("'b.exp_avg_sq' must be floating"), Error);
  optim::NamedTensors unknown = good;
  unknown.emplace_back("w.momentum_buffer", zeros({2, 3}));
  CHECK_THROWS_WITH_AS(run.opt->load_state_tensors(unknown),
                       "AdamW: unknown optimizer state 'w.momentum_buffer'", Error);
  optim::NamedTensors twice = good;
  twice.push_back(good[0]);
  CHECK_THROWS_WITH_AS(run.opt->load_state_tensors(twice), doctest::Contains("given twice"), Error);
  optim::NamedTensors partial = {good[0], good[2], good[3]};
  CHECK_THROWS_WITH_AS(run.opt->load_state_tensors(partial),
                       doctest::Contains("'w.exp_avg_sq' is missing"), Error);
  // None of the failed loads changed anything.
  const auto after = run.opt->state_tensors();
  REQUIRE(after.size() == good.size());
  for (size_t i = 0; i < after.size(); ++i) CHECK(after[i].second.is_same(good[i].second));
  // A parameter with no state at all starts fresh; the loaded list replaces everything.
  run.opt->load_state_tensors({good[2], good[3]});
  const auto only_b = run.opt->state_tensors();
  REQUIRE(only_b.size() == 2);
  CHECK(only_b[0].first == "b.exp_avg");
  CHECK_THROWS_WITH_AS(run.opt->set_steps_taken(-1), doctest::Contains("steps_taken"), Error);
}
