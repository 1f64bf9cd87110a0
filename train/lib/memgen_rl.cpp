// GRPO for MemGen's trigger, with the weaver trained under its pattern, and for the weaver
// alone (memgen_rl.h).
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

// P training chains of rule B, each repeated G times (prompt p's rows are p * G .. p * G + G
// - 1), and their prompts.
struct Groups {
  std::vector<memory::Chain> chains;
  std::vector<std::vector<int32_t>> prompts;
};
Groups group_chains(const memory::ChainTask& task, const text::Tokenizer& tokenizer, uint64_t first,
                    int64_t P, int64_t G) {
  Groups out;
  for (int64_t p = 0; p < P; ++p) {
    const memory::Chain c = task.chain(ChainRule::b, ChainSplit::train, first + uint64_t(p));
    for (int64_t k = 0; k < G; ++k) {
      out.chains.push_back(c);
      out.prompts.push_back(chain_prompt_ids(c, tokenizer));
    }
  }
  return out;
}

// 1 where a rollout ended with the chain's final answer, else 0.
std::vector<double> final_answer_rewards(const memory::MemGenGenerated& rollouts,
                                         const std::vector<memory::Chain>& chains,
                                         const text::Tokenizer& tokenizer) {
  std::vector<double> reward(chains.size());
  for (size_t r = 0; r < chains.size(); ++r) {
    std::vector<int32_t> answer = rollouts.tokens[r];
    if (!answer.empty() && answer.back() == tokenizer.eos_id()) answer.pop_back();
    reward[r] = rollouts.ended[r] &&
                memory::ChainTask::final_of(tokenizer.decode(answer)) == chains[r].final_answer;
  }
  return reward;
}

