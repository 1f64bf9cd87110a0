// Scoring text with a language model: summed next-token loss, tokens and bytes.
//
// The rule (shared with `mnemo eval` and scripts/check_eval_torch.py): the ids are cut into
// consecutive, non-overlapping windows of `window` ids; each window is scored on its own —
// id i is predicted from ids < i of the same window — so a window of n ids contributes n - 1
// predictions (a final shorter window of at least 2 ids counts too). Bits per byte divide the
// summed loss (converted to bits) by the bytes the predicted tokens decode to (eos: 0 bytes),
// which makes it comparable across tokenizers.
//
// A memory-augmented model (memory/segment_lm.h) scores streams instead: consecutive,
// non-overlapping streams of segments * seq_len + 1 ids, each read segment by segment from
// the initial memory state with the state carried, so id i of a stream is predicted from all
// ids < i of that stream (evaluate_streams).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "memory/segment_lm.h"
#include "nn/llama.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

struct EvalResult {
  double total_nats = 0;  // summed cross-entropy of every prediction
  int64_t tokens = 0;     // predictions made
  int64_t bytes = 0;      // bytes of the predicted tokens
  double loss() const { return tokens ? total_nats / double(tokens) : 0.0; }
  double bits_per_byte() const;
};

// Byte length of every id when decoded alone (eos counts 0).
std::vector<int64_t> token_byte_lengths(const text::Tokenizer& tokenizer);

// Scores `ids` as described above, `batch` windows per forward pass, without gradients and
// with the model in eval mode. Stops after max_windows windows when it is > 0.
EvalResult evaluate_windows(nn::LlamaForCausalLM& model, std::span<const int32_t> ids,
                            int64_t window, int64_t batch, const std::vector<int64_t>& token_bytes,
                            int64_t max_windows = 0);

// Scores `ids` as streams: consecutive, non-overlapping streams of segments * seq_len + 1
// ids (the last one may be shorter, if it holds at least 2 ids); in each stream id i is
// predicted from ids < i of the same stream, read segment by segment (seq_len tokens each)
// from lm.initial_state with the state carried. `batch` streams per forward pass, no_grad,
// eval mode. Stops after max_streams streams when it is > 0.
EvalResult evaluate_streams(memory::SegmentLM& lm, std::span<const int32_t> ids, int64_t seq_len,
                            int64_t segments, int64_t batch,
                            const std::vector<int64_t>& token_bytes, int64_t max_streams = 0);

}  // namespace mnemo::train
