// Memformer (Wu et al., 2020, "Memformer: A Memory-Augmented Transformer for Sequence
// Modeling"): a decoder LM that carries K memory slots from segment to segment, trained with
// memory replay back-propagation (MRBP).
//
// Shapes: B streams, T tokens per segment (T <= segment_length), C hidden size, V vocabulary,
// K slots, L layers, S segments in a training step.
//
//   m_0       = broadcast(initial_slots)          (K, C) parameters -> (B, K, C)
//   x         = embed(ids_s)                       (B, T, C)
//   x         = MemformerBlock_l(x, rope, memory_norm(m_s), Q)   l = 1..L: self-attention
//               within the segment (RoPE positions 0..T-1), cross-attention from the tokens
//               (plus Q[0:T], learned query positions (segment_length, C), when
//               read_positions) to the slots, SwiGLU (memformer_layers.h)
//   h         = norm(x);  logits = lm_head(h)      (B, T, V)
//   m_{s+1}   = MemoryWriter(m_s, h)               slot attention over [m_s; h + P] (slot i
//               sees itself and the tokens, P learned token positions), GRUCell, residual
//               SwiGLU, RMSNorm (memformer_layers.h)
// State: "slots" (B, K, C) = m_s, carrying the autograd graph between segments.
//
// Training (forward_backward). The loss is the mean next-token cross-entropy over all scored
// tokens of the S segments, L = (1/N) sum_s l_s(theta, m_s), with m_{s+1} = f(theta, m_s, x_s).
// Full back-propagation through time (mrbp = false) keeps all S segments' graphs alive at
// once. MRBP keeps only the slots:
//   1. forward all segments without a graph, remembering each segment's input m_s (B, K, C);
//   2. for s = S-1 .. 0: recompute segment s from m_s (a fresh leaf that requires grad),
//      back-propagate   l_s / N + sum(m_{s+1} * dL/dm_{s+1})   (dL/dm_S = 0)
//      which adds segment s's share to every parameter's .grad and leaves dL/dm_s in the
//      leaf's .grad, handed to segment s-1. Segment 0 runs from the caller's initial slots
//      with their graph, so the gradient reaches initial_slots.
// By the chain rule the accumulated gradients equal BPTT's exactly (up to rounding), while
// the live graph is one segment's: memory stays flat in S, at the cost of a second forward.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memory/memformer_layers.h"
#include "memory/segment_lm.h"
#include "nn/linear.h"
#include "nn/llama.h"

namespace mnemo::memory {

// The "memory" section of a config for mechanism "memformer". JSON keys are the field names.
struct MemformerConfig {
  int64_t num_slots = 8;        // K
  int64_t segment_length = 64;  // the local window, <= the model's max_position_embeddings
  bool mrbp = true;             // memory replay back-propagation; false = full BPTT
  int64_t writer_heads = 0;     // heads of the writer's slot attention; 0 = the model's
  int64_t writer_ff_size = 0;   // the writer's SwiGLU width; 0 = the model's intermediate
  double slot_init_std = 1.0;   // initial slots ~ normal(0, slot_init_std)
  // Init std of the writer's attention and feed-forward, and of the blocks' cross-attention
  // to the slots; 0 = 1/sqrt(hidden_size) (PyTorch's Linear scale). At the decoder's 0.02 the
  // tokens' share of the new slots is ~1% and training switches the memory off before it
  // can learn to use it (docs/memory-results.md, copy-far).
  double writer_init_std = 0;
  double read_init_std = 0;
  // Learned token positions in the writer's keys and values, and in the blocks' queries to
  // the slots (memformer_layers.h).
  bool writer_positions = true;
  bool read_positions = true;

  // Unknown keys and wrong types or values are mnemo::Errors naming the key ("mechanism" is
  // accepted and ignored, so a whole memory section can be passed).
  static MemformerConfig from_json(const nlohmann::json& json);
  // Throws naming the field that is out of range.
  void validate() const;
};

class MemformerLM : public SegmentLM {
 public:
  MemformerLM(const nn::LlamaConfig& model, const MemformerConfig& cfg, Generator* gen = nullptr);

  std::string mechanism() const override { return "memformer"; }
  // "slots": initial_slots broadcast to (B, K, C) (a view carrying the graph to the parameter).
  MemoryState initial_state(int64_t batch) const override;
  // ids (B, T) integer, state "slots" (B, K, C) -> logits (B, T, V), state "slots" (B, K, C)
  SegmentOutput forward_segment(const Tensor& ids, const MemoryState& state) override;
  int64_t segment_length() const override { return config.segment_length; }
  // MRBP when config.mrbp, else the default full back-propagation through time.
  double forward_backward(const std::vector<Tensor>& ids, const std::vector<Tensor>& targets,
                          const MemoryState& initial, MemoryState* final_state = nullptr,
                          double grad_scale = 1.0) override;

  // The pieces of forward_segment, for tests and inspection.
  // ids (B, T), slots (B, K, C) -> the final hidden states h (B, T, C) after norm.
  Tensor hidden(const Tensor& ids, const Tensor& slots) const;

  nn::LlamaConfig model_config;
  MemformerConfig config;  // mrbp may be flipped between steps
  Tensor initial_slots;    // (K, C)
  Tensor read_position;    // Q (segment_length, C); undefined unless config.read_positions
  std::shared_ptr<nn::Embedding> embed_tokens;
  std::shared_ptr<nn::ModuleList> layer_list;  // registered as "layers"
  std::vector<std::shared_ptr<MemformerBlock>> layers;
  std::shared_ptr<nn::RMSNorm> memory_norm;  // the slots as the blocks read them
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::RotaryEmbedding> rotary_emb;
  std::shared_ptr<MemoryWriter> writer;
  std::shared_ptr<nn::Linear> lm_head;  // null when tie_word_embeddings

 private:
  const Tensor& output_weight() const;
  double forward_backward_mrbp(const std::vector<Tensor>& ids, const std::vector<Tensor>& targets,
                               const MemoryState& initial, MemoryState* final_state,
                               double grad_scale);
};

}  // namespace mnemo::memory
