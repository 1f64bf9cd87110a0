// WindowSampler and SequentialWindows (loader.h).
#include "train/text/loader.h"

#include <algorithm>

#include "core/error.h"
#include "core/ops/factory.h"
#include "train/text/random.h"

namespace mnemo::text {

WindowSampler::WindowSampler(TokenShard shard, int64_t seq_len, uint64_t seed)
    : shard_(std::move(shard)), seq_len_(seq_len), seed_(seed) {
  MNEMO_CHECK(seq_len_ >= 1, "WindowSampler: seq_len must be >= 1, got {}", seq_len_);
  MNEMO_CHECK(shard_.size() >= seq_len_ + 1,
              "WindowSampler: token shard '{}' has {} ids, fewer than seq_len + 1 = {}",
              shard_.path(), shard_.size(), seq_len_ + 1);
}

int64_t WindowSampler::window_start(uint64_t k) const {
  const auto starts = uint64_t(shard_.size() - seq_len_);  // s in [0, size - T - 1]
  return int64_t(below(counter_random(seed_, k), starts));
}

void WindowSampler::next(int64_t batch, int64_t* inputs, int64_t* targets) {
  MNEMO_CHECK(batch >= 1, "WindowSampler::next: batch must be >= 1, got {}", batch);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t start = window_start(position_++);
    shard_.copy_range(start, seq_len_, inputs + b * seq_len_);
    shard_.copy_range(start + 1, seq_len_, targets + b * seq_len_);
  }
}

std::pair<Tensor, Tensor> WindowSampler::next_batch(int64_t batch) {
  MNEMO_CHECK(batch >= 1, "WindowSampler::next_batch: batch must be >= 1, got {}", batch);
  Tensor inputs = empty({batch, seq_len_}, {DType::i64});
  Tensor targets = empty({batch, seq_len_}, {DType::i64});
  next(batch, inputs.data<int64_t>(), targets.data<int64_t>());
  return {inputs, targets};
}

SequentialWindows::SequentialWindows(TokenShard shard, int64_t seq_len)
    : shard_(std::move(shard)), seq_len_(seq_len) {
  MNEMO_CHECK(seq_len_ >= 1, "SequentialWindows: seq_len must be >= 1, got {}", seq_len_);
  num_windows_ = shard_.size() > 0 ? (shard_.size() - 1) / seq_len_ : 0;
  MNEMO_CHECK(num_windows_ > 0,
              "SequentialWindows: token shard '{}' has {} ids, fewer than seq_len + 1 = {}",
              shard_.path(), shard_.size(), seq_len_ + 1);
}

int64_t SequentialWindows::num_batches(int64_t batch_size) const {
  MNEMO_CHECK(batch_size >= 1, "SequentialWindows: batch_size must be >= 1, got {}", batch_size);
  return (num_windows_ + batch_size - 1) / batch_size;
}

void SequentialWindows::window(int64_t i, int64_t* inputs, int64_t* targets) const {
  MNEMO_CHECK(i >= 0 && i < num_windows_, "SequentialWindows: window {} is outside [0, {})", i,
              num_windows_);
  shard_.copy_range(i * seq_len_, seq_len_, inputs);
  shard_.copy_range(i * seq_len_ + 1, seq_len_, targets);
}

std::pair<Tensor, Tensor> SequentialWindows::batch(int64_t k, int64_t batch_size) const {
  const int64_t batches = num_batches(batch_size);
  MNEMO_CHECK(k >= 0 && k < batches, "SequentialWindows: batch {} is outside [0, {})", k, batches);
  const int64_t first = k * batch_size;
  const int64_t rows = std::min(batch_size, num_windows_ - first);
  Tensor inputs = empty({rows, seq_len_}, {DType::i64});
  Tensor targets = empty({rows, seq_len_}, {DType::i64});
  int64_t* in = inputs.data<int64_t>();
  int64_t* tg = targets.data<int64_t>();
  for (int64_t r = 0; r < rows; ++r) window(first + r, in + r * seq_len_, tg + r * seq_len_);
  return {inputs, targets};
}

}  // namespace mnemo::text
