// `mnemo bench train`: the speed of the training step, as one JSON line.
//
// Builds the config's model, then times full steps (fused loss forward, backward, global
// gradient norm, AdamW) on random token ids — the data pipeline is not part of the figure.
// The first `warmup` steps (allocator and cache warm-up) are not timed; the figure is the
// median step time over `steps` timed steps, so one preempted step on a shared machine does
// not move it. bench/peer/llama_torch.py measures the same step in eager PyTorch.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mnemo::train {

struct BenchTrainOptions {
  std::string config_file;
  std::vector<std::string> overrides;
  int64_t batch = 0;  // 0 = the config's batch_size
  int64_t seq = 0;    // 0 = the config's seq_len
  int64_t steps = 20;
  int64_t warmup = 3;
  std::string device;  // "" = the config's
};

// {"bench":"train", "tokens_per_s", "ms_per_step", "ms_per_step_mean", "batch", "seq",
//  "steps", "threads", "ranks", "device", "parameters"}; null on ranks other than 0 (under
// mpirun the ranks train data-parallel, each on batch / ranks sequences).
// A config with a memory section times the memory-augmented step instead (segment_step.h):
// batch streams of memory.segments segments of seq tokens, lm.forward_backward from the
// initial state, clipping, AdamW; one process only (under mpirun: an error). Its line adds
// "mechanism" and "segments", tokens_per_s counts batch * segments * seq tokens per step,
// and exact_grads is false (this step is timed without them; `mnemo train` uses them on the
// CPU, train/lib/segment_step.h).
nlohmann::json bench_train(const BenchTrainOptions& options);

}  // namespace mnemo::train
