// Learning-rate schedules (values at warmup, peak, middle, end, after), the decay/no-decay
// parameter split, and global-norm clipping against a naive sum over every element.
#include <doctest/doctest.h>

#include <algorithm>  // core/cpu/parallel.h uses std::min without including it
#include <numbers>

#include "core/cpu/parallel.h"
#include "core/ops/random.h"
#include "core/ops/view.h"
#include "optim/clip.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "optim_test_util.h"

using namespace mnemo;
using namespace mnemo::test;
using optim::LrSchedule;

TEST_CASE("LrSchedule: warmup, cosine decay, floor") {
  const LrSchedule s{1.0, 0.1, 10, 110, LrSchedule::cosine};
  CHECK(s.at(0) == doctest::Approx(0.1));  // (0 + 1) / 10
  CHECK(s.at(4) == doctest::Approx(0.5));
  CHECK(s.at(9) == doctest::Approx(1.0));    // peak at the last warmup step
  CHECK(s.at(10) == doctest::Approx(1.0));   // progress 0
  CHECK(s.at(60) == doctest::Approx(0.55));  // progress 1/2: min + (max - min) / 2
  CHECK(s.at(35) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi / 4))));
  CHECK(s.at(109) > 0.1);
  CHECK(s.at(109) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.99))));
  CHECK(s.at(110) == 0.1);
  CHECK(s.at(1000) == 0.1);
  for (int64_t t = 10; t < 110; ++t) CHECK(s.at(t + 1) <= s.at(t));  // monotone decay
}

TEST_CASE("LrSchedule: linear and constant decay, no warmup") {
  const LrSchedule lin{2.0, 0.0, 0, 100, LrSchedule::linear};
  CHECK(lin.at(0) == 2.0);
  CHECK(lin.at(25) == doctest::Approx(1.5));
  CHECK(lin.at(50) == doctest::Approx(1.0));
  CHECK(lin.at(99) == doctest::Approx(0.02));
  CHECK(lin.at(100) == 0.0);
  const LrSchedule con{3e-4, 1e-5, 4, 50, LrSchedule::constant};
  CHECK(con.at(1) == doctest::Approx(1.5e-4));
  CHECK(con.at(4) == 3e-4);
  CHECK(con.at(49) == 3e-4);
  CHECK(con.at(500) == 3e-4);
  CHECK(optim::decay_from_name("linear") == LrSchedule::linear);
  CHECK(optim::decay_from_name("cosine") == LrSchedule::cosine);
  CHECK(optim::decay_from_name("constant") == LrSchedule::constant);
  CHECK_THROWS_WITH_AS(optim::decay_from_name("exp"), doctest::Contains("'exp'"), Error);
}

TEST_CASE("LrSchedule: invalid settings throw naming the field") {
  CHECK_THROWS_WITH_AS((LrSchedule{1, 2, 0, 10}.at(0)), doctest::Contains("min_lr"), Error);
  CHECK_THROWS_WITH_AS((LrSchedule{-1, 0, 0, 10}.at(0)), doctest::Contains("max_lr"), Error);
  CHECK_THROWS_WITH_AS((LrSchedule{1, 0, 20, 10}.at(0)), doctest::Contains("warmup_steps"), Error);
  CHECK_THROWS_WITH_AS((LrSchedule{1, 0, 0, 10}.at(-1)), doctest::Contains("step"), Error);
}

TEST_CASE("decay_groups: matrices decay; 1-d tensors and embeddings do not; tied once") {
  Tensor embed = zeros({10, 4}), q = zeros({4, 4}), norm = ones({4}), bias = zeros({4});
  Tensor head = zeros({10, 4}), scalar = zeros({});
  const optim::NamedTensors named = {{"model.embed_tokens.weight", embed},
                                     {"model.layers.0.self_attn.q_proj.weight", q},
                                     {"model.layers.0.input_layernorm.weight", norm},
                                     {"proj.bias", bias},
                                     {"lm_head.weight", embed},  // tied: the same tensor again
                                     {"other_head.weight", head},
                                     {"temperature", scalar}};
  const auto groups = optim::decay_groups(named, 0.1);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].weight_decay == 0.1);
  CHECK(groups[1].weight_decay == 0.0);
  CHECK(groups[0].names ==
        std::vector<std::string>{"model.layers.0.self_attn.q_proj.weight", "other_head.weight"});
  CHECK(groups[1].names == std::vector<std::string>{"model.embed_tokens.weight",
                                                    "model.layers.0.input_layernorm.weight",
                                                    "proj.bias", "temperature"});
  CHECK(groups[0].params[0].is_same(q));
  CHECK(groups[1].params[0].is_same(embed));
  // A tied tensor listed first under a non-embedding name still goes undecayed.
  const auto tied = optim::decay_groups({{"lm_head.weight", head}, {"embed.weight", head}}, 0.1);
  CHECK(tied[0].names.empty());
  CHECK(tied[1].names == std::vector<std::string>{"lm_head.weight"});
}

