// GRPO for MemGen: the trigger (memory/memgen_trigger.h), with the weaver trained under the
// trigger's own insertion pattern; and, as an option after its supervised training, the weaver
// itself on the task's reward.
//
// The trigger. One step, on P training chains (rule B) with G rollouts each (N = P * G rows):
//   1. rollouts   greedy tokens; latents at the prompt's end, and at every delimiter the
//                 trigger's decision drawn from P(insert) (memory/memgen_generate.h, mode
//                 trigger). The decisions come back with the hidden states the trigger read,
//                 so its update needs no forward of the reasoner.
//   2. reward     r_i = R_i - lambda sum_j max(0, d_j - pbar)              (MemGen, Eq. 8-9)
//                 R_i the task's reward (1 when the final answer is right), d_j in {0, 1} the
//                 row's decisions, pbar the insertion rate among the rows whose task reward is
//                 at least the batch's median: inserting more often than the rows that do well
//                 costs lambda per insertion beyond that rate. Without it (the public code)
//                 the trigger learns to insert everywhere.
//   3. advantages GRPO's, per group of G, not scaled by the group's std (Dr. GRPO,
//                 train/rl/advantages.h): the penalty's small differences stay small next to
//                 the task's.
//   4. trigger    `epochs` passes of the clipped surrogate (train/rl/losses.h) over the
//                 decisions: the actions are the insert/skip decisions, the ratio is taken at
//                 decision points only, each row's decisions weighted 1 / (its decisions * N)
//                 (the grpo normalisation), AdamW on the head.
//   5. weaver     one supervised step (the loss on the response tokens) on the N rows' own
//                 chains, each with its rollout's insertion pattern — so the weaver learns to
//                 work under the trigger's pattern rather than only under always-insert (a
//                 weaver trained to always insert, run with a sparser pattern, loses most of
//                 its gain: docs/memory-results.md, "MemGen").
#pragma once

#include <cstdint>
#include <iosfwd>

#include "memory/memgen.h"
#include "memory/memgen_task.h"
#include "memory/memgen_trigger.h"
#include "train/lib/memgen_data.h"
#include "train/rl/advantages.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

struct TriggerTrainOptions {
  int64_t steps = 100;
  int64_t prompts = 16;       // P
  int64_t group_size = 8;     // G
  double lr = 1e-2;           // the trigger's AdamW
  double penalty = 0.1;       // lambda
  double epsilon = 0.2;       // the surrogate's clip range
  int64_t epochs = 2;         // trigger updates per batch of rollouts
  bool train_weaver = true;   // step 5
  uint64_t seed = 0;          // the decisions' draws
  uint64_t first_chain = 0;   // training chains first_chain + step * P + p
  double budget_seconds = 0;  // > 0: stop before a step that would end past it
};

struct TriggerTrainStats {
  int64_t steps = 0;
  double reward_first = 0, reward_last = 0;            // mean task reward, first and last tenth
  double insert_rate_first = 0, insert_rate_last = 0;  // share of decisions that inserted
  double seconds = 0;
};

// Trains `trigger` (and, with train_weaver, `lm` through `weaver_steps`) on `task`'s rule-B
// training chains; progress lines go to `log`.
TriggerTrainStats train_trigger(memory::MemGenLM& lm, memory::MemGenTrigger& trigger,
                                SupervisedSteps& weaver_steps, const memory::ChainTask& task,
                                const text::Tokenizer& tokenizer, const TriggerTrainOptions& o,
                                std::ostream& log);

// The weaver with GRPO (its token-level policy gradient through the frozen reasoner).
// One step, on P training chains (rule B) with G rollouts each (N = P * G rows):
//   1. rollouts   answers drawn at `temperature` from the reasoner with the weaver's latents
//                 at the prompt's end and after every delimiter it writes (mode delimiters),
//                 or at the prompt's end only (mode prompt); where they went comes back with
//                 the tokens (memory/memgen_generate.h).
//   2. reward     1 when the final answer is right, else 0.
//   3. advantages GRPO's, per group of G, scaled by the group's std (`scale`).
//   4. update     the actions are the answer's tokens: log pi(y_j) = log_softmax(logits /
//                 temperature) of MemGenLM::forward on the rollout's own tokens with the
//                 rollout's own insertions (the teacher-forced path: a test checks it gives
//                 the log-probs generation drew with), `epochs` passes of the clipped surrogate
//                 (train/rl/losses.h, the grpo normalisation: each answer's mean, then the
//                 batch's), each a step of `weaver_steps`; the first pass's log-probs are the
//                 old ones (rho = 1 exactly there, as in train/rl). No KL term: there is no
//                 reference copy of the weaver, and the frozen reasoner already anchors what the
//                 latents can do.
struct WeaverGrpoOptions {
  int64_t steps = 100;
  int64_t prompts = 16;                                      // P
  int64_t group_size = 8;                                    // G
  double temperature = 1;                                    // > 0
  double epsilon = 0.2;                                      // the surrogate's clip range
  int64_t epochs = 2;                                        // updates per batch of rollouts
  memory::InsertMode mode = memory::InsertMode::delimiters;  // delimiters | prompt
  rl::ScaleRewards scale = rl::ScaleRewards::group;
  uint64_t seed = 0;          // the token draws
  uint64_t first_chain = 0;   // training chains first_chain + step * P + p
  double budget_seconds = 0;  // > 0: stop before a step that would end past it
};

struct WeaverGrpoStats {
  int64_t steps = 0;
  double reward_first = 0, reward_last = 0;  // mean task reward, first and last tenth of steps
  double zero_variance = 0;                  // share of groups with no signal (all equal)
  double seconds = 0;
};

// Rollouts as a teacher-forced batch: row r = the prompt and its answer's tokens but the
// last, padded with pad_id to T = prompt + max_new_tokens - 1 columns; targets the answer's
// tokens at the columns that predict them (-100 elsewhere), mask 1 there; the plan holds
// the rollout's insertions that precede one of its actions (one after the last action's
// column changes nothing). The prompts must have one length.
struct AnswerBatch {
  Tensor ids, targets;      // (N, T) i64
  std::vector<float> mask;  // (N, T)
  memory::InsertionPlan plan;
  int64_t rows = 0, columns = 0;
};
AnswerBatch answer_batch(const memory::MemGenGenerated& rollouts,
                         const std::vector<std::vector<int32_t>>& prompts, int64_t max_new_tokens,
                         int64_t pad_id);
// log pi(target) per column (N, T) under softmax(logits / temperature) over the first
// vocab_limit ids (0: all); 0 where the target is -100. Differentiable when grad mode is on.
Tensor answer_logprobs(const memory::MemGenLM& lm, const AnswerBatch& batch, double temperature,
                       int64_t vocab_limit);

// Trains `lm`'s weaver through `weaver_steps` with GRPO on `task`'s rule-B training chains;
// progress lines go to `log`.
WeaverGrpoStats train_weaver_grpo(memory::MemGenLM& lm, SupervisedSteps& weaver_steps,
                                  const memory::ChainTask& task, const text::Tokenizer& tokenizer,
                                  const WeaverGrpoOptions& o, std::ostream& log);

}  // namespace mnemo::train
