// TextStep: the data side that `mnemo train`'s two steps share — a tokenized corpus in
// RUN/data, random windows of it for training, the held-out ids for evaluation.
//
//   prepare_data  the corpus (data.path, or the fortunes) read, the tokenizer trained or
//                 loaded, train.bin / val.bin / tokenizer.json / info.json written
//                 (train/lib/run_support.h: prepare_data)
//   open_data     the tokenizer, a text::WindowSampler over train.bin drawing windows of
//                 window() + 1 ids, seeded by train.seed, and val.bin's ids
//   draw_rows     the next micro-batch: batch_size / grad_accum windows, the same on every
//                 rank (so the data of a step does not depend on the number of ranks), of
//                 which this rank keeps its rows [rank * share, (rank + 1) * share)
//   data state    the sampler's position ("sampler_position" in trainer_state.json): a draw
//                 depends only on (seed, position), so it is the whole data state of a run
//
// A subclass (lm_step.h, segment_step.h) supplies the model, window() and what a
// micro-batch computes on its rows.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "train/lib/trainer.h"
#include "train/text/loader.h"
#include "train/text/shard.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

// This rank's rows of a micro-batch: windows of `length` inputs and their targets.
struct TextRows {
  std::vector<int64_t> inputs, targets;  // (rows, length) row-major
  int64_t rows = 0, length = 0;
  // The factor of trainer.h's accumulation convention: 1 / (targets scored in the whole
  // micro-batch, all ranks, x grad_accum). Every rank holds the whole micro-batch's
  // targets, so the global count needs no message.
  double loss_scale = 0;
  int64_t scored = 0;  // targets this rank scores (not -100)
};

// val_loss (nats per token) and val_bpb (bits per byte) of a scored text; val_loss is plotted.
Validation text_validation(const EvalResult& scored);

class TextStep : public TrainStep {
 public:
  void prepare_data(const RunContext& run, std::ostream& log) override;
  void open_data(const RunContext& run) override;
  void save_data_state(nlohmann::json& trainer_state) const override;
  void load_data_state(const nlohmann::json& trainer_state) override;
  int64_t tokens_per_step() const override { return batch_size_ * window(); }

 protected:
  explicit TextStep(const RunConfig& config) : batch_size_(config.train.batch_size) {}
  // Input tokens per row of a micro-batch (targets are the same ids shifted by one).
  virtual int64_t window() const = 0;
  TextRows draw_rows(const RunContext& run);

  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::vector<int64_t> token_bytes_;  // byte length of each id (evaluate.h)
  std::vector<int32_t> val_ids_;      // the whole val shard

 private:
  int64_t batch_size_;
  std::unique_ptr<text::TokenShard> train_shard_;
  std::unique_ptr<text::WindowSampler> sampler_;
};

}  // namespace mnemo::train
