// SegmentLM: a decoder language model that reads a long stream in segments and carries a
// memory state from one segment to the next. It is the one interface of mnemo's memory
// mechanisms (memory/*), of their no-memory baseline, and of the harness that compares them
// (`mnemo memory-bench`).
//
//   MemoryState state = lm.initial_state(B);
//   for (s = 0; s < S; ++s) {
//     SegmentOutput out = lm.forward_segment(ids[s], state);   // ids[s] (B, T) -> logits (B, T, V)
//     loss += cross_entropy(out.logits, targets[s]);
//     state = out.state;
//   }
//
// State in, state out: a module keeps no per-stream data of its own, so
//   - one module serves any number of streams (row b of every state tensor is stream b);
//   - a state is a list of named tensors, so it can be checkpointed like weights;
//   - training decides how far gradients flow: a state tensor that carries the autograd
//     graph links segments (back-propagation through time); a detached one (the Memorizing
//     Transformer's kNN memory) does not.
//
// forward_backward runs one training step's forward and backward over a stream of segments.
// The default is full back-propagation through time over one graph; a mechanism overrides it
// when it trains differently (Memformer: memory replay back-propagation).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace mnemo::memory {

// A mechanism's state between segments. Names are the mechanism's ("slots", "knn.keys",
// "xl.0.k", ...); every tensor has the batch (stream) dimension first.
struct MemoryState {
  nn::NamedTensors tensors;

  bool empty() const { return tensors.empty(); }
  const Tensor* find(std::string_view name) const;  // null when absent
  const Tensor& at(std::string_view name) const;    // throws mnemo::Error naming the key
  void set(const std::string& name, Tensor value);  // replaces or appends
  MemoryState detached() const;                     // every tensor cut from the graph
};

struct SegmentOutput {
  Tensor logits;      // (B, T, V)
  MemoryState state;  // after this segment
};

class SegmentLM : public nn::Module {
 public:
  // Its name in memory/factory.h ("none", "memorizing", ...).
  virtual std::string mechanism() const = 0;
  // The state before a stream's first segment, for `batch` streams.
  virtual MemoryState initial_state(int64_t batch) const = 0;
  // ids (B, T) integer token ids, T <= segment_length(); state from initial_state(B) or a
  // previous segment.
  virtual SegmentOutput forward_segment(const Tensor& ids, const MemoryState& state) = 0;
  // The longest segment forward_segment accepts (its local attention window).
  virtual int64_t segment_length() const = 0;

  // The token id that ends a document (the tokenizer's eos), or -1 (streams are one document).
  // A mechanism whose memory must not outlive a document clears a stream's memory after it,
  // inside forward_segment (the ids carry the boundary, so the state stays in/out): the
  // Memorizing Transformer does (memorizing.h); Memformer's slots and the baseline ignore it.
  // The trainer, `mnemo eval` and `mnemo sample` set it from the checkpoint's tokenizer.
  int64_t document_end_id = -1;

  // Called by every trainer before each training step with the number of steps taken so far
  // (0-based; a resumed run goes on from its checkpoint's count), for a mechanism whose
  // training follows a schedule (Titans' gate hold, titans.h). Never called outside
  // training. Default: nothing.
  virtual void set_training_step(int64_t /*step*/) {}
  // Called by every trainer after each training step with its loss (the mean over the step's
  // updates, the same on every rank), for a mechanism whose schedule follows the loss (Titans'
  // gate_open_loss, titans.h). State it keeps must be in persistent buffers, so that a resumed
  // run goes on as the uninterrupted one. Never called outside training. Default: nothing.
  virtual void observe_training_loss(double /*loss*/) {}

  // `state` with the streams in `rows` restarted from the initial state (their documents
  // ended). Default: each tensor's rows replaced by initial_state's.
  virtual MemoryState reset_rows(const MemoryState& state, const std::vector<int64_t>& rows) const;

  // One training step over S segments: ids[s], targets[s] (B, T) (targets -100 = ignored).
  // Accumulates grad_scale times the gradient of the mean loss over all scored tokens into
  // the parameters (a trainer that accumulates micro-batches or splits them over ranks scales
  // each one: train/lib/trainer.h) and returns that mean loss (unscaled); *final_state (if
  // given) receives the state after the last segment, detached. Default: full
  // back-propagation through time over one graph.
  virtual double forward_backward(const std::vector<Tensor>& ids,
                                  const std::vector<Tensor>& targets, const MemoryState& initial,
                                  MemoryState* final_state = nullptr, double grad_scale = 1.0);
};

// Sum of next-token cross-entropies of one segment and the number of scored tokens.
// logits (B, T, V), targets (B, T) integer, -100 ignored.
struct SegmentLoss {
  Tensor sum;  // scalar, differentiable
  int64_t count = 0;
};
SegmentLoss segment_loss(const Tensor& logits, const Tensor& targets);

// The checks every forward_backward starts with: ids and targets are the same, non-zero
// number of segments, and at least one target is scored. Returns the number of scored
// targets (not -100) of the whole stream: the mean loss's denominator.
int64_t scored_targets(const std::vector<Tensor>& ids, const std::vector<Tensor>& targets);

}  // namespace mnemo::memory
