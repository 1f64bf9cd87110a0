// Generation with MemGen's insertions (memgen.h): a batch of prompts continued token by token
// by the frozen reasoner, with the weaver's latents inserted at the prompt's end and after
// delimiters as the mode says, and where the trigger (memgen_trigger.h) decides.
//
//   mode        insertion points
//   none        none: the reasoner alone
//   prompt      the prompt's end only (K_p latents)
//   delimiters  the prompt's end, then after every delimiter the reasoner writes, at most
//               max_inference_aug per sequence
//   trigger     the prompt's end, then each delimiter point only if the trigger says so
//               (argmax, or drawn from P(insert) for rollouts), as in the reference, whose
//               trigger decides during inference only; its decisions come back with the
//               features it read
//
// With the cache, the prompt is run once, then each step feeds one token, and an insertion
// feeds its K latents, all appended to the reasoner's KV cache. Every row of the batch feeds
// the same columns: a row that does not insert where another does gets K absent columns
// (zero latents, bias -1e9: memgen.h), so the rows stay aligned and compute exactly what they
// would alone. Without the cache, every step re-runs MemGenLM::forward on the whole sequence
// with the insertions so far — the teacher-forced training path — and a test checks that both
// generate the same tokens and insert at the same places.
//
// Prompts of one batch must have the same length. Tokens are greedy or drawn with
// nn::SamplingOptions; a row that has produced eos is finished (it keeps being fed, its later
// tokens are dropped, it makes no more decisions).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "memory/memgen.h"
#include "memory/memgen_trigger.h"
#include "nn/sampling.h"

namespace mnemo::memory {

enum class InsertMode { none, prompt, delimiters, trigger };
InsertMode parse_insert_mode(std::string_view name);  // none | prompt | delimiters | trigger
const char* insert_mode_name(InsertMode mode);

struct MemGenGenerateOptions {
  InsertMode mode = InsertMode::delimiters;
  int64_t max_new_tokens = 16;
  int64_t eos_id = -1;              // ends a row; required, >= 0
  int64_t vocab_limit = 0;          // > 0: only ids below it are produced
  nn::SamplingOptions sampling{0};  // temperature 0 = greedy
  bool use_cache = true;
  bool sample_decisions = false;  // trigger: draw each decision from P(insert), else argmax
  uint64_t seed = 0;              // token draws, and row r's decisions: splitmix64_at(seed + r, k)
};

// One decision of the trigger.
struct TriggerDecision {
  int64_t row = 0;
  int64_t after = 0;  // the token column it decided after
  bool insert = false;
  float p_insert = 0;          // P(insert) it was drawn from
  std::vector<float> feature;  // (C) the hidden state the trigger read
};

struct MemGenGenerated {
  std::vector<std::vector<int32_t>> tokens;  // per row: the new tokens, eos included if produced
  std::vector<std::vector<float>> logprobs;  // per row: each new token's log-probability under
                                             // the distribution it was drawn from (greedy:
                                             // log_softmax of the logits)
  std::vector<uint8_t> ended;                // per row: it produced eos
  InsertionPlan inserted;  // per row: where latents went (columns of prompt + tokens)
  std::vector<TriggerDecision> decisions;  // mode trigger: every decision, in order
  int64_t insertions(int64_t row) const { return int64_t(inserted[size_t(row)].size()); }
};

// trigger: required for mode trigger, else unused (may be null). Runs under no_grad.
MemGenGenerated memgen_generate(const MemGenLM& lm, const MemGenTrigger* trigger,
                                const std::vector<std::vector<int32_t>>& prompts,
                                const MemGenGenerateOptions& options);

}  // namespace mnemo::memory
