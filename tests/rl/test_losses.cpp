// GRPO's and PPO's losses (train/rl/losses.h) against values computed by hand: the four
// normalisations, the clipped surrogate on both sides with masks, the ratio at mu = 1, the
// k3 KL and the clipped value loss.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "support/tensors.h"
#include "train/rl/losses.h"

using namespace mnemo;
using namespace mnemo::rl;

namespace {

Tensor f64(const std::vector<double>& v, int64_t rows, int64_t cols) {
  return from_vector(v, {rows, cols}, {DType::f64});
}

std::vector<double> host(const Tensor& t) {
  return to(detach(t), Device::cpu()).to_vector<double>();
}

}  // namespace

// Two sequences of 4 slots: row 0 has 3 actions, row 1 one. The update has 8 actions over its
// grad_accum = 2 micro-batches (this one has 4), dr_grpo's length is 4.
TEST_CASE("rl losses: token weights of the four loss types") {
  const std::vector<float> mask{1, 1, 1, 0, /**/ 0, 1, 0, 0};
  Normaliser n;
  n.sequences = 2;
  n.micro_tokens = 4;
  n.update_tokens = 8;
  n.max_new_tokens = 4;
  n.grad_accum = 2;
  struct Case {
    LossType type;
    double row0, row1;  // the weight of an action of each row
  };
  const Case cases[] = {
      {LossType::grpo, 1.0 / (3 * 2 * 2), 1.0 / (1 * 2 * 2)},     // 1 / (|o_i| seqs accum)
      {LossType::bnpo, 1.0 / (4 * 2), 1.0 / (4 * 2)},             // 1 / (micro tokens accum)
      {LossType::dr_grpo, 1.0 / (2 * 4 * 2), 1.0 / (2 * 4 * 2)},  // 1 / (seqs max_len accum)
      {LossType::dapo, 1.0 / 8, 1.0 / 8},                         // 1 / (update tokens)
  };
  for (const Case& c : cases) {
    n.type = c.type;
    const std::vector<float> w = token_weights(n, mask, 2, 4);
    for (size_t i = 0; i < w.size(); ++i) {
      const double expected = mask[i] == 0 ? 0.0 : (i < 4 ? c.row0 : c.row1);
      CHECK(w[i] == doctest::Approx(expected).epsilon(1e-7));
    }
  }
  CHECK(parse_loss_type("dr_grpo") == LossType::dr_grpo);
  CHECK_THROWS_AS(parse_loss_type("ppo"), Error);
}

// rho = 1.5, 0.5, 1.1, 0.5, 3 with A = +1, -1, +2, +1, +1; eps_low 0.2, eps_high 0.28; the
// last slot has weight 0 (not an action).
//   slot 0: min(1.5, 1.28) = 1.28 (clipped high)   l = -1.28   dl/dlogp = 0
//   slot 1: min(-0.5, -0.8) = -0.8 (clipped low)   l = 0.8     dl/dlogp = 0
//   slot 2: min(2.2, 2.2) = 2.2                    l = -2.2    dl/dlogp = -rho A = -2.2
//   slot 3: min(0.5, 0.8) = 0.5 (A > 0: no clip)   l = -0.5    dl/dlogp = -0.5
//   loss = -1.28 + 0.8 - 2.2 - 0.5 = -3.18
TEST_CASE("rl losses: the clipped surrogate on both sides, with a mask") {
  const std::vector<double> rho{1.5, 0.5, 1.1, 0.5, 3.0};
  std::vector<double> logp(5), old(5, -1.0);
  for (size_t i = 0; i < 5; ++i) logp[i] = old[i] + std::log(rho[i]);
  Tensor lp = f64(logp, 1, 5).set_requires_grad();
  ClipOptions o;
  o.epsilon_low = 0.2;
  o.epsilon_high = 0.28;
  PolicyLossStats stats;
  const Tensor loss = clipped_policy_loss(lp, f64(old, 1, 5), f64({1, -1, 2, 1, 1}, 1, 5),
                                          f64({1, 1, 1, 1, 0}, 1, 5), Tensor(), o, &stats);
  CHECK(loss.item() == doctest::Approx(-3.18).epsilon(1e-12));
  backward(loss);
  const std::vector<double> g = host(lp.grad());
  const std::vector<double> expected{0, 0, -2.2, -0.5, 0};
  for (size_t i = 0; i < 5; ++i) CHECK(g[i] == doctest::Approx(expected[i]).epsilon(1e-12));
  CHECK(stats.tokens == 4);
  CHECK(stats.clipped_high == 1);
  CHECK(stats.clipped_low == 1);
  CHECK(stats.ratio == doctest::Approx(1.5 + 0.5 + 1.1 + 0.5));
}

