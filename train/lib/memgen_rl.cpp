// GRPO for MemGen's trigger, with the weaver trained under its pattern (memgen_rl.h).
#include "train/lib/memgen_rl.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ostream>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/splitmix64.h"
#include "optim/clip.h"
#include "optim/param_groups.h"
#include "train/lib/run_support.h"
#include "train/rl/advantages.h"
#include "train/rl/losses.h"

namespace mnemo::train {

using memory::ChainRule;
using memory::ChainSplit;
using memory::InsertMode;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The mean of the first and of the last tenth of a series.
std::pair<double, double> first_and_last_tenth(const std::vector<double>& v) {
  if (v.empty()) return {0, 0};
  const size_t n = std::max<size_t>(1, v.size() / 10);
  double first = 0, last = 0;
  for (size_t i = 0; i < n; ++i) {
    first += v[i] / double(n);
    last += v[v.size() - 1 - i] / double(n);
  }
  return {first, last};
}

}  // namespace

TriggerTrainStats train_trigger(memory::MemGenLM& lm, memory::MemGenTrigger& trigger,
                                SupervisedSteps& weaver_steps, const memory::ChainTask& task,
                                const text::Tokenizer& tokenizer, const TriggerTrainOptions& o,
                                std::ostream& log) {
  MNEMO_CHECK(o.steps >= 0 && o.prompts >= 1 && o.group_size >= 2 && o.lr > 0 && o.penalty >= 0 &&
                  o.epochs >= 1,
              "memgen trigger: need steps >= 0, prompts >= 1, group_size >= 2, lr > 0, "
              "penalty >= 0 and epochs >= 1");
  const auto start = Clock::now();
  const int64_t P = o.prompts, G = o.group_size, N = P * G;
  const int64_t C = lm.reasoner().config.hidden_size;
  optim::AdamW optimizer(optim::decay_groups(trigger.named_parameters(), 0.0), o.lr, 0.9, 0.95);
  rl::ClipOptions clip;
  clip.epsilon_low = clip.epsilon_high = o.epsilon;
  memory::MemGenGenerateOptions g;
  g.mode = InsertMode::trigger;
  g.sample_decisions = true;
  g.eos_id = tokenizer.eos_id();
  g.vocab_limit = tokenizer.vocab_size();
  g.max_new_tokens = 2 * task.steps() + 2;
  std::vector<double> task_rewards, insert_rates;
  TriggerTrainStats stats;
  double last_step = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    if (o.budget_seconds > 0 && step > 0 &&
        seconds_since(start) + 1.2 * last_step > o.budget_seconds) {
      break;
    }
    const auto step_start = Clock::now();
    // 1. Rollouts: prompt p's G rows are rows p * G .. p * G + G - 1.
    std::vector<memory::Chain> chains;
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t p = 0; p < P; ++p) {
      const memory::Chain c =
          task.chain(ChainRule::b, ChainSplit::train, o.first_chain + uint64_t(step * P + p));
      for (int64_t k = 0; k < G; ++k) {
        chains.push_back(c);
        prompts.push_back(chain_prompt_ids(c, tokenizer));
      }
    }
    g.seed = splitmix64_at(o.seed, uint64_t(step));
    const memory::MemGenGenerated rollouts = memory::memgen_generate(lm, &trigger, prompts, g);
    // 2. Rewards.
    std::vector<double> task_reward(static_cast<size_t>(N));
    std::vector<std::vector<uint8_t>> decisions(static_cast<size_t>(N));
    for (const memory::TriggerDecision& d : rollouts.decisions) {
      decisions[size_t(d.row)].push_back(d.insert);
    }
    for (int64_t r = 0; r < N; ++r) {
      std::vector<int32_t> answer = rollouts.tokens[size_t(r)];
      if (!answer.empty() && answer.back() == tokenizer.eos_id()) answer.pop_back();
      task_reward[size_t(r)] =
          rollouts.ended[size_t(r)] &&
          memory::ChainTask::final_of(tokenizer.decode(answer)) == chains[size_t(r)].final_answer;
    }
    const double mid = median(task_reward);
    double good_inserts = 0, good_decisions = 0, inserts = 0;
    for (int64_t r = 0; r < N; ++r) {
      const auto& d = decisions[size_t(r)];
      const double n_insert = double(std::count(d.begin(), d.end(), uint8_t(1)));
      inserts += n_insert;
      if (task_reward[size_t(r)] >= mid) {
        good_inserts += n_insert;
        good_decisions += double(d.size());
      }
    }
    const double pbar = good_decisions > 0 ? good_inserts / good_decisions : 0;
    std::vector<double> reward(static_cast<size_t>(N));
    for (int64_t r = 0; r < N; ++r) {
      double penalty = 0;
      for (uint8_t d : decisions[size_t(r)]) penalty += std::max(0.0, double(d) - pbar);
      reward[size_t(r)] = task_reward[size_t(r)] - o.penalty * penalty;
    }
    // 3. Advantages; 4. the trigger's update over every decision of the batch.
    // Not scaled by the group's std: in a group whose rows all got the task right (or all
    // wrong), the penalty's small differences would be blown up to advantages of +-1 and
    // teach the trigger to stop inserting whatever it costs the task (measured: it did).
    const std::vector<double> advantage = rl::group_advantages(reward, G, rl::ScaleRewards::none);
    const int64_t D = int64_t(rollouts.decisions.size());
    if (D > 0) {
      std::vector<float> features, taken, old_logp, adv, weight;
      for (const memory::TriggerDecision& d : rollouts.decisions) {
        features.insert(features.end(), d.feature.begin(), d.feature.end());
        taken.push_back(d.insert ? 1.0f : 0.0f);
        old_logp.push_back(float(std::log(d.insert ? d.p_insert : 1 - d.p_insert)));
        adv.push_back(float(advantage[size_t(d.row)]));
        weight.push_back(float(1.0 / (double(decisions[size_t(d.row)].size()) * double(N))));
      }
      const Tensor f = from_vector(features, {D, C});
      const Tensor a = from_vector(taken, {D});
      for (int64_t e = 0; e < o.epochs; ++e) {
        const Tensor logp = reshape(trigger.log_prob(f, a), {1, D});
        const Tensor loss =
            rl::clipped_policy_loss(logp, from_vector(old_logp, {1, D}), from_vector(adv, {1, D}),
                                    from_vector(weight, {1, D}), Tensor(), clip);
        backward(loss);
        optimizer.step(optim::clip_factor(optimizer.grad_norm(), 1.0));
        optimizer.zero_grad();
      }
    }
    // 5. The weaver under the rollouts' patterns.
    if (o.train_weaver) {
      const ChainRows rows = chain_rows(chains, tokenizer);
      const memory::InsertionPlan plan = chain_plan(lm, rows, InsertMode::trigger, &decisions);
      const Tensor loss = memory::MemGenLM::loss(lm.forward(rows.ids, plan), rows.targets);
      if (loss.requires_grad()) weaver_steps.step(loss);  // no row inserted: nothing to learn
    }
    double mean_reward = 0;
    for (double r : task_reward) mean_reward += r / double(N);
    const double rate = D > 0 ? inserts / double(D) : 0;
    task_rewards.push_back(mean_reward);
    insert_rates.push_back(rate);
    stats.steps = step + 1;
    last_step = seconds_since(step_start);
    if (step % 10 == 0 || step + 1 == o.steps) {
      log << fmt::format(
          "memgen trigger: step {}, task reward {:.3f}, insertions {:.2f} per chain (rate "
          "{:.2f}, pbar {:.2f}), {:.1f} s\n",
          step, mean_reward, inserts / double(N), rate, pbar, seconds_since(start));
    }
  }
  std::tie(stats.reward_first, stats.reward_last) = first_and_last_tenth(task_rewards);
  std::tie(stats.insert_rate_first, stats.insert_rate_last) = first_and_last_tenth(insert_rates);
  stats.seconds = seconds_since(start);
  return stats;
}

}  // namespace mnemo::train
