// Window-by-window scoring (see evaluate.h).
#include "train/lib/evaluate.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::train {

double EvalResult::bits_per_byte() const {
  return bytes ? total_nats / std::numbers::ln2 / double(bytes) : 0.0;
}

std::vector<int64_t> token_byte_lengths(const text::Tokenizer& tokenizer) {
  std::vector<int64_t> lengths(size_t(tokenizer.vocab_size()));
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    lengths[size_t(id)] =
        id == tokenizer.eos_id() ? 0 : int64_t(tokenizer.decode(std::span(&id, 1)).size());
  }
  return lengths;
}

namespace {

// Sums the loss over `count` windows of n ids each, starting at ids[first * n].
void score_batch(nn::LlamaForCausalLM& model, std::span<const int32_t> ids, int64_t first,
                 int64_t count, int64_t n, const std::vector<int64_t>& token_bytes,
                 EvalResult& result) {
  std::vector<int64_t> inputs, targets;
  inputs.reserve(size_t(count * (n - 1)));
  targets.reserve(size_t(count * (n - 1)));
  for (int64_t w = 0; w < count; ++w) {
    const int32_t* window = ids.data() + (first + w) * n;
    for (int64_t i = 0; i + 1 < n; ++i) {
      inputs.push_back(window[i]);
      targets.push_back(window[i + 1]);
      const int64_t target = window[i + 1];
      MNEMO_CHECK(target >= 0 && target < int64_t(token_bytes.size()),
                  "eval: token id {} is outside the tokenizer's vocabulary ({} ids)", target,
                  token_bytes.size());
      result.bytes += token_bytes[size_t(target)];
    }
  }
  const Device device = model.parameters().front().device();  // where the ids must go
  const Tensor x = to(from_vector(inputs, {count, n - 1}), device);
  const Tensor y = to(from_vector(targets, {count, n - 1}), device);
  const double mean_loss = model.loss(x, y).item();
  result.total_nats += mean_loss * double(count * (n - 1));
  result.tokens += count * (n - 1);
}

}  // namespace

EvalResult evaluate_windows(nn::LlamaForCausalLM& model, std::span<const int32_t> ids,
                            int64_t window, int64_t batch, const std::vector<int64_t>& token_bytes,
                            int64_t max_windows) {
  MNEMO_CHECK(window >= 2, "eval: the window must hold at least 2 tokens, got {}", window);
  // A window of n ids feeds n - 1 of them to the model.
  MNEMO_CHECK(window - 1 <= model.config.max_position_embeddings,
              "eval: window {} exceeds the model's max_position_embeddings {} + 1", window,
              model.config.max_position_embeddings);
  MNEMO_CHECK(batch >= 1, "eval: batch must be >= 1, got {}", batch);
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  EvalResult result;
  int64_t full = int64_t(ids.size()) / window;
  int64_t tail = int64_t(ids.size()) % window;
  if (max_windows > 0 && full >= max_windows) {
    full = max_windows;
    tail = 0;
  }
  for (int64_t first = 0; first < full; first += batch) {
    score_batch(model, ids, first, std::min(batch, full - first), window, token_bytes, result);
  }
  if (tail >= 2) {
    score_batch(model, ids.subspan(size_t(full * window)), 0, 1, tail, token_bytes, result);
  }
  model.train(was_training);
  return result;
}

}  // namespace mnemo::train
