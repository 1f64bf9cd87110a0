// Advantages: how much better than expected each sampled answer (GRPO) or each token (PPO)
// turned out. Plain host arithmetic in f64 on the whole step's batch (every rank computes the
// same numbers from the gathered rewards), written so a test can follow it by hand.
//
// GRPO (Shao et al. 2024, DeepSeekMath): no value function; the G answers to one prompt are
// their own baseline. For sample i of group g with reward r_i:
//     A_i = (r_i - mean_g(r)) / (s + eps),      eps = 1e-4
//   scale_rewards = group:  s = std_g(r), the group's standard deviation (unbiased, n - 1)
//                   batch:  s = std(r) over every sample of the step (one scale for all)
//                   none:   s + eps = 1 (no scaling: Dr. GRPO, Liu et al. 2025)
// A group whose rewards are all equal has A = 0 for every sample: no signal. Such groups are
// counted (zero_variance_groups) and may be left out of the loss's normalisation.
//
// PPO (Schulman et al. 2017; Ziegler et al. 2019 for language models): a value V_t per
// token, rewards per token, and generalised advantage estimation (Schulman et al. 2016):
//     delta_t = r_t + gamma V_{t+1} - V_t            (V_T = 0 after the last action)
//     A_t     = delta_t + gamma lambda A_{t+1}       (A_T = 0)
//     R_t     = A_t + V_t                            (the value target, "returns")
// lambda = 0 gives the one-step TD error, lambda = 1 the Monte-Carlo return minus V_t.
// The per-token reward is the KL penalty to the reference plus the task's score on the last
// token:  r_t = -kl_coef (log pi(a_t) - log pi_ref(a_t)) + [t = last] score.
// The advantages are then whitened over every action of the batch: (A - mean) / sqrt(var +
// 1e-8), var unbiased.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace mnemo::rl {

enum class ScaleRewards { group, batch, none };
ScaleRewards parse_scale_rewards(std::string_view name);  // group | batch | none

inline constexpr double kAdvantageEps = 1e-4;

// rewards (N = P * G), group g = samples [g * G, (g + 1) * G) -> advantages (N).
std::vector<double> group_advantages(std::span<const double> rewards, int64_t group_size,
                                     ScaleRewards scale);
// (P) 1 where every reward of the group is the same.
std::vector<uint8_t> zero_variance_groups(std::span<const double> rewards, int64_t group_size);

struct Gae {
  std::vector<double> advantages;  // (T)
  std::vector<double> returns;     // (T) = advantages + values
};
// One trajectory of T actions: rewards (T), values (T).
Gae gae(std::span<const double> rewards, std::span<const double> values, double gamma,
        double lambda);

// PPO's per-token rewards of one answer of T actions: -kl_coef (logp - ref_logp), plus score
// on the last action.
std::vector<double> kl_penalised_rewards(std::span<const double> logprobs,
                                         std::span<const double> ref_logprobs, double kl_coef,
                                         double score);

// (x - mean) / sqrt(var + 1e-8) over the entries where mask != 0 (var unbiased); the others
// are left as they are.
void whiten(std::vector<double>& x, std::span<const float> mask);

// 1 - Var(returns - values) / Var(returns) over the masked entries: 1 is a perfect value
// function, 0 no better than a constant, negative worse. 0 when Var(returns) is 0.
double explained_variance(std::span<const double> values, std::span<const double> returns,
                          std::span<const float> mask);

// The adaptive KL coefficient of Ziegler et al. (2019): after a step whose KL to the
// reference was `kl`, coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * steps / horizon.
struct AdaptiveKl {
  double coef = 0.05;
  double target = 6.0;
  double horizon = 10000;
  void update(double kl, int64_t steps);
};

}  // namespace mnemo::rl
