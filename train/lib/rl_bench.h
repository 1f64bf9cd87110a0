// `mnemo rl-bench arith --algo grpo|ppo [--seed S]`: does RL make a small model better at a
// verifiable task, and by how much, on this machine, as one JSON line.
//
//   1. warm start  a small Llama (rl_bench_config: 3 layers, hidden 128) is trained with
//                  supervised steps on the task's demonstrations (train/rl/supervised.h) until
//                  its sampled answers are often enough right for RL to learn from: every
//                  `check_every` steps it samples G answers to each of `probe_prompts` training
//                  prompts of their own, and it stops once the share of those prompts with a
//                  right answer (pass@G) reaches warm_pass. RL needs pass@G clearly above zero
//                  (no right answer in a group: no signal), and a warm start that is already
//                  good would leave it little; at pass@8 0.55 greedy exact match is still about
//                  0.15 (docs/rl.md). pass@G is the steadier stopping signal: greedy exact match
//                  at that stage jumps between checks, and stopping when it first crosses a
//                  threshold picks a lucky check rather than a model that good.
//   2. RL          `mnemo rl` (train/lib/rl_step.h) from that checkpoint, on the skeleton, into
//                  OUT/rl (metrics.jsonl: the reward curve), in chunks of chunk_steps that each
//                  resume the last (each chunk stops at its end with --stop-at, so the chunks
//                  are bit for bit the one run of train.steps, its learning-rate schedule
//                  included), for as long as budget_seconds for the whole command allows (keeping
//                  reserve_seconds for the control and the evaluations), up to train.steps.
//                  The steps reached depend on the machine's speed; the result of a given
//                  number does not.
//   3. control     the same warm start trained with supervised steps on as many prompts as
//                  RL saw (each with its demonstration instead of G sampled answers), or for
//                  as long as RL ran if that comes first: on this task demonstrations are
//                  free, and supervised learning wins (docs/rl.md).
//
// Output: {"task", "algo", "before", "after", "sft_control", "pass_at_g", "steps", "seconds",
// ...}: greedy exact match on every held-out prompt before RL, after it and after the control;
// pass@G of the warm start; RL's steps; the whole command's wall time. Extra keys: seed,
// heldout (prompts scored), warm_start_steps, warm_start_seconds, warm_start_probe_pass (the
// pass@G that ended it), rl_seconds, control_examples, control_seconds, reward_first and
// reward_last (the mean reward of RL's first and last tenth of steps), out (the directory).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mnemo::train {

struct RlBenchOptions {
  std::string task = "arith";
  std::string algo = "grpo";           // grpo | ppo
  uint64_t seed = 0;                   // the task's prompts, the weights, the rollouts
  std::string out;                     // "" = a fresh directory under the system's temp dir
  std::vector<std::string> overrides;  // key=value into the RL run's config (rl.*, train.*)
  // The warm start.
  int64_t warm_batch = 128;
  double warm_lr = 1e-3;
  int64_t check_every = 20;
  int64_t probe_prompts = 256;
  int64_t warm_max_steps = 4000;
  double warm_pass = 0.55;  // pass@G on the probe prompts that ends it
  // RL's time.
  double budget_seconds = 540;  // the whole command's
  double reserve_seconds = 70;  // kept for the control (at most a minute) and the evaluations
  double control_max_seconds = 60;
  int64_t chunk_steps = 25;
  int threads = 0;  // 0 = the process's
};

// The RL run's config of the benchmark for an algorithm: the model, the optimizer and the rl
// section (configs/arith-grpo.json and configs/arith-ppo.json hold the same).
nlohmann::json rl_bench_config(const std::string& algo);

// Runs the benchmark; progress goes to `log`. Bad options are mnemo::Error before any work.
nlohmann::json run_rl_bench(const RlBenchOptions& options, std::ostream& log);

}  // namespace mnemo::train
