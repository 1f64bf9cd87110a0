// TitansLM: Titans (Behrouz, Zhong, Mirrokni, 2024) as a SegmentLM — a Llama-style decoder
// whose chosen layers read from and write to a neural long-term memory (NeuralMemory,
// titans_memory.h: a small network trained online on the stream, with momentum and
// forgetting).
//
// Shapes: B streams, T tokens of the segment (T <= segment_length), C width, V vocabulary,
// Np persistent tokens, Nm learned memory queries.
//
//   x = embed(ids)                                     (B, T, C), RoPE positions 0 .. T-1
//   for each layer l: x = block_l(x)                   a Llama block (nn/transformer.h), or
//                                                      a TitansBlock on the memory layers
//   logits = lm_head(norm(x))                          (B, T, V)
//
// A TitansBlock (the project's Llama block plus the memory; parameter names as HF's block,
// with "memory.*", "persistent", "memory_queries", "memory_gate" added) in one of two variants:
//
// Memory as Context ("mac", the paper's main variant and the default):
//   R = memory.read(x)                 one read-out per segment token, R_t = M_W(q(x_t)) with
//                                      W the weights after the previous segments (B, T, C);
//                                      or, with memory_tokens = Nm > 0, Nm learned queries'
//                                      read-outs (B, Nm, C)
//   h = x + attn(norm(x) | extra = [P; R])   the attention also sees, as keys and values
//                                      (projected by the block's own k_proj, v_proj), the
//                                      persistent tokens P (Np, C, learned, no rotation) and R
//   y = h + mlp(norm(h))
//   memory.store(y)                    the block's output is what the memory stores (chunk by
//                                      chunk, for the next segments)
// Causality. R_t is computed from token t's own query, so a query s that saw R_t for t > s
// would see token t: the future. With one read-out per token, R_t is visible only to the
// queries s >= t (an additive -inf bias on the other read-outs), and R_t's key is rotated to
// position t; in half of the heads (rounded up) the score of each query's own read-out gets
// log(segment_length) added (own_readout_bias), so that it weighs about as much as T other
// keys together and the memory is read from the first step, not only once an attention head
// has learned to look for it; the other heads stay free for attention within the segment
// (docs/memory-results.md). Learned queries (memory_tokens > 0) read
// only the weights of earlier segments and are visible to every query. Persistent tokens are
// visible to every query. tests/memory/test_titans.cpp changes token t+1 and checks that the
// logits at positions <= t do not move.
// No circularity: the memory stores y, which depends on R; R is read with the weights as they
// were before this segment (the state's), never with weights that have stored any of y. The
// new weights are read by the next segment.
//
// Memory as a Gate ("mag"):
//   a = attn(norm(x) | extra = P)      causal attention over the last `window` tokens of the
//                                      segment (the paper's sliding window; window 0 = the
//                                      whole segment), persistent tokens visible to all
//   m = memory.forward(x)              stores x chunk by chunk and returns each token's
//                                      read-out with the weights before its chunk
//   h = x + a + sigmoid(W_g norm(x) + b_g) m
//   y = h + mlp(norm(h))
// The read-out of chunk n depends on tokens before chunk n only (retrieve before store), so
// MAG is causal without a mask. With read_from "batch" every chunk reads the weights its
// update batch started from (by default: the segment's start), so the memory answers only
// what earlier segments stored and leaves the segment to the attention.
// The window splits the work as the paper does: attention for what is near, the memory for
// what is far. The read-out of chunk n holds everything before chunk n, so a window of at
// least chunk_size tokens leaves no earlier token out of reach. With the whole segment in
// view the block's attention can answer everything inside the segment by itself, and on
// recall it does, racing the memory for the in-segment items that train it (the gate hold
// below; docs/memory-results.md).
// Gate hold (gate_hold_steps = N > 0): during the first N training steps (the trainer says
// which step it is taking: SegmentLM::set_training_step) the gate is held shut, h = x + a:
// the memory still stores, its read-out is left out, and the gate and the memory get no
// gradient. At step N the gate opens at its init, gate_init. On recall the decoder then forms
// its in-segment lookup before the read-out competes with it in the residual stream, which
// an open gate from the first step kept from forming on some seeds (docs/memory-results.md).
// Outside training (no step set: `mnemo eval`, `mnemo sample`) the gate is never held.
// Loss rule (gate_open_loss = L > 0): the hold ends earlier, at the first step after the
// training loss's moving average (an EMA over ~25 steps, fed by the trainer through
// SegmentLM::observe_training_loss) has fallen to L; gate_hold_steps is then the longest hold.
// A hold of fixed length opens every seed's gate at the same step; one that ends on the loss
// follows each seed's own curve. Neither serves every seed of recall: at 2.0 the loss rule
// rescued a seed whose lookup forms late and lost one that the fixed hold serves, so
// memory-bench keeps the fixed hold and the rule is an option (docs/memory-results.md). The
// EMA and whether the gate has opened are the integer buffer "gate_hold" (in checkpoints, so a
// resumed run opens it at the same step; integer, so that a change of the model's dtype does
// not round it).
//
// State: "titans.<l>.*" for each memory layer l (titans_memory.h: weights, momentum,
// batch_weights, pending, position), batch first, carrying the autograd graph: training
// back-propagates through the inner updates of every segment of a stream (SegmentLM's
// default forward_backward, full BPTT). The memory ignores document ends (document_end_id),
// as Memformer's slots do: forgetting is the model's to learn.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memory/decoder_lm.h"
#include "memory/segment_lm.h"
#include "memory/titans_memory.h"
#include "nn/llama.h"

