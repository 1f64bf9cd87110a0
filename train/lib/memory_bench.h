// `mnemo memory-bench TASK --mechanism NAME|none`: a memory mechanism against the no-memory
// baseline on one task (memory/tasks.h), as one JSON line.
//
//   1. the task generates training streams (S segments of B streams, T tokens each) and
//      held-out eval streams from the same generator (Split::eval);
//   2. the mechanism's model (memory/factory.h) and BaselineLM of the same size (layers,
//      width, heads, window = T, vocabulary) are each trained for `steps` AdamW steps on the
//      same batches, through SegmentLM::forward_backward (the mechanism's own training:
//      back-propagation through time, memory replay, ...), gradients clipped to norm 1;
//   3. both are evaluated on the same eval streams under no_grad, segment by segment with the
//      state carried, and the task's metric is computed from their argmax predictions and
//      log-likelihoods.
//
// Output: {"task", "mechanism", "metric", "memory", "baseline", "steps", "seconds", ...}
// with "memory" and "baseline" the metric of each model, "seconds" the wall time of the
// whole run, and extra keys: "higher_is_better", "seed", "batch", "eval_streams", "device",
// "model" (the shared size), "parameters" {memory, baseline}, "task_config",
// "details" {memory, baseline} (the task's secondary figures: local accuracy, chance,
// far bits per byte, ...), "final_loss" {memory, baseline} and, for memorizing,
// "diagnostics" (memory/memorizing_diagnostics.h: gate, retrieval hit rate on far probes,
// q/k gradient norms). With --mechanism none the baseline is trained once and reported in
// both places.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memory/segment_lm.h"
#include "memory/tasks.h"
#include "nn/llama.h"

