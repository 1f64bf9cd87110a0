// Helpers shared by the memory tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "autograd/ops.h"
#include "core/ops/factory.h"
#include "core/tensor.h"
#include "memory/segment_lm.h"
#include "nn/nn_test_util.h"
#include "support/tiny_llama.h"

namespace mnemo::memory::test {

using nn::test::max_abs_diff;

// The smallest Llama the memory layers run on: hidden 8 (two heads on one key/value head),
// 11 tokens, weights large enough (std 0.3) that every path matters to the gradients.
inline nn::LlamaConfig micro_llama(int64_t layers, int64_t max_positions = 64) {
  return mnemo::test::tiny_llama({.vocab_size = 11,
                                  .hidden_size = 8,
                                  .num_hidden_layers = layers,
                                  .max_position_embeddings = max_positions,
                                  .initializer_range = 0.3});
}

// The additive mask (1, 1, total, total) f64 under which one causal pass over a whole stream
// sees what segment-wise attention with an XL cache of the previous `window` tokens sees: a
// token of the segment that starts at `start` sees the keys from start - window on (-1e300
// before them). lengths: the segments' lengths in stream order.
inline Tensor xl_window_bias(const std::vector<int64_t>& lengths, int64_t window) {
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  std::vector<double> bias(size_t(total * total), 0.0);
  int64_t start = 0;
  for (int64_t n : lengths) {
    for (int64_t p = start; p < start + n; ++p) {
      for (int64_t j = 0; j < start - window; ++j) bias[size_t(p * total + j)] = -1e300;
    }
    start += n;
  }
  return from_vector(bias, {1, 1, total, total}, {DType::f64});
}

// Runs stream (B, total) through lm one segment after another (lengths, in stream order) from
// lm's initial state, checking each segment's logits against the same columns of want
// (B, total, V) to within tolerance. Returns the state after the last segment.
inline MemoryState check_segment_logits(SegmentLM& lm, const Tensor& stream,
                                        const std::vector<int64_t>& lengths, const Tensor& want,
                                        double tolerance) {
  MemoryState state = lm.initial_state(stream.size(0));
  int64_t start = 0;
  for (int64_t n : lengths) {
    CAPTURE(start);
    const SegmentOutput out = lm.forward_segment(contiguous(narrow(stream, 1, start, n)), state);
    CHECK(max_abs_diff(out.logits, narrow(want, 1, start, n)) < tolerance);
    state = out.state;
    start += n;
  }
  return state;
}

}  // namespace mnemo::memory::test