namespace mnemo::memory {

// The "memory" section of a config for mechanism "titans". JSON keys are the field names.
struct TitansConfig {
  std::vector<int64_t> layers = {-1};   // memory layers; negative counts from the end
  int64_t heads = 2;                    // memory heads H (head dim C / H)
  int64_t chunk_size = 4;               // c: tokens per surprise
  int64_t update_batch = 0;             // b: tokens per parallel update; 0 = the segment length
                                        // (rounded up to a multiple of chunk_size)
  std::string memory_model = "linear";  // "linear" | "mlp" | "attention" (titans_models.h)
  double max_lr = 0.1;                  // the inner step size's ceiling
  double max_forget = 1.0;              // the forgetting gate's ceiling: alpha in (0, max_forget)
  std::string step_size = "token";      // "token" | "exp" (titans_memory.h)
  int64_t conv_kernel = 2;              // causal convolution after the projections (1 = none)
  int64_t persistent_tokens = 4;        // Np
  int64_t memory_tokens = 0;            // mac: 0 = one read-out per token; Nm > 0 learned queries
  bool own_readout_bias = true;         // mac per token: log T on each query's own read-out,
                                        // in half of the heads
  std::string variant = "mac";          // "mac" | "mag"
  double gate_init = -4;                // mag: the memory gate's bias at init (sigmoid(-4) =
                                        // 0.018: the read-out starts nearly shut out)
  std::string read_from = "chunk";      // mag: "chunk" (each chunk reads the weights after the
                                        // chunk before it) | "batch" (its update batch's start:
                                        // titans_memory.h)
  int64_t window = 0;                   // mag: the attention's sliding window in tokens (above);
                                        // 0 = the whole segment
  int64_t gate_hold_steps = 0;          // mag: training steps with the gate held shut (above)
  double gate_open_loss = 0;            // mag, > 0: the hold ends once the training loss's
                                        // moving average has fallen to this (above)
  int64_t segment_length = 64;          // the local window: the longest segment

  // The keys above (and "mechanism", ignored); unknown keys, wrong types and values out of
  // range are mnemo::Errors naming the key.
  static TitansConfig from_json(const nlohmann::json& j);
  // Throws naming the key that is out of range for `model`.
  void validate(const nn::LlamaConfig& model) const;
  // The update batch in tokens (update_batch, or the segment length rounded up to chunks).
  int64_t resolved_update_batch() const;
};

class TitansBlock : public nn::Module {
 public:
  TitansBlock(const nn::LlamaConfig& model, const TitansConfig& cfg, Generator* gen);

