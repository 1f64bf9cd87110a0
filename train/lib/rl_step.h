// RlStep: `mnemo rl` — GRPO or PPO on a task's prompts, the third step of the run skeleton
// (train/lib/trainer.h), beside the text steps. The skeleton gives it resume, checkpoints,
// signals, plots, data parallelism, the optimizer (AdamW on train.lr and its schedule) and
// clipping; the pieces of RL are in train/rl/ (rollouts, tasks and rewards, advantages,
// losses). The run config's "rl" section (train/lib/run_config.h: RlSettings) sets it up.
//
//   model        a Llama (config.model) wrapped in rl::PolicyModel (train/rl/policy.h), with a
//                value head for PPO. A new run starts from rl.init, a checkpoint whose
//                config.json must match the model section, or from fresh weights (seeded by
//                train.seed) with the byte tokenizer.
//   data         RUN/data/reference/: the frozen reference policy, a checkpoint of the initial
//                weights (config.json, model.safetensors, tokenizer.json), written once by
//                prepare_data; RUN/data/info.json says where it came from. The prompts come
//                from the task, drawn by a counter ("prompts_drawn" in trainer_state.json,
//                with the reference's origin and the KL coefficient) from train.seed.
//   begin_step   P = rl.prompts_per_step prompts; rank r of W samples G answers to each of
//                its P / W (rl::sample_rollouts, seeded by the prompt's global index), scores
//                them, runs the policy (when a later update needs the old log-probs, or PPO
//                needs values) and the reference once over its rows, gathers every rank's
//                rewards (and PPO's per-token figures), and computes the advantages, the
//                statistics they are normalised by and the loss's token counts from the whole
//                batch: the same numbers on every rank, in the same order as one process.
//   updates      passes x rl.minibatches per step, passes = rl.num_iterations (GRPO) or
//                rl.ppo_epochs (PPO); each update is train.grad_accum micro-batches. Micro-batch
//                k of the K = minibatches x grad_accum of a pass holds the prompts
//                [k P / K, (k + 1) P / K), of which rank r has the r-th block of P / (K W) (so
//                P must be a multiple of W x K: every rank has rows in every micro-batch), and
//                update u of a pass holds micro-batches [u grad_accum, (u + 1) grad_accum).
//   micro-batch  the policy's log-probs on this rank's rows of the micro-batch, and the loss
//                (train/rl/losses.h) weighted so that the ranks' gradients sum to one
//                process's: GRPO's clipped surrogate with the k3 KL (beta) and the loss type's
//                normalisation; PPO's clipped surrogate (token mean over the update) plus
//                vf_coef x the clipped value loss, minus entropy_coef x the entropy.
//   end_step     the step's figures for metrics.jsonl, the same on every rank: reward_mean,
//                reward_std, accuracy (share of answers correct), pass_at_g (share of prompts
//                with a correct answer), zero_variance (share of groups with equal rewards),
//                response_length, truncated (share of answers without eos), kl (k3 per token,
//                mean over the loss's passes), kl_seq (k1 summed per answer, at rollout),
//                clip_low / clip_high (share of tokens clipped), ratio_mean, entropy,
//                logprob_mismatch (max |log-prob at rollout - recomputed by the training
//                forward|: the most common RL bug, expected ~1e-6), and for PPO value_loss,
//                value_clipped, explained_variance and kl_coef.
//   validation   greedy exact match on rl.eval_prompts held-out prompts (val_exact_match);
//                loss.svg plots reward_mean per step and val_exact_match, kl.svg the KL.
//
// train.batch_size and train.seq_len are the text steps' keys; the skeleton still checks
// batch_size against the ranks and grad_accum, so the RL configs set it to prompts_per_step.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/llama.h"
#include "train/lib/trainer.h"
#include "train/rl/advantages.h"
#include "train/rl/evaluate.h"
#include "train/rl/losses.h"
#include "train/rl/policy.h"
#include "train/rl/rollout.h"
#include "train/rl/task.h"

namespace mnemo::train {

class RlStep final : public TrainStep {
 public:
  explicit RlStep(const RunConfig& config);

  nn::Module& model() override { return *policy_; }
  std::vector<optim::ParamGroup> param_groups() const override;
  std::string describe() const override;
  std::string title() const override;
  void write_model(const std::filesystem::path& dir) const override;
  void load_model(const std::string& checkpoint_dir) override;

  void prepare_data(const RunContext& run, std::ostream& log) override;
  void open_data(const RunContext& run) override;
  void save_data_state(nlohmann::json& trainer_state) const override;
  void load_data_state(const nlohmann::json& trainer_state) override;
  int64_t tokens_per_step() const override;

  void begin_step(const RunContext& run) override;
  int64_t updates_per_step() const override;
  double micro_batch(const RunContext& run) override;
  nlohmann::json end_step(const RunContext& run) override;
  Validation validate(const RunContext& run) override;
  std::pair<std::string, std::string> curve_keys() const override {
    return {"reward_mean", "val_exact_match"};
  }

  const nn::LlamaForCausalLM& policy() const { return *llama_; }
  const rl::Task& task() const { return *task_; }

 private:
  int64_t micro_batches_per_pass() const;  // K = minibatches x grad_accum
  bool needs_old_forward() const;          // a later update reads the old log-probs
  // Tensors of a micro-batch's rows from a step array (local rows, A columns).
  Tensor rows_tensor(const std::vector<float>& values, const std::vector<int64_t>& rows,
                     Device device) const;
  void forward_before_updates(const RunContext& run);
  // logprobs may be undefined (then only the entropy is observed), logits too.
  void observe_first_pass(const std::vector<int64_t>& rows, const Tensor& logprobs,
                          const Tensor& logits);
  // rows: the step's gathered per-row figures (rl_step_batch.cpp).
  void compute_advantages(const RunContext& run, const std::vector<double>& rows);
  rl::EvalSettings eval_settings() const;

  RunConfig config_;
  std::shared_ptr<nn::LlamaForCausalLM> llama_;
  std::shared_ptr<rl::PolicyModel> policy_;
  std::shared_ptr<nn::LlamaForCausalLM> reference_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<rl::Task> task_;
  nlohmann::json reference_origin_;
  uint64_t prompts_drawn_ = 0;  // train prompts drawn so far (the prompt and rollout counter)
  rl::AdaptiveKl kl_;           // PPO's KL coefficient (fixed unless rl.adaptive_kl)

  // ---- the step in progress (begin_step .. end_step); local = this rank's rows ----
  struct StepData;
  std::shared_ptr<StepData> step_;
};

// `mnemo rl`: the run skeleton with RlStep. `init` (--init) sets rl.init for a new run.
TrainSummary run_rl(TrainOptions options, const std::string& init, std::ostream& log);

}  // namespace mnemo::train