// With beta, each slot adds beta k3; logp = 0 and ref = log 2 give k3 = 2 - log 2 - 1.
TEST_CASE("rl losses: the k3 term weighted by beta") {
  Tensor lp = f64({0.0, 0.0}, 1, 2).set_requires_grad();
  ClipOptions o;
  o.beta = 0.5;
  PolicyLossStats stats;
  // rho = 1 and A = 0: only the KL term remains.
  const Tensor loss =
      clipped_policy_loss(lp, f64({0, 0}, 1, 2), f64({0, 0}, 1, 2), f64({1, 0.5}, 1, 2),
                          f64({std::log(2.0), 0}, 1, 2), o, &stats);
  const double k3 = 2 - std::log(2.0) - 1;
  CHECK(loss.item() == doctest::Approx(0.5 * k3).epsilon(1e-12));
  CHECK(stats.kl == doctest::Approx(k3).epsilon(1e-12));
  backward(loss);
  // dk3/dlogp = 1 - e^(ref - logp) = 1 - 2 = -1, times beta and the weight 1.
  CHECK(host(lp.grad())[0] == doctest::Approx(-0.5).epsilon(1e-12));
  CHECK(host(lp.grad())[1] == 0.0);
}

// On the first pass over fresh rollouts old = logp: the ratio is exactly 1 and the clipped
// loss equals the unclipped one (any epsilon), gradient included.
TEST_CASE("rl losses: at mu = 1 the ratio is exactly 1 and clipping changes nothing") {
  const Tensor base = test::random_tensor({3, 4}, 7, DType::f32, -3, -0.1);
  const Tensor adv = test::random_tensor({3, 4}, 8, DType::f32);
  const Tensor w = test::random_tensor({3, 4}, 9, DType::f32, 0, 1);
  std::vector<double> losses, grads;
  for (double eps : {0.2, 0.0, 0.9}) {
    Tensor lp = detach(base).set_requires_grad();
    Tensor logp = lp * 1.0;  // the training forward's output, with a graph
    ClipOptions o;
    o.epsilon_low = eps;
    o.epsilon_high = eps;
    PolicyLossStats stats;
    const Tensor loss = clipped_policy_loss(logp, detach(logp), adv, w, Tensor(), o, &stats);
    CHECK(stats.ratio == stats.tokens);  // every rho == 1 exactly
    CHECK(stats.clipped_low + stats.clipped_high == 0);
    backward(loss);
    losses.push_back(loss.item());
    for (double g : host(lp.grad())) grads.push_back(g);
  }
  CHECK(losses[0] == losses[1]);
  CHECK(losses[0] == losses[2]);
  for (size_t i = 0; i < 12; ++i) {
    CHECK(grads[i] == grads[12 + i]);
    CHECK(grads[i] == grads[24 + i]);
  }
  // And it is -sum w A (rho = 1): the policy gradient.
  double expected = 0;
  const std::vector<double> a = host(adv), ww = host(w);
  for (size_t i = 0; i < 12; ++i) expected -= a[i] * ww[i];
  CHECK(losses[0] == doctest::Approx(expected).epsilon(1e-6));
}

TEST_CASE("rl losses: k3 is >= 0, exactly 0 at equality, and its gradient passes gradcheck") {
  const Tensor logp = test::random_tensor({4, 5}, 1, DType::f64, -4, 0);
  const Tensor ref = test::random_tensor({4, 5}, 2, DType::f64, -4, 0);
  for (double k : host(k3_kl(logp, ref))) CHECK(k >= 0);
  for (double k : host(k3_kl(logp, logp))) CHECK(k == 0.0);
  const GradcheckResult r = gradcheck([&](const TensorList& x) { return k3_kl(x[0], ref); },
                                      {detach(logp).set_requires_grad()});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.elements_checked == 20);
}

// c = 0.2:
//   v 1.0, old 0.5, R 1.0: plain 0, v_clip 0.7, cut 0.09 -> lv 0.045 (clipped), dlv/dv 0
//   v 0.6, old 0.5, R 0.0: inside the range, 0.36     -> lv 0.18,  dlv/dv = v - R = 0.6
//   v 0.0, old 0.5, R 1.0: plain 1, v_clip 0.3, 0.49  -> lv 0.5,   dlv/dv = v - R = -1
//   sum 0.725
TEST_CASE("rl losses: the clipped value loss") {
  Tensor v = f64({1.0, 0.6, 0.0}, 1, 3).set_requires_grad();
  ValueLossStats stats;
  const Tensor loss = clipped_value_loss(v, f64({0.5, 0.5, 0.5}, 1, 3), f64({1.0, 0.0, 1.0}, 1, 3),
                                         f64({1, 1, 1}, 1, 3), 0.2, &stats);
  CHECK(loss.item() == doctest::Approx(0.725).epsilon(1e-12));
  CHECK(stats.tokens == 3);
  CHECK(stats.clipped == 1);
  backward(loss);
  const std::vector<double> g = host(v.grad());
  CHECK(g[0] == doctest::Approx(0.0));
  CHECK(g[1] == doctest::Approx(0.6).epsilon(1e-12));
  CHECK(g[2] == doctest::Approx(-1.0).epsilon(1e-12));
}
