// `mnemo train`: trains a Llama-style LM on a text corpus, end to end.
//
// One run lives in one directory (--out):
//   data/           tokenizer.json, train.bin, val.bin (token shards), info.json
//   metrics.jsonl   one line per step {"step","loss","lr","grad_norm","tokens_per_s"} and one
//                   per evaluation {"step","val_loss","val_bpb"}
//   loss.svg        train and validation curves, rewritten at each evaluation and at the end
//   step-XXXXXXXX/  checkpoints (train/lib/checkpoint.h); latest -> the newest complete one
//
// A step: for each of grad_accum micro-batches, draw batch_size / grad_accum random windows
// of seq_len + 1 tokens from the train shard, run the fused loss and backward (the loss of a
// micro-batch is divided by grad_accum, so gradients add up to the mean); then the global
// gradient norm, clipping folded into AdamW as a gradient scale, the learning rate from the
// warmup + decay schedule, and one fused AdamW update per parameter tensor.
//
// Determinism: every random choice comes from seeded counter-based generators whose positions
// are saved in the checkpoint, and every CPU kernel gives the same bits on any thread count,
// so `--resume` after a crash reproduces the uninterrupted run's losses bit for bit.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace mnemo::train {

// With `resume`, a run directory holding a checkpoint continues from OUT/latest with the
// config saved in it (--set and --steps still apply; --config is then not read); a run
// directory without one (killed before its first checkpoint) starts over from --config.
struct TrainOptions {
  std::string config_file;  // may be empty with resume (the checkpoint has it)
  std::string out_dir;
  std::vector<std::string> overrides;  // --set key=value
  int64_t steps = 0;                   // > 0 overrides train.steps
  bool resume = false;
  std::string device;  // "" = the config's train.device
  int zero = 0;        // 1: shard the AdamW state across data-parallel ranks (ZeRO stage 1)
};

struct TrainSummary {
  int64_t steps_done = 0;  // the step count reached
  double last_loss = 0;
  double val_loss = 0;
  double val_bpb = 0;
  bool interrupted = false;
  std::string checkpoint;  // the last checkpoint written
};

// Runs (or resumes) a training run; progress goes to `log` (stderr in the CLI).
TrainSummary run_training(const TrainOptions& options, std::ostream& log);

}  // namespace mnemo::train
