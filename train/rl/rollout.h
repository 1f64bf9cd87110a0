// Rollouts: G sampled answers to each of P prompts, generated as one batch through the KV
// cache, with everything the losses need afterwards.
//
// The batch has N = P * G rows; sample g of prompt p is row p * G + g. Every row is laid out
// on the same L = Lp + max_new_tokens columns, Lp the longest prompt:
//
//   column   0 .. pad-1     pad-1+1 .. Lp-1     Lp .. Lp+len-1          Lp+len .. L-1
//   kind     pad            prompt              response (last: eos      after_eos
//                                               when the answer ended)
//
// Shorter prompts are padded on the left, so every answer starts at column Lp and one
// decode step appends one column to every row; pads get an attention bias of -1e9 (no query
// reads them) and the positions count from each row's first real token, so a padded prompt
// computes what it would alone. A row that has produced eos keeps being fed (the batch moves
// together) but its later columns are `after_eos`: not actions, no log-prob, no loss.
//
// Actions and the per-token arrays. The token at column c + 1 is predicted from the logits at
// column c, so every per-token array has L - 1 columns and column c belongs to the action
// "emit tokens[c + 1]": it is an action iff kind[c + 1] == response. `logprobs` holds
// log pi(tokens[c + 1]) under the distribution the token was drawn from (the temperature
// applied, nn/sampling.h), 0 where column c is not an action.
//
// Seeding: prompt p's G samples draw from a Generator of their own, seeded by seeds[p] (the
// caller derives it from the step and the prompt's global index), with one draw per decode
// step. So a sample does not depend on the batch it was generated in, nor on how many ranks
// share the prompts.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nn/llama.h"

namespace mnemo::rl {

struct RolloutOptions {
  int64_t group_size = 8;       // G samples per prompt
  int64_t max_new_tokens = 16;  // answer tokens at most (eos included)
  double temperature = 1.0;     // 0 = greedy (then G is normally 1)
  int64_t eos_id = -1;          // ends an answer (and pads); required, >= 0
  // > 0: only ids below it are drawn (the tokenizer's vocabulary inside a padded one).
  int64_t vocab_limit = 0;
};

// What a column of a row holds (see the table above).
enum class Column : uint8_t { pad, prompt, response, after_eos };

struct Rollouts {
  int64_t rows = 0;               // N = P * G
  int64_t group_size = 0;         // G
  int64_t prompt_columns = 0;     // Lp
  int64_t columns = 0;            // L = Lp + max_new_tokens
  double temperature = 1.0;       // that of the sampling distribution
  std::vector<int32_t> tokens;    // (N, L) ids; pads and after-eos columns hold eos_id
  std::vector<Column> kind;       // (N, L)
  std::vector<int64_t> pads;      // (N) left pads of each row
  std::vector<int64_t> lengths;   // (N) answer tokens, eos included
  std::vector<uint8_t> finished;  // (N) 1 when the answer ended with eos
  std::vector<float> logprobs;    // (N, L - 1) log pi_sample(tokens[c + 1]) at actions, else 0

  int64_t actions_per_row() const { return columns - 1; }
  bool is_action(int64_t row, int64_t column) const {
    return kind[size_t(row * columns + column + 1)] == Column::response;
  }
  // The answer of a row: its response tokens, without the final eos.
  std::vector<int32_t> answer(int64_t row, int64_t eos_id) const;
  // (N, L - 1) 1 at actions, 0 elsewhere.
  std::vector<float> action_mask() const;
  bool padded() const;  // some row has left pads
};

// Samples options.group_size answers to each prompt (ids, at least one each) with the model
// in eval mode and no gradients. seeds[p] seeds prompt p's samples.
Rollouts sample_rollouts(const nn::LlamaForCausalLM& model,
                         const std::vector<std::vector<int32_t>>& prompts,
                         std::span<const uint64_t> seeds, const RolloutOptions& options);

// The training view of some rows of a rollout batch, as tensors on `device`:
//   input_ids (R, L - 1): tokens[:, :-1];  targets (R, L - 1): tokens[:, 1:] at actions, -100
//   elsewhere;  mask (R, L - 1) f32 1 at actions; and, when the batch has pads, position_ids
//   (R, L - 1) and attention_bias (R, 1, 1, L - 1) (-1e9 on pad keys).
struct ActionBatch {
  Tensor input_ids, targets, mask, position_ids, attention_bias;
  int64_t rows = 0, columns = 0;  // R, L - 1
};
ActionBatch action_batch(const Rollouts& rollouts, std::span<const int64_t> rows, Device device);

// The model's forward on an action batch: per-token log-probs of the targets under the
// distribution the rollouts sampled from, softmax(logits / temperature) over the first
// vocab_limit ids (0 = all), (R, L - 1), 0 where the target is -100 (differentiable when
// grad mode is on), and the final hidden state (R, L - 1, C) for a value head.
struct PolicyOutput {
  Tensor logprobs;
  Tensor last_hidden;
  Tensor logits;  // (R * (L - 1), V') after the temperature and the vocabulary limit
};
PolicyOutput policy_forward(const nn::LlamaForCausalLM& model, const ActionBatch& batch,
                            double temperature, int64_t vocab_limit = 0);

// Entropy of softmax(logits) per row, (R * (L - 1), V) -> (R, L - 1) as shaped; differentiable.
Tensor token_entropy(const Tensor& logits, int64_t rows, int64_t columns);

}  // namespace mnemo::rl