// Whether one more step, as long as the last one and a fifth, would end past the budget
// (seconds since start; 0 = none).
bool past_budget(Clock::time_point start, double last_step, double budget) {
  return budget > 0 && last_step > 0 && seconds_since(start) + 1.2 * last_step > budget;
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
  memory::MemGenGenerateOptions g = chain_generate_options(task, tokenizer, InsertMode::trigger);
  g.sample_decisions = true;
  std::vector<double> task_rewards, insert_rates;
  TriggerTrainStats stats;
  double last_step = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    if (past_budget(start, last_step, o.budget_seconds)) break;
    const auto step_start = Clock::now();
    // 1. Rollouts.
    const auto [chains, prompts] =
        group_chains(task, tokenizer, o.first_chain + uint64_t(step * P), P, G);
    g.seed = splitmix64_at(o.seed, uint64_t(step));
    const memory::MemGenGenerated rollouts = memory::memgen_generate(lm, &trigger, prompts, g);
    // 2. Rewards.
    const std::vector<double> task_reward = final_answer_rewards(rollouts, chains, tokenizer);
    std::vector<std::vector<uint8_t>> decisions(static_cast<size_t>(N));
    for (const memory::TriggerDecision& d : rollouts.decisions) {
      decisions[size_t(d.row)].push_back(d.insert);
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

AnswerBatch answer_batch(const memory::MemGenGenerated& rollouts,
                         const std::vector<std::vector<int32_t>>& prompts, int64_t max_new_tokens,
                         int64_t pad_id) {
  AnswerBatch b;
  const int64_t N = int64_t(prompts.size()), P = int64_t(prompts[0].size());
  const int64_t T = P + max_new_tokens - 1;
  std::vector<int64_t> ids(size_t(N * T), pad_id), targets(size_t(N * T), -100);
  b.mask.assign(size_t(N * T), 0.0f);
  b.plan.resize(size_t(N));
  for (int64_t r = 0; r < N; ++r) {
    const auto& answer = rollouts.tokens[size_t(r)];
    const int64_t n = int64_t(answer.size());
    MNEMO_CHECK(n >= 1 && n <= max_new_tokens, "memgen weaver grpo: a rollout of {} tokens", n);
    for (int64_t c = 0; c < P; ++c) ids[size_t(r * T + c)] = prompts[size_t(r)][size_t(c)];
    for (int64_t j = 0; j < n; ++j) {
      if (j + 1 < n) ids[size_t(r * T + P + j)] = answer[size_t(j)];
      targets[size_t(r * T + P - 1 + j)] = answer[size_t(j)];
      b.mask[size_t(r * T + P - 1 + j)] = 1;
    }
    for (const memory::InsertionPoint& p : rollouts.inserted[size_t(r)]) {
      if (p.after <= P + n - 2) b.plan[size_t(r)].push_back(p);
    }
  }
  b.ids = from_vector(ids, {N, T}, {DType::i64, Device::cpu()});
  b.targets = from_vector(targets, {N, T}, {DType::i64, Device::cpu()});
  b.rows = N;
  b.columns = T;
  return b;
}

Tensor answer_logprobs(const memory::MemGenLM& lm, const AnswerBatch& b, double temperature,
                       int64_t vocab_limit) {
  const memory::MemGenOutput out = lm.forward(b.ids, b.plan);
  const int64_t V = out.logits.size(-1);
  Tensor logits = reshape(out.logits, {b.rows * b.columns, V});
  if (vocab_limit > 0 && vocab_limit < V) logits = narrow(logits, 1, 0, vocab_limit);
  if (temperature != 1) logits = logits * (1.0 / temperature);
  const Tensor nll =
      cross_entropy(logits, reshape(b.targets, {b.rows * b.columns}), -100, 0, Reduction::none);
  return reshape(-nll, {b.rows, b.columns});
}

WeaverGrpoStats train_weaver_grpo(memory::MemGenLM& lm, SupervisedSteps& weaver_steps,
                                  const memory::ChainTask& task, const text::Tokenizer& tokenizer,
                                  const WeaverGrpoOptions& o, std::ostream& log) {
  MNEMO_CHECK(o.steps >= 0 && o.prompts >= 1 && o.group_size >= 2 && o.temperature > 0 &&
                  o.epochs >= 1 && o.epsilon > 0,
              "memgen weaver grpo: need steps >= 0, prompts >= 1, group_size >= 2, "
              "temperature > 0, epochs >= 1 and epsilon > 0");
  MNEMO_CHECK(o.mode == InsertMode::delimiters || o.mode == InsertMode::prompt,
              "memgen weaver grpo: the mode is delimiters or prompt, not {}",
              memory::insert_mode_name(o.mode));
  MNEMO_CHECK(lm.config().source == "weaver", "memgen weaver grpo: the model has no weaver");
  const auto start = Clock::now();
  const int64_t P = o.prompts, G = o.group_size, N = P * G;
  rl::ClipOptions clip;
  clip.epsilon_low = clip.epsilon_high = o.epsilon;
  memory::MemGenGenerateOptions g = chain_generate_options(task, tokenizer, o.mode);
  g.sampling.temperature = o.temperature;
  std::vector<double> rewards;
  double zero_groups = 0, groups = 0;
  WeaverGrpoStats stats;
  double last_step = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    if (past_budget(start, last_step, o.budget_seconds)) break;
    const auto step_start = Clock::now();
    // 1. Rollouts; 2. rewards; 3. advantages.
    const auto [chains, prompts] =
        group_chains(task, tokenizer, o.first_chain + uint64_t(step * P), P, G);
    g.seed = splitmix64_at(o.seed, uint64_t(step));
    const memory::MemGenGenerated rollouts = memory::memgen_generate(lm, nullptr, prompts, g);
    const std::vector<double> reward = final_answer_rewards(rollouts, chains, tokenizer);
    const std::vector<double> advantage = rl::group_advantages(reward, G, o.scale);
    const std::vector<uint8_t> zero = rl::zero_variance_groups(reward, G);
    const double zero_now = double(std::count(zero.begin(), zero.end(), uint8_t(1)));
    zero_groups += zero_now;
    groups += double(P);
    // 4. The update, when some group has signal.
    if (zero_now < double(P)) {
      const AnswerBatch b = answer_batch(rollouts, prompts, g.max_new_tokens, tokenizer.eos_id());
      rl::Normaliser norm;
      norm.type = rl::LossType::grpo;
      norm.sequences = N;
      const std::vector<float> w = rl::token_weights(norm, b.mask, N, b.columns);
      std::vector<float> adv(size_t(N * b.columns));
      for (int64_t r = 0; r < N; ++r) {
        std::fill_n(adv.begin() + r * b.columns, b.columns, float(advantage[size_t(r)]));
      }
      const Tensor advantages = from_vector(adv, {N, b.columns});
      const Tensor weights = from_vector(w, {N, b.columns});
      Tensor old;  // the first pass's log-probs: the policy that sampled, before any update
      for (int64_t e = 0; e < o.epochs; ++e) {
        const Tensor logp = answer_logprobs(lm, b, o.temperature, g.vocab_limit);
        if (e == 0) old = detach(logp);
        weaver_steps.step(rl::clipped_policy_loss(logp, old, advantages, weights, Tensor(), clip));
      }
    }
    double mean_reward = 0;
    for (double r : reward) mean_reward += r / double(N);
    rewards.push_back(mean_reward);
    stats.steps = step + 1;
    last_step = seconds_since(step_start);
    if (step % 10 == 0 || step + 1 == o.steps) {
      log << fmt::format(
          "memgen weaver grpo: step {}, task reward {:.3f}, groups without signal {:.0f} of {}, "
          "{:.1f} s\n",
          step, mean_reward, zero_now, P, seconds_since(start));
    }
  }
  std::tie(stats.reward_first, stats.reward_last) = first_and_last_tenth(rewards);
  stats.zero_variance = groups > 0 ? zero_groups / groups : 0;
  stats.seconds = seconds_since(start);
  return stats;
}

}  // namespace mnemo::train
