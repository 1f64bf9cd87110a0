// Scoring a policy on a task's held-out prompts, without gradients.
//
//   exact match   greedy answers (temperature 0, one per prompt): the share the task's reward
//                 counts as correct. The number RL is judged by.
//   pass@G        G sampled answers per prompt at a temperature: the share of prompts with at
//                 least one correct answer. RL can only reinforce what it samples, so this
//                 says whether a warm start gives RL anything to work with (pass@G = 0: every
//                 group has reward 0, zero variance, no gradient).
// Prompts [first, first + count) of a split (held-out by default), `batch` prompts per
// generation batch; count is at most the held-out size there.
#pragma once

#include <cstdint>

#include "nn/llama.h"
#include "train/rl/rollout.h"
#include "train/rl/task.h"

namespace mnemo::rl {

struct EvalSettings {
  int64_t prompts = 256;  // prompts scored (held-out: at most the task's held-out size)
  Split split = Split::heldout;
  uint64_t first = 0;  // the first prompt's index
  int64_t max_new_tokens = 8;
  int64_t batch = 256;      // prompts per generation batch
  int64_t vocab_limit = 0;  // as RolloutOptions::vocab_limit
};

// The task's score of one row of a rollout batch, the answer to `prompt`.
Score score_answer(const Task& task, const Prompt& prompt, const Rollouts& rollouts, int64_t row);

double greedy_exact_match(const nn::LlamaForCausalLM& model, const Task& task,
                          const EvalSettings& settings);

// seed: the samples' seed (prompt i draws from a generator seeded by splitmix64_at(seed, i)).
double pass_at_g(const nn::LlamaForCausalLM& model, const Task& task, const EvalSettings& settings,
                 int64_t group_size, double temperature, uint64_t seed);

}  // namespace mnemo::rl
