// RlStep's algorithm: a step's rollouts, rewards and advantages (begin_step), the loss of
// each micro-batch (micro_batch) and the step's figures (end_step). See rl_step.h for the
// layout of prompts over ranks and micro-batches; the math is in train/rl/.
//
// Everything a loss normalises by, and every advantage, is computed from the whole step's
// batch: each rank writes its rows' figures into a zero-filled global array at their global
// rows and the arrays are summed over ranks (one non-zero term per entry, so the sum is
// exact), after which every rank computes the same numbers in the same order as one process.
#include <algorithm>
#include <cmath>
#include <optional>

#include "autograd/engine.h"
#include "autograd/exact_grad.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/splitmix64.h"
#include "train/lib/rl_step.h"
#include "train/rl/evaluate.h"

namespace mnemo::train {

using nlohmann::json;

namespace {

constexpr uint64_t kRolloutStream = 0x6011047ULL;  // keys the rollouts' seeds apart from tasks'

// Per row of the step's batch, the figures every rank needs (gathered in this order).
enum RowFigure { kReward, kCorrect, kLength, kFinished, kRowFigures };
// Per action of PPO's batch.
enum TokenFigure { kAdvantage, kValue, kReturn, kMask, kTokenFigures };

// values (local rows x width) placed at global_rows[i] of a (rows x width) array, summed over
// ranks: every rank gets the whole array.
std::vector<double> gather_rows(dist::Communicator& comm, const std::vector<double>& local,
                                const std::vector<int64_t>& global_rows, int64_t rows,
                                int64_t width) {
  std::vector<double> all(size_t(rows * width), 0.0);
  for (size_t i = 0; i < global_rows.size(); ++i) {
    std::copy_n(local.begin() + int64_t(i) * width, width, all.begin() + global_rows[i] * width);
  }
  if (comm.world_size() == 1) return all;
  Tensor t = from_vector(all, {rows * width}, {DType::f64});
  comm.all_reduce(t, dist::ReduceOp::sum);
  return t.to_vector<double>();
}

// (R, A) -> host floats.
std::vector<float> host_floats(const Tensor& t) {
  return to(detach(t), Device::cpu()).to_vector<float>();
}

}  // namespace

// ---- the step's state, begin_step .. end_step ----
struct RlStep::StepData {
  int64_t K = 1;                     // micro-batches per pass (rl.minibatches x train.grad_accum)
  int64_t J = 1;                     // this rank's prompts per micro-batch
  int64_t A = 0;                     // action slots per row (columns - 1)
  std::vector<rl::Prompt> prompts;   // this rank's, in local order
  std::vector<int64_t> global_rows;  // global row of each local row
  rl::Rollouts rollouts;             // this rank's rows
  std::vector<float> actions;        // (rows, A) 1 at every action
  std::vector<float> mask;           // (rows, A) 1 at the actions the loss counts
  std::vector<float> advantages;     // (rows, A)
  std::vector<float> old_logprobs;   // (rows, A) when a later update needs them
  std::vector<float> ref_logprobs;   // (rows, A) when beta > 0 or PPO
  std::vector<float> old_values;     // (rows, A) PPO
  std::vector<float> returns;        // (rows, A) PPO
  std::vector<int64_t> micro_sequences, micro_tokens;  // (K) counted by the loss, all ranks
  int64_t next_micro = 0;                              // micro-batches run in this step
  rl::PolicyLossStats policy;
  rl::ValueLossStats value;
  double entropy = 0, entropy_tokens = 0;  // first pass
  double mismatch = 0;                     // max |rollout - training log-prob|, this rank
  json figures = json::object();           // the rollouts' figures (begin_step)

