// Supervised fine-tuning on a task's demonstrations: the warm start RL needs, and the control
// RL is compared with (train/lib/rl_bench.h).
//
// A verifiable task also knows its answers (task.h: Prompt::answer), so it can teach them:
// each example is the prompt followed by the answer and eos, and the loss is the mean
// next-token cross-entropy over the answer's tokens and its eos only (the prompt's targets
// are -100). With B examples per step:
//
//   ids      (B, Lp + La)   eos, prompt, answer, eos, then eos padding
//   inputs   (B, T) = ids[:, :-1],  targets (B, T) = ids[:, 1:] at answer columns, else -100
//
// A tiny model first has to learn a task's format and then its arithmetic; until some
// sampled answer is right (pass@G > 0) RL has no signal at all (rl-references in docs/rl.md).
#pragma once

#include <cstdint>
#include <memory>

#include "nn/llama.h"
#include "optim/adamw.h"
#include "train/rl/task.h"

namespace mnemo::rl {

struct SupervisedOptions {
  int64_t batch = 32;         // examples per step
  double lr = 1e-3;           // AdamW, constant after the warmup
  int64_t warmup_steps = 20;  // linear warmup: Adam's first steps move every weight by ~lr
  double grad_clip = 1.0;     // clip the global gradient norm (0 = no clipping)
  uint64_t first_index = 0;   // the first training prompt's index (Task::prompt)
};

class SupervisedTrainer {
 public:
  // The model and task are kept by reference.
  SupervisedTrainer(nn::LlamaForCausalLM& model, const Task& task, const SupervisedOptions& o);
  // One AdamW step on the next `batch` training prompts; returns the batch's mean loss.
  double step();
  int64_t examples_seen() const { return examples_; }

 private:
  nn::LlamaForCausalLM& model_;
  const Task& task_;
  SupervisedOptions options_;
  std::unique_ptr<optim::AdamW> optimizer_;
  uint64_t next_index_;
  int64_t examples_ = 0;
  int64_t steps_ = 0;
};

}  // namespace mnemo::rl