  // x (B, T, C), rope for positions 0 .. T-1; reads the memory state "<prefix>.*" of `in` and
  // writes the new one into `out` -> (B, T, C). With `readout` given, *readout receives the
  // memory's read-out of every token (B, T, C), also while the gate is held.
  Tensor forward(const Tensor& x, const nn::RopeTables& rope, const MemoryState& in,
                 const std::string& prefix, MemoryState& out, Tensor* readout = nullptr) const;

  bool mac;            // the variant
  int64_t window = 0;  // mag: the attention's sliding window (0 = the whole segment)
  std::shared_ptr<nn::RMSNorm> input_layernorm, post_attention_layernorm;
  std::shared_ptr<nn::CausalSelfAttention> self_attn;
  std::shared_ptr<nn::SwiGLU> mlp;
  std::shared_ptr<NeuralMemory> memory;
  Tensor persistent;      // (Np, C), undefined when Np = 0
  Tensor memory_queries;  // (Nm, C), undefined unless mac with memory_tokens > 0
  double own_bias = 0;    // mac per token: added to the score of each query's own read-out
  std::shared_ptr<nn::Linear> memory_gate;  // mag: C -> C
  bool gate_held = false;                   // mag: the read-out left out (TitansLM sets it)

 private:
  // rows (B, M, C) -> keys and values (B, Hkv, M, Dh) by the attention's own projections.
  nn::LayerKV project(const Tensor& rows) const;
  // The extra keys and values of B streams: [P; R] (R undefined: P alone); R's keys rotated
  // to positions 0 .. T-1 when rope is given (one read-out per token).
  nn::LayerKV extras(int64_t B, const Tensor& readout, const nn::RopeTables* rope) const;
};

class TitansLM : public DecoderLM {
 public:
  TitansLM(const nn::LlamaConfig& model, const TitansConfig& cfg, Generator* gen = nullptr);

  std::string mechanism() const override { return "titans"; }
  MemoryState initial_state(int64_t batch) const override;
  // ids (B, T) integer, 1 <= T <= segment_length -> logits (B, T, V) and the new state.
  SegmentOutput forward_segment(const Tensor& ids, const MemoryState& state) override;
  int64_t segment_length() const override { return config.segment_length; }
  // Holds the mag gate shut while step < gate_hold_steps and, with gate_open_loss, until the
  // loss rule has opened it (the gate hold above).
  void set_training_step(int64_t step) override;
  // The loss rule: updates the loss's moving average and opens the gate once it is at
  // gate_open_loss or below. Nothing without gate_open_loss, or once the gate is open.
  void observe_training_loss(double loss) override;
  // The loss rule's state: whether it has opened the gate, and the moving average (NaN before
  // the first loss).
  bool gate_opened_by_loss() const;
  double gate_loss_average() const;

  // forward_segment, and each memory layer's read-out m (B, T, C) in layer order appended to
  // *readouts (read also while the gate is held; undefined for mac with memory_tokens > 0):
  // what the memory answers, for diagnostics (titans_diagnostics.h).
  SegmentOutput forward_with_readouts(const Tensor& ids, const MemoryState& state,
                                      std::vector<Tensor>* readouts);

  // The state prefix of memory layer l: "titans.<l>".
  static std::string prefix(int64_t layer);

  TitansConfig config;                                        // layers resolved to 0 .. L-1, sorted
  std::vector<std::shared_ptr<nn::TransformerBlock>> blocks;  // null on memory layers
  std::vector<std::shared_ptr<TitansBlock>> memory_blocks;    // null elsewhere
  // With gate_open_loss: (2,) int64 [opened (0 or 1), the loss's moving average in
  // millionths, or -1 before the first loss]; undefined otherwise.
  Tensor gate_hold;
};

}  // namespace mnemo::memory