  std::vector<int64_t> micro_rows(int64_t k, int64_t G) const {
    std::vector<int64_t> rows;
    for (int64_t r = k * J * G; r < (k + 1) * J * G; ++r) rows.push_back(r);
    return rows;
  }
};

int64_t RlStep::micro_batches_per_pass() const {
  return config_.rl.minibatches * config_.train.grad_accum;
}

bool RlStep::needs_old_forward() const {
  return config_.rl.is_ppo() || updates_per_step() > 1;
}

Tensor RlStep::rows_tensor(const std::vector<float>& values, const std::vector<int64_t>& rows,
                           Device device) const {
  const int64_t A = step_->A, R = int64_t(rows.size());
  std::vector<float> out(size_t(R * A));
  for (int64_t i = 0; i < R; ++i) {
    std::copy_n(values.begin() + rows[size_t(i)] * A, A, out.begin() + i * A);
  }
  return to(from_vector(out, {R, A}), device);
}

// The policy's (and PPO's values') and the reference's log-probs over this rank's rows, one
// micro-batch at a time, before any update: the "old" figures of the clipped losses.
void RlStep::forward_before_updates(const RunContext& run) {
  StepData& s = *step_;
  const RlSettings& r = config_.rl;
  const int64_t G = r.group_size, N = s.rollouts.rows, vocab = tokenizer_->vocab_size();
  const bool old = needs_old_forward(), ref = r.is_ppo() || r.beta > 0;
  if (old) s.old_logprobs.assign(size_t(N * s.A), 0.0f);
  if (ref) s.ref_logprobs.assign(size_t(N * s.A), 0.0f);
  if (r.is_ppo()) s.old_values.assign(size_t(N * s.A), 0.0f);
  NoGradGuard no_grad;
  for (int64_t k = 0; k < s.K; ++k) {
    const std::vector<int64_t> rows = s.micro_rows(k, G);
    const rl::ActionBatch batch = rl::action_batch(s.rollouts, rows, run.device);
    const size_t at = size_t(rows.front() * s.A);
    if (old) {
      const rl::PolicyOutput out = rl::policy_forward(*llama_, batch, r.temperature, vocab);
      observe_first_pass(rows, out.logprobs, Tensor());
      const std::vector<float> lp = host_floats(out.logprobs);
      std::copy(lp.begin(), lp.end(), s.old_logprobs.begin() + int64_t(at));
      if (r.is_ppo()) {
        const std::vector<float> v = host_floats(policy_->values(out.last_hidden));
        std::copy(v.begin(), v.end(), s.old_values.begin() + int64_t(at));
      }
    }
    if (ref) {
      const rl::PolicyOutput out = rl::policy_forward(*reference_, batch, r.temperature, vocab);
      const std::vector<float> lp = host_floats(out.logprobs);
      std::copy(lp.begin(), lp.end(), s.ref_logprobs.begin() + int64_t(at));
    }
  }
}

// The log-probs the training forward computed for `rows` against those stored at rollout
// (mismatch), and the policy's entropy at the actions (when logits are given).
void RlStep::observe_first_pass(const std::vector<int64_t>& rows, const Tensor& logprobs,
                                const Tensor& logits) {
  StepData& s = *step_;
  const std::vector<float> lp = logprobs.defined() ? host_floats(logprobs) : std::vector<float>();
  const int64_t L1 = s.rollouts.actions_per_row();
  for (size_t i = 0; i < rows.size() && logprobs.defined(); ++i) {
    for (int64_t c = 0; c < s.A; ++c) {
      const size_t at = size_t(rows[i] * s.A + c);
      if (s.actions[at] == 0) continue;
      const double stored = s.rollouts.logprobs[size_t(rows[i] * L1 + c)];
      s.mismatch = std::max(s.mismatch, std::abs(double(lp[i * size_t(s.A) + size_t(c)]) - stored));
    }
  }
  if (!logits.defined()) return;
  NoGradGuard no_grad;
  const std::vector<float> h =
      host_floats(rl::token_entropy(detach(logits), int64_t(rows.size()), s.A));
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int64_t c = 0; c < s.A; ++c) {
      const size_t at = size_t(rows[i] * s.A + c);
      if (s.actions[at] == 0) continue;
      s.entropy += h[i * size_t(s.A) + size_t(c)];
      s.entropy_tokens += 1;
    }
  }
}

