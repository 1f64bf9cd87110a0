// Advantages for GRPO and PPO (see advantages.h).
#include "train/rl/advantages.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mnemo::rl {

namespace {

// Mean and unbiased standard deviation of x (std 0 for fewer than 2 values).
std::pair<double, double> mean_std(std::span<const double> x) {
  const double n = double(x.size());
  double mean = 0;
  for (double v : x) mean += v;
  mean /= n;
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  return {mean, x.size() < 2 ? 0.0 : std::sqrt(ss / (n - 1))};
}

void check_groups(std::span<const double> rewards, int64_t G) {
  MNEMO_CHECK(G >= 1 && !rewards.empty() && int64_t(rewards.size()) % G == 0,
              "advantages: {} rewards do not make groups of {}", rewards.size(), G);
}

}  // namespace

ScaleRewards parse_scale_rewards(std::string_view name) {
  if (name == "group") return ScaleRewards::group;
  if (name == "batch") return ScaleRewards::batch;
  if (name == "none") return ScaleRewards::none;
  fail("rl: scale_rewards must be group, batch or none, got '{}'", name);
}

std::vector<double> group_advantages(std::span<const double> rewards, int64_t G,
                                     ScaleRewards scale) {
  check_groups(rewards, G);
  const int64_t N = int64_t(rewards.size());
  const double batch_std = mean_std(rewards).second;
  std::vector<double> a(static_cast<size_t>(N));
  for (int64_t first = 0; first < N; first += G) {
    const auto [mean, std] = mean_std(rewards.subspan(size_t(first), size_t(G)));
    const double s = scale == ScaleRewards::group   ? std + kAdvantageEps
                     : scale == ScaleRewards::batch ? batch_std + kAdvantageEps
                                                    : 1.0;
    for (int64_t i = first; i < first + G; ++i) a[size_t(i)] = (rewards[size_t(i)] - mean) / s;
  }
  return a;
}

std::vector<uint8_t> zero_variance_groups(std::span<const double> rewards, int64_t G) {
  check_groups(rewards, G);
  std::vector<uint8_t> zero;
  for (size_t first = 0; first < rewards.size(); first += size_t(G)) {
    const auto group = rewards.subspan(first, size_t(G));
    zero.push_back(
        std::all_of(group.begin(), group.end(), [&](double r) { return r == group[0]; }) ? 1 : 0);
  }
  return zero;
}

Gae gae(std::span<const double> rewards, std::span<const double> values, double gamma,
        double lambda) {
  MNEMO_CHECK(rewards.size() == values.size(), "gae: {} rewards but {} values", rewards.size(),
              values.size());
  const size_t T = rewards.size();
  Gae out;
  out.advantages.assign(T, 0.0);
  out.returns.assign(T, 0.0);
  double next_value = 0, next_advantage = 0;
  for (size_t t = T; t-- > 0;) {
    const double delta = rewards[t] + gamma * next_value - values[t];
    next_advantage = delta + gamma * lambda * next_advantage;
    next_value = values[t];
    out.advantages[t] = next_advantage;
    out.returns[t] = next_advantage + values[t];
  }
  return out;
}

std::vector<double> kl_penalised_rewards(std::span<const double> logprobs,
                                         std::span<const double> ref_logprobs, double kl_coef,
                                         double score) {
  MNEMO_CHECK(logprobs.size() == ref_logprobs.size() && !logprobs.empty(),
              "kl_penalised_rewards: {} log-probs, {} reference log-probs (need as many, >= 1)",
              logprobs.size(), ref_logprobs.size());
  std::vector<double> r(logprobs.size());
  for (size_t t = 0; t < r.size(); ++t) r[t] = -kl_coef * (logprobs[t] - ref_logprobs[t]);
  r.back() += score;
  return r;
}

void whiten(std::vector<double>& x, std::span<const float> mask) {
  MNEMO_CHECK(x.size() == mask.size(), "whiten: {} values, {} mask entries", x.size(), mask.size());
  double n = 0, mean = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (mask[i] != 0) {
      mean += x[i];
      n += 1;
    }
  }
  if (n < 2) return;
  mean /= n;
  double ss = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (mask[i] != 0) ss += (x[i] - mean) * (x[i] - mean);
  }
  const double scale = 1.0 / std::sqrt(ss / (n - 1) + 1e-8);
  for (size_t i = 0; i < x.size(); ++i) {
    if (mask[i] != 0) x[i] = (x[i] - mean) * scale;
  }
}

double explained_variance(std::span<const double> values, std::span<const double> returns,
                          std::span<const float> mask) {
  MNEMO_CHECK(values.size() == returns.size() && values.size() == mask.size(),
              "explained_variance: sizes {}, {}, {} differ", values.size(), returns.size(),
              mask.size());
  std::vector<double> err, ret;
  for (size_t i = 0; i < values.size(); ++i) {
    if (mask[i] == 0) continue;
    ret.push_back(returns[i]);
    err.push_back(returns[i] - values[i]);
  }
  if (ret.size() < 2) return 0;
  const double var_ret = std::pow(mean_std(ret).second, 2);
  if (var_ret == 0) return 0;
  return 1 - std::pow(mean_std(err).second, 2) / var_ret;
}

void AdaptiveKl::update(double kl, int64_t steps) {
  const double error = std::clamp(kl / target - 1, -0.2, 0.2);
  coef *= 1 + error * double(steps) / horizon;
}

}  // namespace mnemo::rl
