// The training run: one skeleton that every kind of training in mnemo plugs a step into.
//
// `mnemo train` trains a Llama-style LM on text (train/lib/lm_step.h) or, when the config has
// a "memory" section, a memory-augmented SegmentLM on streams of segments
// (train/lib/segment_step.h). Both are a TrainStep: the model, its data and what one
// micro-batch computes. Everything else is the skeleton's (trainer.cpp), written once:
//
//   set-up       the run config (--config and --set, or the checkpoint's on --resume), the
//                device, the communicator (MPI or NCCL under mpirun), the optimizer (AdamW,
//                or ZeroAdamW with --zero 1: train/lib/zero_adamw.h), the schedule
//   data         rank 0 prepares RUN/data on a new run; every rank then opens it
//   resume       weights, optimizer moments, step count, data position and RNG state from
//                RUN/latest, so the losses continue bit for bit on the CPU
//   the loop     per step: begin_step (the step's: e.g. RL's rollouts), then
//                updates_per_step() optimizer updates, each of grad_accum micro-batches (the
//                step's), the gradient reduced across ranks, its global norm, clipping, the
//                learning rate of the schedule; end_step's figures join the step's line of
//                metrics.jsonl; the progress line, evaluation and loss.svg every
//                eval_interval steps, a checkpoint every checkpoint_interval
//   signals      SIGINT/SIGTERM finish the step, write a checkpoint and stop (every rank at
//                the same step)
//   data parallel  rank 0's weights broadcast at the start; gradients summed in buckets
//                from autograd hooks while backward runs (train/lib/grad_sync.h) or
//                reduce-scattered by ZeroAdamW; rank 0 alone logs, evaluates and writes
//
// One run lives in one directory (--out):
//   data/           tokenizer.json, train.bin, val.bin (token shards), info.json
//   run_config.json the merged config of a new run
//   metrics.jsonl   one line per step {"step","loss","lr","grad_norm","tokens_per_s",
//                   "rss_bytes" (the process's resident memory), "tensor_bytes" (in tensors
//                   of the run device's caching allocator)} and one per evaluation
//                   {"step","val_loss","val_bpb"}
//   loss.svg        train and validation curves, rewritten at each evaluation and at the end
//   step-XXXXXXXX/  checkpoints (train/io/checkpoint_dir.h); latest -> the newest complete one:
//                   the step's model files (config.json, model.safetensors, tokenizer.json),
//                   optimizer.safetensors, trainer_state.json (step, optimizer_steps, the data
//                   position, the RNG, tokens_seen, the full run config)
//
// The accumulation convention, the same for every step: micro-batch m of a step leaves in
// .grad the gradient of
//     (sum of the loss over the tokens this rank scores) / (tokens scored by all ranks in
//     micro-batch m) / grad_accum
// so after the step's micro-batches, summed over ranks, .grad holds the gradient of the mean
// over micro-batches of each micro-batch's mean loss: with one micro-batch and one rank,
// exactly the gradient of the batch's mean loss. The scale is the same on every rank, so the
// gradient all_reduce *sums* (no division that depends on the number of ranks), and the norm,
// clipping and update see that gradient unchanged. Each micro-batch returns its share of the
// step's mean loss in the same way; their sum over micro-batches and ranks is the step's loss.
//
// Determinism: every random choice comes from seeded counter-based generators whose positions
// are saved in the checkpoint, and every CPU kernel gives the same bits on any thread count;
// with train.exact_grads (on for the CPU) N ranks also train bit for bit like one process
// (autograd/exact_grad.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "nn/module.h"
#include "optim/optimizer.h"
#include "train/distributed/communicator.h"
#include "train/lib/evaluate.h"
#include "train/lib/run_config.h"