void RlStep::begin_step(const RunContext& run) {
  const RlSettings& r = config_.rl;
  const int64_t P = r.prompts_per_step, G = r.group_size, W = run.comm.world_size();
  step_ = std::make_shared<StepData>();
  StepData& s = *step_;
  s.K = micro_batches_per_pass();
  s.J = P / (W * s.K);
  const int64_t per_micro = P / s.K;  // prompts per micro-batch, all ranks

  // This rank's prompts: in micro-batch k, the rank-th block of J of its P / K prompts.
  std::vector<std::vector<int32_t>> ids;
  std::vector<uint64_t> seeds;
  for (int64_t k = 0; k < s.K; ++k) {
    for (int64_t j = 0; j < s.J; ++j) {
      const int64_t p = k * per_micro + run.comm.rank() * s.J + j;
      const uint64_t index = prompts_drawn_ + uint64_t(p);
      s.prompts.push_back(task_->prompt(rl::Split::train, index));
      ids.push_back(s.prompts.back().ids);
      seeds.push_back(splitmix64_at(config_.train.seed ^ kRolloutStream, index));
      for (int64_t g = 0; g < G; ++g) s.global_rows.push_back(p * G + g);
    }
  }
  prompts_drawn_ += uint64_t(P);

  rl::RolloutOptions o;
  o.group_size = G;
  o.max_new_tokens = r.max_new_tokens;
  o.temperature = r.temperature;
  o.eos_id = task_->eos_id();
  o.vocab_limit = tokenizer_->vocab_size();
  s.rollouts = rl::sample_rollouts(*llama_, ids, seeds, o);
  s.A = s.rollouts.actions_per_row();
  s.actions = s.rollouts.action_mask();

  // Score this rank's answers and gather every rank's.
  const int64_t N = s.rollouts.rows;
  std::vector<double> local(size_t(N * kRowFigures));
  for (int64_t row = 0; row < N; ++row) {
    const rl::Score score = rl::score_answer(*task_, s.prompts[size_t(row / G)], s.rollouts, row);
    double* f = &local[size_t(row * kRowFigures)];
    f[kReward] = score.reward;
    f[kCorrect] = score.correct ? 1 : 0;
    f[kLength] = double(s.rollouts.lengths[size_t(row)]);
    f[kFinished] = s.rollouts.finished[size_t(row)];
  }
  const std::vector<double> rows = gather_rows(run.comm, local, s.global_rows, P * G, kRowFigures);
  forward_before_updates(run);
  compute_advantages(run, rows);
}

