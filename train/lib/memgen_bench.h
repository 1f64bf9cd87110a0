// `mnemo memory-bench memgen [--seed S]`: MemGen's weaver and trigger against a frozen
// reasoner and a soft prompt, on the shifted-rule chained arithmetic of memory/memgen_task.h,
// as one JSON line.
//
//   1. reasoner   a Llama (3 layers, width 128, byte tokens) pre-trained on rule-A chains
//                 until the teacher-forced chain exact match of a probe of training chains
//                 reaches 0.99 (or --reasoner CKPT: a trained one, no pre-training). Then
//                 frozen.
//   2. on rule-B training chains, each for `steps` supervised steps of `batch` chains (the
//      loss on the reasoning's tokens only), from the same seed:
//        soft_prompt        K_p learned embeddings at the prompt's end (lr: soft_prompt_lr)
//        weaver_prompt      the weaver at the prompt's end only
//        weaver_delimiters  the weaver at the prompt's end and after every '.'
//   3. weaver_grpo (with --weaver-grpo-steps N > 0) a copy of the weaver_delimiters weaver
//                 trained on for N GRPO steps on the task's reward (train/lib/memgen_rl.h),
//                 then scored at every delimiter.
//   4. trigger    a copy of the weaver_delimiters weaver and a trigger, trained together
//                 (train/lib/memgen_rl.h: GRPO for the trigger with the insertion penalty,
//                 supervised steps for the weaver under the trigger's pattern), for
//                 trigger_steps steps or until the time budget says stop.
//   5. every model answers the same held-out rule-B chains greedily; the trigger decides by
//      argmax.
//
// Output: {"task": "memgen", "metric": "exact_match", "memory" (weaver_delimiters), "baseline"
// (frozen), "higher_is_better", "seed", "steps", "seconds", "details": {frozen, soft_prompt,
// weaver_prompt, weaver_delimiters, trigger (final-answer exact match), insertions_* (per
// chain), chain_* (every step right), rule_a_frozen (the reasoner on rule-A held-out chains),
// weaver_grpo (with its steps), ...}, "parameters", "phases" (seconds), "trigger_training",
// "weaver_grpo_training", "out"}.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memory/task_options.h"

namespace mnemo::train {

struct MemGenBenchOptions {
  uint64_t seed = 0;
  std::string reasoner;  // a trained reasoner's checkpoint: no pre-training
  std::string out;       // "" = nothing written; else OUT/memgen: the trained weaver + trigger
  int64_t steps = 600;  // supervised steps of each of soft_prompt, weaver_prompt, weaver_delimiters
  int64_t batch = 64;   // chains per step
  double lr = 2e-3;     // the weaver's
  double soft_prompt_lr = 1e-2;
  int64_t trigger_steps = 300;
  int64_t weaver_grpo_steps = 0;        // 0: no weaver_grpo model
  double weaver_grpo_lr = 1e-4;         // at 1e-3 it lost half the weaver's score in 100 steps
  double trigger_budget_seconds = 480;  // the joint phase stops before passing it
  double trigger_penalty = 0.15;        // lambda of the insertion penalty (memgen_rl.h)
  int64_t eval_chains = 1000;
  // The reasoner's pre-training.
  int64_t pretrain_batch = 128;
  double pretrain_lr = 1e-3;
  int64_t pretrain_max_steps = 4000;
  memory::TaskOptions task_options;           // chain-steps, modulus, operators, changed
  std::vector<std::string> memory_overrides;  // key=value into the MemGen config (memory/memgen.h)
};

nlohmann::json run_memgen_bench(const MemGenBenchOptions& options, std::ostream& log);

}  // namespace mnemo::train