namespace mnemo::train {

// With `resume`, a run directory holding a checkpoint continues from OUT/latest with the
// config saved in it (--set and --steps still apply; --config is then not read); a run
// directory without one (killed before its first checkpoint) starts over from --config.
struct TrainOptions {
  std::string config_file;  // may be empty with resume (the checkpoint has it)
  std::string out_dir;
  std::vector<std::string> overrides;  // --set key=value
  int64_t steps = 0;                   // > 0 overrides train.steps
  // > 0: stop after this step (a checkpoint, no final evaluation), as if interrupted; the run
  // is still the run of train.steps (its schedule, its plot) and --resume continues it, so
  // a run made in such pieces is bit for bit the run made at once on the CPU.
  int64_t stop_at = 0;
  bool resume = false;
  std::string device;  // "" = the config's train.device
  int zero = 0;        // 1: shard the AdamW state across data-parallel ranks (ZeRO stage 1)
};

struct TrainSummary {
  int64_t steps_done = 0;  // the step count reached
  double last_loss = 0;
  double val_loss = 0;
  double val_bpb = 0;
  bool interrupted = false;  // by a signal
  bool stopped = false;      // at TrainOptions::stop_at, before train.steps
  std::string checkpoint;    // the last checkpoint written
};

// What a step's validation gives: figures for metrics.jsonl (beside "step"; e.g. val_loss and
// val_bpb) and the point it puts on the plot's validation curve.
struct Validation {
  nlohmann::json metrics = nlohmann::json::object();
  double curve = 0;
};

// What the skeleton hands a step: the run as it is set up.
struct RunContext {
  const RunConfig& config;
  Device device;                   // where the model lives and the step computes
  dist::Communicator& comm;        // rank() of world_size(); world size 1 without mpirun
  bool exact_grads = false;        // split-invariant gradient sums are on (autograd/exact_grad.h)
  std::filesystem::path data_dir;  // RUN/data
  int64_t step = 0;                // steps taken before this one (the run's, across resumes)
  // end_step only: the step's loss (the mean over its updates that were not skipped, the same
  // on every rank); NaN before the step's updates and when every one of them was skipped.
  double loss = std::numeric_limits<double>::quiet_NaN();
};

// One kind of training: a model, its data and one micro-batch's forward and backward.
// Built (with its model, on the CPU) before the run is set up, so that a bad model config
// fails before any data is prepared; the skeleton then moves the model to the run's device.
class TrainStep {
 public:
  virtual ~TrainStep() = default;

  // ---- the model ----
  virtual nn::Module& model() = 0;
  // The optimizer's parameter groups (decay / no decay, ...).
  virtual std::vector<optim::ParamGroup> param_groups() const = 0;
  // What is trained, for the log ("model: ...") and the plot's title.
  virtual std::string describe() const = 0;
  virtual std::string title() const = 0;
  // Writes the model's files of a checkpoint into `dir` (config.json, model.safetensors,
  // tokenizer.json); load_model reads back what it wrote. Errors name the file.
  virtual void write_model(const std::filesystem::path& dir) const = 0;
  virtual void load_model(const std::string& checkpoint_dir) = 0;

  // ---- data ----
  // Writes RUN/data for a new run (rank 0 only; the other ranks wait).
  virtual void prepare_data(const RunContext& run, std::ostream& log) = 0;
  // Opens RUN/data (every rank).
  virtual void open_data(const RunContext& run) = 0;
  // The position in the data, saved into trainer_state.json and restored after open_data.
  virtual void save_data_state(nlohmann::json& trainer_state) const = 0;
  virtual void load_data_state(const nlohmann::json& trainer_state) = 0;
  virtual int64_t tokens_per_step() const = 0;  // all ranks together

  // ---- the step ----
  // Called on every rank before a step's updates: work that a whole step shares (RL's
  // rollouts and advantages). Default: nothing.
  virtual void begin_step(const RunContext& /*run*/) {}
  // Optimizer updates per step (RL: minibatches x epochs of one rollout batch). Default 1.
  virtual int64_t updates_per_step() const { return 1; }
  // Forward and backward of the next micro-batch on this rank's share of it, by the
  // accumulation convention above; returns this rank's share of the update's mean loss.
  virtual double micro_batch(const RunContext& run) = 0;
  // Called on every rank after a step's updates, with the step's loss in run.loss (the
  // segment step hands it to the model: memory/segment_lm.h); the figures it returns (the
  // same on every rank: reduce them across ranks if they differ) join the step's line of
  // metrics.jsonl beside step, loss, lr, grad_norm and tokens_per_s. Default: none.
  virtual nlohmann::json end_step(const RunContext& /*run*/) { return nlohmann::json::object(); }
  // True when micro_batch runs backward once: the skeleton then starts each bucket's
  // all_reduce from the autograd hooks while backward is still running. A step that runs
  // several backward passes per micro-batch (a memory mechanism back-propagating segment by
  // segment) returns false: a parameter's gradient is complete only after the last one, so
  // its gradients are summed across ranks after the micro-batches, all at once.
  virtual bool single_backward() const { return true; }
  // Scores the held-out data (rank 0 only), without gradients.
  virtual Validation validate(const RunContext& run) = 0;
  // The keys of metrics.jsonl that loss.svg plots: a step line's and a validation line's.
  virtual std::pair<std::string, std::string> curve_keys() const { return {"loss", "val_loss"}; }
};

// Makes the step of a run config (and, with it, the model, seeded by train.seed).
using StepFactory = std::function<std::unique_ptr<TrainStep>(const RunConfig&)>;

// Runs (or resumes) a training run; progress goes to `log` (stderr in the CLI). In a job of
// several ranks an error on any rank ends the whole job (dist::abort_job).
TrainSummary run_training(const TrainOptions& options, const StepFactory& make_step,
                          std::ostream& log);

}  // namespace mnemo::train