// The advantages of this rank's actions, the loss mask and the micro-batches' counts, from
// the gathered rows (and, for PPO, the gathered per-token figures).
void RlStep::compute_advantages(const RunContext& run, const std::vector<double>& rows) {
  StepData& s = *step_;
  const RlSettings& r = config_.rl;
  const int64_t P = r.prompts_per_step, G = r.group_size, N = s.rollouts.rows, A = s.A;
  std::vector<double> rewards(size_t(P * G));
  for (int64_t i = 0; i < P * G; ++i) rewards[size_t(i)] = rows[size_t(i * kRowFigures + kReward)];
  const std::vector<uint8_t> flat = rl::zero_variance_groups(rewards, G);
  const auto kept = [&](int64_t global_row) {
    return !(r.filter_zero_variance && !r.is_ppo() && flat[size_t(global_row / G)]);
  };
  s.mask = s.actions;
  for (int64_t row = 0; row < N; ++row) {
    if (kept(s.global_rows[size_t(row)])) continue;
    std::fill_n(s.mask.begin() + row * A, A, 0.0f);
  }
  s.advantages.assign(size_t(N * A), 0.0f);

  if (!r.is_ppo()) {
    const std::vector<double> adv =
        rl::group_advantages(rewards, G, rl::parse_scale_rewards(r.scale_rewards));
    for (int64_t row = 0; row < N; ++row) {
      const float a = float(adv[size_t(s.global_rows[size_t(row)])]);
      for (int64_t c = 0; c < A; ++c) s.advantages[size_t(row * A + c)] = a;
    }
  } else {
    // Per answer: k1-penalised rewards, GAE over its actions; then whitened over the batch.
    std::vector<double> local(size_t(N * A * kTokenFigures), 0.0);
    for (int64_t row = 0; row < N; ++row) {
      std::vector<int64_t> cols;
      std::vector<double> lp, ref, values;
      for (int64_t c = 0; c < A; ++c) {
        if (s.actions[size_t(row * A + c)] == 0) continue;
        cols.push_back(c);
        lp.push_back(s.old_logprobs[size_t(row * A + c)]);
        ref.push_back(s.ref_logprobs[size_t(row * A + c)]);
        values.push_back(s.old_values[size_t(row * A + c)]);
      }
      if (cols.empty()) continue;
      const double score = rewards[size_t(s.global_rows[size_t(row)])];
      const rl::Gae g =
          rl::gae(rl::kl_penalised_rewards(lp, ref, kl_.coef, score), values, r.gamma, r.lam);
      for (size_t t = 0; t < cols.size(); ++t) {
        double* f = &local[size_t((row * A + cols[t]) * kTokenFigures)];
        f[kAdvantage] = g.advantages[t];
        f[kValue] = values[t];
        f[kReturn] = g.returns[t];
        f[kMask] = 1;
      }
    }
    const std::vector<double> all =
        gather_rows(run.comm, local, s.global_rows, P * G, A * kTokenFigures);
    std::vector<double> adv(size_t(P * G * A)), val(adv.size()), ret(adv.size());
    std::vector<float> mask(adv.size());
    for (size_t i = 0; i < adv.size(); ++i) {
      adv[i] = all[i * kTokenFigures + kAdvantage];
      val[i] = all[i * kTokenFigures + kValue];
      ret[i] = all[i * kTokenFigures + kReturn];
      mask[i] = float(all[i * kTokenFigures + kMask]);
    }
    if (r.whiten_advantages) rl::whiten(adv, mask);
    s.returns.assign(size_t(N * A), 0.0f);
    for (int64_t row = 0; row < N; ++row) {
      const int64_t g = s.global_rows[size_t(row)];
      for (int64_t c = 0; c < A; ++c) {
        s.advantages[size_t(row * A + c)] = float(adv[size_t(g * A + c)]);
        s.returns[size_t(row * A + c)] = float(ret[size_t(g * A + c)]);
      }
    }
    s.figures["explained_variance"] = rl::explained_variance(val, ret, mask);
    double kl_seq = 0;  // k1 summed per answer, mean over answers
    for (int64_t row = 0; row < N; ++row) {
      for (int64_t c = 0; c < A; ++c) {
        const size_t at = size_t(row * A + c);
        if (s.actions[at] != 0) kl_seq += s.old_logprobs[at] - s.ref_logprobs[at];
      }
    }
    s.figures["kl_seq_local"] = kl_seq;
  }

  // What each micro-batch's loss counts, over all ranks: micro-batch k holds the global
  // prompts [k P / K, (k + 1) P / K).
  const int64_t per_micro = P / s.K;
  s.micro_sequences.assign(size_t(s.K), 0);
  s.micro_tokens.assign(size_t(s.K), 0);
  for (int64_t k = 0; k < s.K; ++k) {
    for (int64_t row = k * per_micro * G; row < (k + 1) * per_micro * G; ++row) {
      if (!kept(row)) continue;
      s.micro_sequences[size_t(k)] += 1;
      s.micro_tokens[size_t(k)] += int64_t(rows[size_t(row * kRowFigures + kLength)]);
    }
  }

  // The rollouts' figures.
  double reward = 0, reward_sq = 0, correct = 0, length = 0, finished = 0, solved = 0;
  for (int64_t i = 0; i < P * G; ++i) {
    const double* f = &rows[size_t(i * kRowFigures)];
    reward += f[kReward];
    reward_sq += f[kReward] * f[kReward];
    correct += f[kCorrect];
    length += f[kLength];
    finished += f[kFinished];
  }
  for (int64_t p = 0; p < P; ++p) {
    bool any = false;
    for (int64_t g = 0; g < G; ++g) any = any || rows[size_t((p * G + g) * kRowFigures + kCorrect)];
    solved += any ? 1 : 0;
  }
  const double n = double(P * G), mean = reward / n;
  int64_t zero_variance = 0;
  for (uint8_t f : flat) zero_variance += f;
  s.figures["reward_mean"] = mean;
  s.figures["reward_std"] = std::sqrt(std::max(0.0, reward_sq / n - mean * mean));
  s.figures["accuracy"] = correct / n;
  s.figures["pass_at_g"] = solved / double(P);
  s.figures["zero_variance"] = double(zero_variance) / double(P);
  s.figures["response_length"] = length / n;
  s.figures["truncated"] = 1 - finished / n;
}

