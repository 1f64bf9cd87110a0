// GRPO's group advantages and PPO's GAE (train/rl/advantages.h) against hand computations.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "train/rl/advantages.h"

using namespace mnemo;
using namespace mnemo::rl;

// Two groups of 4: rewards 1 0 0 1 (mean 0.5, unbiased std sqrt(1/3)) and 0 0 0 0.
TEST_CASE("rl advantages: group normalisation, group | batch | none") {
  const std::vector<double> r{1, 0, 0, 1, 0, 0, 0, 0};
  const double group_std = std::sqrt(1.0 / 3.0);
  // Over all 8: mean 0.25, sum of squares 2 (0.75^2) + 6 (0.25^2) = 1.5, std sqrt(1.5 / 7).
  const double batch_std = std::sqrt(1.5 / 7.0);
  struct Case {
    ScaleRewards scale;
    double s;  // what the first group's deviations are divided by
  };
  for (const Case& c :
       {Case{ScaleRewards::group, group_std + kAdvantageEps},
        Case{ScaleRewards::batch, batch_std + kAdvantageEps}, Case{ScaleRewards::none, 1.0}}) {
    const std::vector<double> a = group_advantages(r, 4, c.scale);
    const double up = 0.5 / c.s;
    const std::vector<double> expected{up, -up, -up, up, 0, 0, 0, 0};
    for (size_t i = 0; i < 8; ++i) CHECK(a[i] == doctest::Approx(expected[i]).epsilon(1e-12));
  }
  CHECK(zero_variance_groups(r, 4) == std::vector<uint8_t>{0, 1});
  CHECK(parse_scale_rewards("batch") == ScaleRewards::batch);
  CHECK_THROWS_AS(group_advantages(r, 3, ScaleRewards::group), Error);
}

// Rewards 0 0 1, values 0.5 0.25 0.75 (V after the last action is 0).
//   gamma 1, lambda 1:   A_t = (sum of rewards from t) - V_t = 0.5, 0.75, 0.25
//   gamma 0.5, lambda 0: A_t = delta_t = r_t + 0.5 V_{t+1} - V_t = -0.375, 0.125, 0.25
//   gamma 0.5, lambda 0.5 (gamma lambda = 0.25): A_2 = 0.25, A_1 = 0.125 + 0.25 A_2 = 0.1875,
//                        A_0 = -0.375 + 0.25 A_1 = -0.328125
//   gamma 0:             A_t = r_t - V_t = -0.5, -0.25, 0.25 (whatever lambda)
TEST_CASE("rl advantages: GAE on a hand-computed trajectory") {
  const std::vector<double> rewards{0, 0, 1}, values{0.5, 0.25, 0.75};
  struct Case {
    double gamma, lambda;
    std::vector<double> advantages;
  };
  const std::vector<Case> cases{
      {1, 1, {0.5, 0.75, 0.25}},
      {0.5, 0, {-0.375, 0.125, 0.25}},
      {0.5, 0.5, {-0.328125, 0.1875, 0.25}},
      {0, 0, {-0.5, -0.25, 0.25}},
      {0, 0.5, {-0.5, -0.25, 0.25}},
      {0, 1, {-0.5, -0.25, 0.25}},
  };
  for (const Case& c : cases) {
    const Gae g = gae(rewards, values, c.gamma, c.lambda);
    for (size_t t = 0; t < 3; ++t) {
      CHECK(g.advantages[t] == doctest::Approx(c.advantages[t]).epsilon(1e-12));
      CHECK(g.returns[t] == doctest::Approx(c.advantages[t] + values[t]).epsilon(1e-12));
    }
  }
  // All nine pairs against the closed form A_t = sum_l (gamma lambda)^l delta_{t+l}.
  for (double gamma : {0.0, 0.5, 1.0}) {
    for (double lambda : {0.0, 0.5, 1.0}) {
      const Gae g = gae(rewards, values, gamma, lambda);
      for (size_t t = 0; t < 3; ++t) {
        double a = 0, decay = 1;
        for (size_t u = t; u < 3; ++u) {
          const double next = u + 1 < 3 ? values[u + 1] : 0.0;
          a += decay * (rewards[u] + gamma * next - values[u]);
          decay *= gamma * lambda;
        }
        CHECK(g.advantages[t] == doctest::Approx(a).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE("rl advantages: KL-penalised rewards, whitening, explained variance, adaptive KL") {
  // -0.1 (logp - ref) per token, the score on the last.
  const std::vector<double> r =
      kl_penalised_rewards(std::vector<double>{-1, -2}, std::vector<double>{-1.5, -1}, 0.1, 1.0);
  CHECK(r[0] == doctest::Approx(-0.05));
  CHECK(r[1] == doctest::Approx(0.1 + 1.0));
  // Whitening over the masked entries only: 1 2 3 -> -1 0 1 (unbiased std 1).
  std::vector<double> x{1, 99, 2, 3};
  whiten(x, std::vector<float>{1, 0, 1, 1});
  CHECK(x[0] == doctest::Approx(-1).epsilon(1e-6));
  CHECK(x[1] == 99);
  CHECK(x[2] == doctest::Approx(0).epsilon(1e-6));
  CHECK(x[3] == doctest::Approx(1).epsilon(1e-6));
  const std::vector<float> all{1, 1, 1};
  const std::vector<double> returns{1, 2, 3}, zeros{0, 0, 0};
  CHECK(explained_variance(returns, returns, all) == 1.0);
  CHECK(explained_variance(zeros, returns, all) == doctest::Approx(0.0));
  AdaptiveKl kl{0.1, 1.0, 100};
  kl.update(2.0, 10);  // error clipped to 0.2: coef *= 1 + 0.2 * 10 / 100
  CHECK(kl.coef == doctest::Approx(0.1 * 1.02));
}
