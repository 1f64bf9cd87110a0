// The pieces `mnemo memory-bench memgen` (memgen_bench.h) and the trigger's training
// (memgen_rl.h) share: chains as token rows, insertion plans for them, one supervised step of
// a MemGen model (or of the reasoner alone), and greedy evaluation on held-out chains.
//
// A chain (memory/memgen_task.h) as tokens, with the byte tokenizer:
//
//   column   0     1 .. 10          11 .. 18       19
//   token    eos   "3+4*2-5+1:"     "7.4.9.0."     eos
//   target   -100 at the prompt's columns; from column 10 (':' predicts the first result) on,
//            the next token — the reasoning and the final eos are scored, the prompt is not.
//
// The input row is columns 0 .. 18 (the last eos is only a target). The prompt's end is column
// 10; the delimiters are the '.' of the reasoning.
#pragma once

#include <cstdint>
#include <vector>

#include "memory/memgen.h"
#include "memory/memgen_generate.h"
#include "memory/memgen_task.h"
#include "optim/adamw.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

struct ChainRows {
  Tensor ids, targets;                     // (B, T) i64: inputs and next-token targets
  std::vector<std::vector<int64_t>> rows;  // the inputs on the host
  int64_t prompt_length = 0;               // eos + prompt: the prompt's end is column P - 1
};

// `chains` as rows (all chains of a task have one length).
ChainRows chain_rows(const std::vector<memory::Chain>& chains, const text::Tokenizer& tokenizer,
                     Device device = Device::cpu());
// eos, then the prompt's ids.
std::vector<int32_t> chain_prompt_ids(const memory::Chain& chain, const text::Tokenizer& tokenizer);

// The plan of `mode` for every row: prompt (its end), delimiters (its end and after every
// delimiter, as the config allows), none. With `decisions` (per row, one per delimiter point
// in order, 1 = insert: the trigger's), the prompt's end and the delimiter points whose
// decision is 1 (points past a row's decisions insert).
memory::InsertionPlan chain_plan(const memory::MemGenLM& lm, const ChainRows& rows,
                                 memory::InsertMode mode,
                                 const std::vector<std::vector<uint8_t>>* decisions = nullptr);

// AdamW on a model's trainable parameters (lr after a linear warmup), gradients clipped to
// norm 1; step(loss) back-propagates, steps and zeroes.
class SupervisedSteps {
 public:
  SupervisedSteps(const nn::Module& model, double lr, int64_t warmup_steps = 20);
  void step(const Tensor& loss);
  int64_t steps() const { return steps_; }

 private:
  std::unique_ptr<optim::AdamW> optimizer_;
  double lr_;
  int64_t warmup_, steps_ = 0;
};

// Generation options for answering a task's chains in `mode`: until eos, at most the
// longest reasoning (two tokens per step) and two more, byte ids only; greedy.
memory::MemGenGenerateOptions chain_generate_options(const memory::ChainTask& task,
                                                     const text::Tokenizer& tokenizer,
                                                     memory::InsertMode mode);

// Greedy answers to `count` chains of (rule, split), `batch` at a time.
struct ChainScore {
  double final_exact = 0;  // the final answer right
  double chain_exact = 0;  // every step right
  double insertions = 0;   // latents inserted per chain (insertion points used)
  // Where they went: the share of the points before a step with the changed operator, before
  // any other step, and after the last step (before eos) that got latents.
  double before_changed = 0, before_other = 0, after_last = 0;
  int64_t chains = 0;
};
ChainScore score_chains(const memory::MemGenLM& lm, const memory::MemGenTrigger* trigger,
                        memory::InsertMode mode, const memory::ChainTask& task,
                        memory::ChainRule rule, memory::ChainSplit split, uint64_t first,
                        int64_t count, int64_t batch, const text::Tokenizer& tokenizer);

}  // namespace mnemo::train