namespace mnemo::train {

struct MemoryBenchOptions {
  std::string task;            // recall, copy-far, longdoc, facts
  std::string mechanism;       // memory::mechanism_names()
  uint64_t seed = 0;           // task streams and initial weights
  int64_t steps = 0;           // 0 = the default (memory_bench_default_steps)
  int64_t batch = 16;          // streams per step
  int64_t eval_streams = 256;  // held-out streams scored
  double lr = 0;               // AdamW's peak rate (memory_bench_lr); 0 = the
                               // task's default (memory_bench_default_lr)
  double lr_decay = -1;        // the last fraction of the steps over which the rate falls
                               // linearly to 0 (0 = none: constant to the end); < 0 = the
                               // mechanism's default (memory_bench_default_lr_decay)
  double scalar_lr_scale = 0;  // learning-rate factor of small 0-/1-D non-norm parameters;
                               // 0 = the mechanism's default (memory_bench_default_scalar_lr_scale)
  int64_t layers = 2, hidden = 128, heads = 4;  // the shared model size
  double init_std = 0;               // both models' weight init std; 0 = the task's default
                                     // (memory_bench_default_init_std)
  memory::TaskOptions task_options;  // task options ("gap" -> "2")
  std::vector<std::string> memory_overrides;  // "key=value" into the memory section
  std::string device = "cpu";                 // cpu, cuda, cuda:N, auto
};

// The default number of training steps of a task for a mechanism (chosen so that a run of
// the mechanism and its baseline with the defaults ends within 10 minutes on a 2-core CPU).
// recall: 2500, since the step at which the in-window lookup, and then the far recall, forms
// varies with the seed from about 800 to over 2000 (docs/memory-results.md); 2500 steps of
// both models take about 7 minutes on an idle 2-core machine. Memformer's step on recall
// costs ~1.9x the baseline's (memory replay runs each segment's forward twice), so it gets
// 1500 there. facts: 1500 (16 rows of 8 questions a step; seed 0, one thread beside other
// jobs: ExplicitLM with learned keys at held-out 1.0 in 61 s, the baseline's 1500 steps 40 s).
int64_t memory_bench_default_steps(const std::string& task, const std::string& mechanism);
// The default learning rate of a task for a mechanism: 3e-3, but 1e-3 for copy-far and for
// Memformer (measured, seed 0: copy-far gap 2, Memformer 0.977 at 1e-3 against 0.144 at 3e-3
// in 400 steps; recall, Memformer 0.346 at 1e-3 against 0.061 at 3e-3 in 1500 steps;
// docs/memory-results.md).
double memory_bench_default_lr(const std::string& task, const std::string& mechanism);

// The default learning-rate factor of a mechanism's scalar controls (optim/param_groups.h):
// 10, so that the gates of the Memorizing Transformer and Memformer open within a run; 1 for
// Titans, whose gate biases (step size, momentum, forgetting) trained at 10x forgot too fast
// (recall 0.528 at 10x against 0.842 at 1x, seed 1; docs/memory-results.md).
double memory_bench_default_scalar_lr_scale(const std::string& mechanism);
// The default --lr-decay of a mechanism: 0.2 for titans (far recall 0.842 -> 0.882 and
// 0.874 -> 0.936 on seeds 1 and 2 against a constant rate to the end; docs/memory-results.md),
// 0 for the others, whose results were measured with a constant rate.
double memory_bench_default_lr_decay(const std::string& mechanism);

// Both models' default weight init std on a task: 1/sqrt(hidden) for recall (the recipe
// measured to reach far recall 0.974, where at the decoder's 0.02 the in-window lookup was
// still partial after 1500 steps; docs/memory-results.md), 0 (the decoder's 0.02) elsewhere.
double memory_bench_default_init_std(const std::string& task, int64_t hidden);

// ---- pieces shared by the stream tasks and the facts task (train/lib/facts_bench.h)

// `o` checked (mechanism, batch, learning rates, init std), with the task's defaults of
// steps, lr and init_std filled in. Throws mnemo::Error naming a bad option.
MemoryBenchOptions memory_bench_resolved(const MemoryBenchOptions& o);
// Both models' decoder: o's size, `vocab` tokens, room for two windows of T positions.
nn::LlamaConfig memory_bench_model(const MemoryBenchOptions& o, int64_t vocab, int64_t window);
// o's model as reported in the JSON line ("model").
nlohmann::json memory_bench_model_json(const MemoryBenchOptions& o, const nn::LlamaConfig& model,
                                       int64_t window);
// The mechanism's memory section on a task of `segments` segments of `window` tokens trained
// for `steps` steps, then each "key=value" of `overrides` (the value parsed as JSON, else kept
// as text). For Titans MAG, unless an override sets gate_hold_steps, the gate hold: 8% of the
// steps, or, with a gate_open_loss override > 0 (the loss rule, memory/titans.h), until the
// training loss's moving average falls to it and for 40% of the steps at most.
// The JSON line reports the section as "memory_config".
nlohmann::json memory_bench_section(const std::string& mechanism, int64_t window, int64_t segments,
                                    int64_t steps, const std::vector<std::string>& overrides);
// The two models of a run: the mechanism's (null for "none") from `section`, and BaselineLM of
// the same size; both from the seed, both checked to take segments of `window` tokens.
struct MemoryBenchModels {
  std::unique_ptr<memory::SegmentLM> memory, baseline;
};
MemoryBenchModels make_memory_bench_models(const MemoryBenchOptions& o,
                                           const nn::LlamaConfig& model,
                                           const nlohmann::json& section, int64_t window);
// The learning rate of step `step` (0-based) of `steps`: linear warmup over the first 5% to
// o.lr, constant, and over the last o.lr_decay of the steps a linear fall towards 0 (the
// warmup-stable-decay shape: the rate stays high while the plateau of a task can still break,
// and the decay then settles the weights). `o` resolved (memory_bench_resolved).
double memory_bench_lr(const MemoryBenchOptions& o, int64_t steps, int64_t step);
// Trains `lm` on `device` for `steps` AdamW steps (memory_bench_lr; gradients clipped to
// norm 1). `step_loss(step)` runs that step's forward_backward and returns its
// loss. Returns the mean loss over the last 10% of steps.
double train_memory_bench_model(memory::SegmentLM& lm, const MemoryBenchOptions& o, int64_t steps,
                                Device device, const std::function<double(int64_t step)>& step_loss,
                                std::ostream& log);

// Scores `lm` on eval streams [0, streams) of `task`, `batch` streams at a time.
memory::Tally evaluate_segment_lm(memory::SegmentLM& lm, const memory::MemoryTask& task,
                                  int64_t streams, int64_t batch, Device device);

// Runs the benchmark; progress lines go to `log`. Throws mnemo::Error naming a bad option,
// task, mechanism or memory key before any training starts.
nlohmann::json run_memory_bench(const MemoryBenchOptions& options, std::ostream& log);

}  // namespace mnemo::train
