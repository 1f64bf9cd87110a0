// Batches of (inputs, targets) windows from a token shard.
//
// A window of length T starting at s gives inputs = ids[s, s + T) and targets =
// ids[s + 1, s + T + 1): target t is the token that follows input t (next-token prediction).
//
// WindowSampler (training): window number k (k = 0, 1, 2, ... over the sampler's life) starts
// at s_k = below(counter_random(seed, k), size - T), i.e. uniformly in [0, size - T - 1]
// (random.h: splitmix64 of the counter, multiply-shift to the range). A draw depends only on
// (seed, k), so position() (= windows drawn so far) is the whole state: set_position(p)
// resumes the exact stream, e.g. after loading a checkpoint.
//
// SequentialWindows (evaluation): window i starts at i * T, for i < (size - 1) / T (every
// window needs its T + 1 ids), so windows do not overlap and are visited in order.
//
// Both copy the shard handle (copies share the memory mapping; shard.h).
#pragma once

#include <cstdint>
#include <utility>

#include "core/tensor.h"
#include "train/text/shard.h"

namespace mnemo::text {

class WindowSampler {
 public:
  // Throws if the shard holds fewer than seq_len + 1 ids or seq_len < 1.
  WindowSampler(TokenShard shard, int64_t seq_len, uint64_t seed);

  // inputs, targets: (batch, seq_len) row-major, filled with the next `batch` windows.
  void next(int64_t batch, int64_t* inputs, int64_t* targets);
  // The same as two i64 CPU tensors (B, T).
  std::pair<Tensor, Tensor> next_batch(int64_t batch);

  // Start of window k (k need not be drawn yet).
  int64_t window_start(uint64_t k) const;

  uint64_t position() const { return position_; }
  void set_position(uint64_t position) { position_ = position; }
  int64_t seq_len() const { return seq_len_; }
  uint64_t seed() const { return seed_; }
  const TokenShard& shard() const { return shard_; }

 private:
  TokenShard shard_;
  int64_t seq_len_;
  uint64_t seed_;
  uint64_t position_ = 0;
};

class SequentialWindows {
 public:
  // Throws if seq_len < 1 or the shard has no complete window (fewer than seq_len + 1 ids).
  SequentialWindows(TokenShard shard, int64_t seq_len);

  int64_t num_windows() const { return num_windows_; }
  // Batches of batch_size windows; the last one may be smaller.
  int64_t num_batches(int64_t batch_size) const;
  // Window i: inputs, targets (seq_len,) each.
  void window(int64_t i, int64_t* inputs, int64_t* targets) const;
  // Batch k: windows [k * batch_size, min((k + 1) * batch_size, num_windows)) as two i64 CPU
  // tensors (rows, T).
  std::pair<Tensor, Tensor> batch(int64_t k, int64_t batch_size) const;
  int64_t seq_len() const { return seq_len_; }

 private:
  TokenShard shard_;
  int64_t seq_len_;
  int64_t num_windows_;
};

}  // namespace mnemo::text
