// SegmentStep: `mnemo train` for a config with a "memory" section — a memory-augmented
// language model (a SegmentLM, memory/segment_lm.h) trained end to end on text read as
// streams of segments, in the run skeleton of trainer.h.
//
//   model        memory::make_segment_lm(memory.mechanism, ...) (memory/factory.h), its
//                weights drawn from train.seed; AdamW groups from optim::decay_groups plus one
//                for the mechanisms' scalar controls (gates, temperatures, distance slopes) at
//                memory.scalar_lr_scale times the learning rate (optim/param_groups.h)
//   stream       S * T + 1 consecutive ids of the train shard (S = memory.segments, T =
//                train.seq_len): inputs ids [0, S*T), targets ids [1, S*T + 1), cut into S
//                segments of T. The streams are text_step.h's windows, of S * T ids.
//   micro-batch  lm.forward_backward(segments, targets, lm.initial_state(rows)) on this rank's
//                streams, which carries the memory state from segment to segment and
//                back-propagates as the mechanism decides (full BPTT; per segment for the
//                Memorizing Transformer, whose state is detached; memory replay for
//                Memformer), its gradient scaled by the accumulation convention (trainer.h)
//   state        every stream starts from initial_state: no memory is carried from one step
//                to the next, so a checkpoint needs no memory state and --resume reproduces
//                the uninterrupted losses bit for bit (same seeds, same sampler position,
//                the AdamW moments restored)
//   documents    a stream crosses document boundaries (each document is followed by eos in
//                the shards); lm.document_end_id is the tokenizer's eos, so a mechanism that
//                clears its memory at a document's end does so inside the stream (the
//                Memorizing Transformer: memory/memorizing.h). Training, eval and sample alike.
//   validation   the val shard cut into consecutive streams of S*T + 1 ids, eval_batches x
//                batch_size of them, each scored segment by segment with the state carried
//                (evaluate.h: evaluate_streams)
//   bank         an explicit run (memory/explicit.h) reads memory.bank, a bank file or a text
//                file of entries, with the run's tokenizer once the data is open
//                (segment_checkpoint.h: load_run_bank); a resumed run's bank is in its weights
//   frozen       parameters without requires_grad (ExplicitLM's freeze_backbone) are left out
//                of the optimizer's groups
//   checkpoint   train/lib/segment_checkpoint.h
#pragma once

#include <memory>

#include "memory/segment_lm.h"
#include "train/lib/text_step.h"

namespace mnemo::train {

class SegmentStep final : public TextStep {
 public:
  // Builds the mechanism's model; a bad memory key fails here, naming the key.
  explicit SegmentStep(const RunConfig& config);

  nn::Module& model() override { return *lm_; }
  std::vector<optim::ParamGroup> param_groups() const override;
  std::string describe() const override;
  std::string title() const override;
  void write_model(const std::filesystem::path& dir) const override;
  void load_model(const std::string& checkpoint_dir) override;
  void open_data(const RunContext& run) override;
  double micro_batch(const RunContext& run) override;
  // The Memorizing Transformer and Memformer's memory replay call backward once per segment.
  bool single_backward() const override { return false; }
  // Tells the model which step it is taking (SegmentLM::set_training_step).
  void begin_step(const RunContext& run) override;
  // Tells the model the step's loss (SegmentLM::observe_training_loss).
  nlohmann::json end_step(const RunContext& run) override;
  Validation validate(const RunContext& run) override;

 private:
  int64_t window() const override { return config_.memory.segments * config_.train.seq_len; }

  RunConfig config_;
  std::unique_ptr<memory::SegmentLM> lm_;
  bool resumed_ = false;  // load_model ran: the weights (and an explicit bank) came with them
};

}  // namespace mnemo::train
