// Drawing the next token from a model's logits: greedy, temperature, top-k and nucleus (top-p)
// sampling, returning each token with its log-probability under the distribution it was
// actually drawn from (what RL needs for importance ratios).
//
// For one row of logits x (V,), with options T = temperature, k = top_k, p = top_p:
//
//   T == 0 (greedy):  token = argmax x (the lowest index among ties);
//                     logprob = log softmax(x)[token] (the raw logits, no filtering).
//   T > 0:            q = softmax(x / T)
//                     top-k:  keep the k most probable tokens (k == 0 or k >= V: all)
//                     top-p:  renormalise the kept ones; walking them from most to least
//                             probable, keep each token while the probability of the tokens
//                             before it is still below p (the smallest set reaching p; always
//                             at least the most probable token; p == 1: all)
//                     draw token from the kept tokens' renormalised probabilities r;
//                     logprob = log r[token].
//   Ties in probability are ordered by token index (lower first), so the kept set is unique.
//
// The order (temperature, then top-k, then top-p on the top-k-renormalised distribution) is
// the one of HF transformers' TopK then TopP logits warpers.
//
// Randomness: one multinomial draw (core/ops/random.h) from gen per call of sample_tokens
// (all rows together), i.e. one gen.next(); greedy sampling draws nothing and leaves gen
// unchanged. sample_token(x, o, g) equals sample_tokens(x as one row, o, g)[0].
#pragma once

#include <cstdint>
#include <vector>

#include "core/ops/random.h"
#include "core/tensor.h"

namespace mnemo::nn {

struct SamplingOptions {
  double temperature = 1;  // >= 0; 0 = greedy
  int64_t top_k = 0;       // >= 0; 0 = no top-k filter
  double top_p = 1;        // in (0, 1]; 1 = no nucleus filter
};

struct Sampled {
  int64_t token;
  double logprob;  // log-probability of token under the (filtered, renormalised) distribution
};

// Throws mnemo::Error naming the option ("temperature", "top_k", "top_p") if out of range.
void validate(const SamplingOptions& options);

// logits (V,), any floating dtype, any device (read back to the host).
Sampled sample_token(const Tensor& logits, const SamplingOptions& options, Generator& gen);
// logits (B, V) -> B samples, one per row.
std::vector<Sampled> sample_tokens(const Tensor& logits, const SamplingOptions& options,
                                   Generator& gen);

}  // namespace mnemo::nn
