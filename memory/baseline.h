// BaselineLM: the no-memory baseline of the memory benchmark (mechanism "none").
//
// A Llama-style decoder (nn::LlamaForCausalLM: embedding, pre-norm blocks with RoPE and
// SwiGLU, final RMSNorm, lm_head) run on each segment on its own: its attention sees only
// the current segment (positions restart at 0 every segment) and nothing is carried between
// segments, so its state is empty. Every mechanism is compared against this model at the
// same size (layers, width, window = segment length, steps, batch).
//
//   ids (B, T), T <= segment_length  ->  logits (B, T, V)        state in = state out = {}
//
// Parameter names are HF Llama's (model.*, lm_head.weight), as in nn/llama.h.
#pragma once

#include <memory>

#include "memory/segment_lm.h"
#include "nn/llama.h"

namespace mnemo::memory {

class BaselineLM : public SegmentLM {
 public:
  // segment_length: the local window, 1 <= segment_length <= max_position_embeddings.
  BaselineLM(const nn::LlamaConfig& config, int64_t segment_length, Generator* gen = nullptr);

  std::string mechanism() const override { return "none"; }
  MemoryState initial_state(int64_t batch) const override;
  SegmentOutput forward_segment(const Tensor& ids, const MemoryState& state) override;
  int64_t segment_length() const override { return segment_length_; }

  // The decoder itself (its parameters are this module's, under the same names).
  const nn::LlamaForCausalLM& decoder() const { return *decoder_; }

 private:
  std::shared_ptr<nn::LlamaForCausalLM> decoder_;
  int64_t segment_length_;
};

}  // namespace mnemo::memory
