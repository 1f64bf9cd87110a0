// BaselineLM (baseline.h): a plain decoder applied to each segment independently.
#include "memory/baseline.h"

#include "core/error.h"

namespace mnemo::memory {

BaselineLM::BaselineLM(const nn::LlamaConfig& config, int64_t segment_length, Generator* gen)
    : segment_length_(segment_length) {
  config.validate();
  MNEMO_CHECK(segment_length >= 1 && segment_length <= config.max_position_embeddings,
              "BaselineLM: segment_length {} must be in [1, max_position_embeddings = {}]",
              segment_length, config.max_position_embeddings);
  decoder_ = std::make_shared<nn::LlamaForCausalLM>(config, gen);
  // Register the decoder's children directly, so names stay HF's (model.*, lm_head.weight).
  register_module("model", decoder_->model);
  if (decoder_->lm_head) register_module("lm_head", decoder_->lm_head);
}

MemoryState BaselineLM::initial_state(int64_t batch) const {
  MNEMO_CHECK(batch >= 1, "BaselineLM: batch must be positive, got {}", batch);
  return {};
}

SegmentOutput BaselineLM::forward_segment(const Tensor& ids, const MemoryState& state) {
  MNEMO_CHECK(state.empty(),
              "BaselineLM: the no-memory baseline takes an empty state, got {} "
              "tensors",
              state.tensors.size());
  MNEMO_CHECK(ids.dim() == 2 && ids.size(1) >= 1 && ids.size(1) <= segment_length_,
              "BaselineLM: ids must be (B, T) with 1 <= T <= segment_length {}, got {}",
              segment_length_, shape_str(ids.shape()));
  nn::LMInput input;
  input.input_ids = ids;
  SegmentOutput out;
  out.logits = decoder_->forward(input).logits;  // (B, T, V)
  return out;
}

}  // namespace mnemo::memory