namespace {

// The naive reference: every element of every defined gradient, one at a time, in f64.
double naive_norm(const std::vector<Tensor>& params) {
  double total = 0;
  for (const Tensor& p : params) {
    if (!p.grad().defined()) continue;
    for (double g : p.grad().to_vector<double>()) total += g * g;
  }
  return std::sqrt(total);
}

}  // namespace

TEST_CASE("clip_grad_norm: the global norm and the scaled gradients") {
  for (DType dtype : {DType::f32, DType::f64, DType::bf16}) {
    INFO("dtype " << dtype_name(dtype));
    Generator gen(7);
    Tensor a = zeros({300, 257}, {dtype}), b = zeros({5}, {dtype}), c = zeros({3}, {dtype});
    a.set_grad(randn({300, 257}, {dtype}, &gen));  // > one block, parallel path
    b.set_grad(from_vector(std::vector<double>{3, -4, 0, 1, 2}, {5}, {dtype}));
    // c has no gradient: skipped.
    const std::vector<Tensor> params = {a, b, c};
    const double want = naive_norm(params);
    CHECK(optim::global_grad_norm(params) == doctest::Approx(want).epsilon(1e-12));
    const std::vector<double> a_before = a.grad().to_vector<double>();
    const std::vector<double> b_before = b.grad().to_vector<double>();
    // Below the threshold: nothing changes.
    CHECK(optim::clip_grad_norm(params, want * 2) == doctest::Approx(want).epsilon(1e-12));
    CHECK(a.grad().to_vector<double>() == a_before);
    // Above: every gradient scaled by max_norm / (norm + 1e-6).
    const double max_norm = want / 4;
    const double factor = max_norm / (want + 1e-6);
    CHECK(optim::clip_factor(want, max_norm) == factor);
    CHECK(optim::clip_grad_norm(params, max_norm) == doctest::Approx(want).epsilon(1e-12));
    const double rtol = dtype == DType::bf16 ? 1.0 / 128 : dtype == DType::f32 ? 1e-6 : 1e-14;
    std::vector<double> want_b(b_before.size());
    for (size_t i = 0; i < b_before.size(); ++i) want_b[i] = b_before[i] * factor;
    check_close(b.grad().to_vector<double>(), want_b, rtol, 0);
    std::vector<double> want_a(a_before.size());
    for (size_t i = 0; i < a_before.size(); ++i) want_a[i] = a_before[i] * factor;
    check_close(a.grad().to_vector<double>(), want_a, rtol, 0);
    CHECK(optim::global_grad_norm(params) ==
          doctest::Approx(want * factor).epsilon(std::max(rtol, 1e-12)));
    CHECK_FALSE(c.grad().defined());
  }
}

TEST_CASE("clip_grad_norm: deterministic across thread counts; non-finite norms") {
  Generator gen(3);
  Tensor a = zeros({1000, 333});
  a.set_grad(randn({1000, 333}, {}, &gen));
  const int threads = num_threads();
  set_num_threads(1);
  const double one = optim::global_grad_norm({a});
  set_num_threads(2);
  const double two = optim::global_grad_norm({a});
  set_num_threads(threads);
  CHECK(one == two);
  CHECK(one == doctest::Approx(naive_norm({a})).epsilon(1e-12));
  // Non-contiguous gradients are read correctly.
  Tensor t = zeros({4, 3});
  t.set_grad(core::transpose(
      from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {3, 4}), 0, 1));
  CHECK(optim::global_grad_norm({t}) == doctest::Approx(std::sqrt(650.0)));
  // An infinite gradient: the norm is returned, the gradients are left alone.
  Tensor inf = zeros({2});
  inf.set_grad(from_vector(std::vector<double>{INFINITY, 1}, {2}));
  CHECK(std::isinf(optim::clip_grad_norm({inf}, 1.0)));
  CHECK(inf.grad().to_vector<double>()[1] == 1.0);
  CHECK_THROWS_WITH_AS(optim::clip_grad_norm({a}, 0), doctest::Contains("max_norm"), Error);
}