double RlStep::micro_batch(const RunContext& run) {
  StepData& s = *step_;
  const RlSettings& r = config_.rl;
  const int64_t G = r.group_size, accum = config_.train.grad_accum;
  const int64_t k = s.next_micro % s.K, pass = s.next_micro / s.K;
  ++s.next_micro;
  const std::vector<int64_t> rows = s.micro_rows(k, G);
  const rl::ActionBatch batch = rl::action_batch(s.rollouts, rows, run.device);
  const rl::PolicyOutput out =
      rl::policy_forward(*llama_, batch, r.temperature, tokenizer_->vocab_size());
  if (pass == 0)
    observe_first_pass(rows, needs_old_forward() ? Tensor() : out.logprobs, out.logits);

  // The weights: the loss type's normalisation with counts over all ranks (PPO: the token
  // mean over the update, as dapo).
  const int64_t update_first = (k / accum) * accum;
  int64_t update_tokens = 0;
  for (int64_t m = update_first; m < update_first + accum; ++m)
    update_tokens += s.micro_tokens[size_t(m)];
  rl::Normaliser n;
  n.type = r.is_ppo() ? rl::LossType::dapo : rl::parse_loss_type(r.loss_type);
  n.sequences = std::max<int64_t>(1, s.micro_sequences[size_t(k)]);
  n.micro_tokens = std::max<int64_t>(1, s.micro_tokens[size_t(k)]);
  n.update_tokens = std::max<int64_t>(1, update_tokens);
  n.max_new_tokens = r.max_new_tokens;
  n.grad_accum = accum;
  std::vector<float> mask(rows.size() * size_t(s.A));
  for (size_t i = 0; i < rows.size(); ++i) {
    std::copy_n(s.mask.begin() + rows[i] * s.A, s.A, mask.begin() + int64_t(i) * s.A);
  }
  const Tensor weights = to(from_vector(rl::token_weights(n, mask, int64_t(rows.size()), s.A),
                                        {int64_t(rows.size()), s.A}),
                            run.device);

  rl::ClipOptions clip;
  clip.epsilon_low = r.epsilon;
  clip.epsilon_high = r.clip_high();
  clip.beta = r.is_ppo() ? 0.0 : r.beta;
  const Tensor old =
      needs_old_forward() ? rows_tensor(s.old_logprobs, rows, run.device) : detach(out.logprobs);
  const Tensor ref =
      s.ref_logprobs.empty() ? Tensor() : rows_tensor(s.ref_logprobs, rows, run.device);
  Tensor loss =
      rl::clipped_policy_loss(out.logprobs, old, rows_tensor(s.advantages, rows, run.device),
                              weights, ref, clip, &s.policy);
  if (r.is_ppo()) {
    const Tensor v = rl::clipped_value_loss(
        policy_->values(out.last_hidden), rows_tensor(s.old_values, rows, run.device),
        rows_tensor(s.returns, rows, run.device), weights, r.cliprange_value, &s.value);
    loss = loss + v * r.vf_coef;
  }
  if (r.entropy_coef > 0) {
    const Tensor h = rl::token_entropy(out.logits, int64_t(rows.size()), s.A);
    loss = loss - sum(h * weights) * r.entropy_coef;
  }
  const double share = loss.item();
  std::optional<autograd::ExactGradGuard> exact;
  if (run.exact_grads) exact.emplace(s.A);  // one sequence per row
  backward(loss);
  return share;
}

json RlStep::end_step(const RunContext& run) {
  StepData& s = *step_;
  const RlSettings& r = config_.rl;
  // The loss's figures, summed over ranks; the mismatch, the largest of any rank.
  std::vector<double> sums{s.policy.tokens,
                           s.policy.clipped_low,
                           s.policy.clipped_high,
                           s.policy.ratio,
                           s.policy.kl,
                           s.value.tokens,
                           s.value.loss,
                           s.value.clipped,
                           s.entropy,
                           s.entropy_tokens,
                           s.figures.value("kl_seq_local", 0.0)};
  double mismatch = s.mismatch;
  if (run.comm.world_size() > 1) {
    Tensor t = from_vector(sums, {int64_t(sums.size())}, {DType::f64});
    run.comm.all_reduce(t, dist::ReduceOp::sum);
    sums = t.to_vector<double>();
    Tensor mine = from_vector(std::vector<double>{s.mismatch}, {1}, {DType::f64});
    Tensor all = zeros({run.comm.world_size()}, {.dtype = DType::f64});
    run.comm.all_gather(mine, all);
    for (double m : all.to_vector<double>()) mismatch = std::max(mismatch, m);
  }
  json f = s.figures;
  f.erase("kl_seq_local");
  const double tokens = std::max(1.0, sums[0]);
  f["clip_low"] = sums[1] / tokens;
  f["clip_high"] = sums[2] / tokens;
  f["ratio_mean"] = sums[3] / tokens;
  if (!s.ref_logprobs.empty()) f["kl"] = sums[4] / tokens;
  f["entropy"] = sums[8] / std::max(1.0, sums[9]);
  f["logprob_mismatch"] = mismatch;
  if (r.is_ppo()) {
    f["value_loss"] = sums[6] / std::max(1.0, sums[5]);
    f["value_clipped"] = sums[7] / std::max(1.0, sums[5]);
    const double kl_seq = sums[10] / double(r.prompts_per_step * r.group_size);
    f["kl_seq"] = kl_seq;
    f["kl_coef"] = kl_.coef;
    if (r.adaptive_kl) kl_.update(kl_seq, r.prompts_per_step * r.group_size);
  }
  step_.reset();
  return f;
}

}  // namespace mnemo::train
