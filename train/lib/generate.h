// Autoregressive generation from a prompt, with or without the KV cache.
//
// With the cache, the prompt is run once and then one token at a time, each step attending to
// the cached keys and values of every earlier position; without it, every step re-runs the
// whole sequence. Both compute the same logits (a test checks greedy decoding token for
// token). Generation stops at max_new_tokens, at the eos token (when stop_at_eos), or when the
// sequence reaches the model's max_position_embeddings (its RoPE table ends there).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nn/llama.h"
#include "nn/sampling.h"

namespace mnemo::train {

struct GenerateOptions {
  int64_t max_new_tokens = 100;
  nn::SamplingOptions sampling;  // temperature 0 = greedy
  uint64_t seed = 0;
  bool use_cache = true;
  int64_t eos_id = -1;  // stop after producing it; -1 = never
  // > 0: only ids below it are drawn (the tokenizer's vocabulary, when the model's
  // vocab_size is padded past it: the padding ids have no text); 0 = every id.
  int64_t vocab_limit = 0;
};

struct Generated {
  std::vector<int32_t> tokens;   // the new tokens (prompt excluded)
  std::vector<double> logprobs;  // of each under the sampling distribution
  bool hit_context_limit = false;
};

Generated generate(nn::LlamaForCausalLM& model, std::span<const int32_t> prompt,
                   const GenerateOptions& options);

// The next token from logits (V,) under options' sampling and vocab_limit.
nn::Sampled next_token(const Tensor& logits, const GenerateOptions& options, Generator& gen);

}  // namespace mnemo::train
