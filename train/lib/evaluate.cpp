// Window-by-window and stream-by-stream scoring (see evaluate.h).
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

namespace {

// Sums the loss of `count` streams of n ids each, stream r starting at ids[r * n], read in
// segments of seq_len tokens with the state carried.
void score_streams(memory::SegmentLM& lm, const int32_t* ids, int64_t count, int64_t n,
                   int64_t seq_len, const std::vector<int64_t>& token_bytes, Device device,
                   EvalResult& result) {
  const int64_t predictions = n - 1;
  memory::MemoryState state = lm.initial_state(count);
  for (int64_t begin = 0; begin < predictions; begin += seq_len) {
    const int64_t T = std::min(seq_len, predictions - begin);
    std::vector<int64_t> inputs(size_t(count * T)), targets(size_t(count * T));
    for (int64_t r = 0; r < count; ++r) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t target = ids[r * n + begin + t + 1];
        MNEMO_CHECK(target >= 0 && target < int64_t(token_bytes.size()),
                    "eval: token id {} is outside the tokenizer's vocabulary ({} ids)", target,
                    token_bytes.size());
        inputs[size_t(r * T + t)] = ids[r * n + begin + t];
        targets[size_t(r * T + t)] = target;
        result.bytes += token_bytes[size_t(target)];
      }
    }
    memory::SegmentOutput out =
        lm.forward_segment(to(from_vector(inputs, {count, T}), device), state);
    const memory::SegmentLoss loss =
        memory::segment_loss(out.logits, to(from_vector(targets, {count, T}), device));
    result.total_nats += loss.sum.item();
    result.tokens += loss.count;
    state = std::move(out.state);
  }
}

Device device_of(const memory::SegmentLM& lm) {
  const std::vector<Tensor> params = lm.parameters();
  return params.empty() ? Device::cpu() : params.front().device();
}

}  // namespace

EvalResult evaluate_streams(memory::SegmentLM& lm, std::span<const int32_t> ids, int64_t seq_len,
                            int64_t segments, int64_t batch,
                            const std::vector<int64_t>& token_bytes, int64_t max_streams) {
  MNEMO_CHECK(seq_len >= 1 && seq_len <= lm.segment_length(),
              "eval: segments of {} tokens, but the model takes at most {}", seq_len,
              lm.segment_length());
  MNEMO_CHECK(segments >= 1 && batch >= 1, "eval: segments ({}) and batch ({}) must be positive",
              segments, batch);
  const bool was_training = lm.is_training();
  lm.eval();
  NoGradGuard no_grad;
  const Device device = device_of(lm);
  const int64_t n = segments * seq_len + 1;
  int64_t full = int64_t(ids.size()) / n;
  int64_t tail = int64_t(ids.size()) % n;
  if (max_streams > 0 && full >= max_streams) {
    full = max_streams;
    tail = 0;
  }
  EvalResult result;
  for (int64_t first = 0; first < full; first += batch) {
    score_streams(lm, ids.data() + first * n, std::min(batch, full - first), n, seq_len,
                  token_bytes, device, result);
  }
  if (tail >= 2)
    score_streams(lm, ids.data() + full * n, 1, tail, seq_len, token_bytes, device, result);
  lm.train(was_training);
  return result;
}

}  // namespace mnemo::train
