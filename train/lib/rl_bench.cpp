// The RL benchmark (see rl_bench.h).
#include "train/lib/rl_bench.h"

#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "core/cpu/parallel.h"
#include "core/error.h"
#include "core/ops/random.h"
#include "core/splitmix64.h"
#include "train/io/files.h"
#include "train/lib/checkpoint.h"
#include "train/lib/rl_step.h"
#include "train/lib/run_config.h"
#include "train/lib/run_support.h"
#include "train/rl/evaluate.h"
#include "train/rl/supervised.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

json rl_bench_config(const std::string& algo) {
  MNEMO_CHECK(algo == "grpo" || algo == "ppo", "rl-bench: --algo must be grpo or ppo, got '{}'",
              algo);
  const bool ppo = algo == "ppo";
  json rl{{"algo", algo},        {"task", "arith"},    {"prompts_per_step", 32}, {"group_size", 8},
          {"max_new_tokens", 5}, {"temperature", 1.0}, {"eval_prompts", 256}};
  if (ppo) {
    rl.update({{"ppo_epochs", 2}, {"kl_coef", 0.05}, {"lam", 0.95}, {"vf_coef", 0.1}});
  } else {
    rl.update({{"beta", 0.04}, {"loss_type", "dapo"}, {"num_iterations", 1}});
  }
  return json{{"model",
               {{"vocab_size", 257},
                {"hidden_size", 128},
                {"intermediate_size", 384},
                {"num_hidden_layers", 3},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 4},
                {"max_position_embeddings", 16},
                {"tie_word_embeddings", true}}},
              {"train",
               {{"batch_size", 32},
                {"seq_len", 16},
                {"lr", 1e-4},
                {"min_lr", 1e-5},
                {"warmup_steps", 20},
                {"steps", 2000},
                // A cosine from lr to min_lr over the first 100 steps, then min_lr: at a
                // constant 1e-4 exact match peaks early and wanders (docs/rl.md).
                {"decay_steps", 100},
                {"weight_decay", 0.0},
                {"grad_clip", 1.0},
                {"eval_interval", 50},
                {"checkpoint_interval", 100},
                {"device", "cpu"}}},
              {"rl", rl}};
}

namespace {

constexpr uint64_t kProbeStream = 0x9e0beULL;  // keys the probe's samples apart from the rest

// Greedy exact match on every held-out prompt, or pass@G on the first `prompts`.
double exact_match(const nn::LlamaForCausalLM& model, const rl::Task& task, const RlSettings& r) {
  rl::EvalSettings s;
  s.prompts = task.heldout_size();
  s.max_new_tokens = r.max_new_tokens;
  s.vocab_limit = task.tokenizer().vocab_size();
  return rl::greedy_exact_match(model, task, s);
}

double pass_at_g(const nn::LlamaForCausalLM& model, const rl::Task& task, const RlSettings& r,
                 uint64_t seed) {
  rl::EvalSettings s;
  s.prompts = r.eval_prompts;
  s.max_new_tokens = r.max_new_tokens;
  s.vocab_limit = task.tokenizer().vocab_size();
  return rl::pass_at_g(model, task, s, r.group_size, r.temperature, seed);
}

// The mean of `key` over the first (or last) tenth of the step lines of a metrics.jsonl.
std::pair<double, double> first_and_last_tenth(const fs::path& metrics, const std::string& key) {
  std::vector<double> values;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.contains(key)) values.push_back(j[key].get<double>());
  }
  if (values.empty()) return {0, 0};
  const size_t n = std::max<size_t>(1, values.size() / 10);
  double first = 0, last = 0;
  for (size_t i = 0; i < n; ++i) {
    first += values[i] / double(n);
    last += values[values.size() - 1 - i] / double(n);
  }
  return {first, last};
}

}  // namespace

json run_rl_bench(const RlBenchOptions& o, std::ostream& log) {
  MNEMO_CHECK(o.task == "arith", "rl-bench: unknown task '{}' (the tasks: arith)", o.task);
  MNEMO_CHECK(o.warm_batch >= 1 && o.check_every >= 1 && o.warm_max_steps >= 1 &&
                  o.probe_prompts >= 1 && o.warm_pass > 0 && o.warm_pass <= 1,
              "rl-bench: the warm start needs a positive batch, check interval, step cap and "
              "probe, and a target pass@G in (0, 1]");
  const auto start = Clock::now();
  json config = rl_bench_config(o.algo);
  config["train"]["seed"] = o.seed;
  if (o.threads > 0) config["train"]["threads"] = o.threads;
  const fs::path out = o.out.empty()
                           ? fs::temp_directory_path() /
                                 fmt::format("mnemo-rl-bench-{}-{}-{}", o.algo, o.seed, ::getpid())
                           : fs::path(o.out);
  MNEMO_CHECK(!fs::exists(out / "rl"), "rl-bench: {} already holds a run; choose another --out",
              out.string());
  fs::create_directories(out);
  // The RL run's config (the --set assignments apply on top, here and in the run).
  const fs::path config_file = out / "rl_config.json";
  io::write_file_atomic(config_file.string(), config.dump(2) + "\n");
  const RunConfig rc = load_run_config(config_file.string(), o.overrides);
  const RlSettings& r = rc.rl;
  if (rc.train.threads > 0) set_num_threads(int(rc.train.threads));

  // 1. The warm start.
  manual_seed(o.seed);
  nn::LlamaForCausalLM model(rc.model);
  const text::ByteTokenizer tokenizer;
  const std::unique_ptr<rl::Task> task = rl::make_task(r.task, o.seed, tokenizer, r.task_options);
  rl::SupervisedOptions sft;
  sft.batch = o.warm_batch;
  sft.lr = o.warm_lr;
  sft.first_index = uint64_t(1) << 40;  // apart from RL's prompts (which start at 0)
  rl::SupervisedTrainer warm(model, *task, sft);
  // The stopping check samples G answers to each of probe_prompts training prompts of their
  // own (never trained on, never held out, the same samples' seed at every check), so that
  // the held-out figures play no part in choosing the warm start.
  rl::EvalSettings probe;
  probe.prompts = o.probe_prompts;
  probe.split = rl::Split::train;
  probe.first = uint64_t(1) << 41;
  probe.max_new_tokens = r.max_new_tokens;
  probe.vocab_limit = tokenizer.vocab_size();
  const uint64_t probe_seed = splitmix64_at(o.seed ^ kProbeStream, 0);
  int64_t warm_steps = 0, checks = 0;
  double probe_pass = 0;
  const auto warm_start = Clock::now();
  while (probe_pass < o.warm_pass) {
    MNEMO_CHECK(warm_steps < o.warm_max_steps,
                "rl-bench: the warm start reached pass@{} {:.3f} in {} steps, never {}",
                r.group_size, probe_pass, warm_steps, o.warm_pass);
    for (int64_t i = 0; i < o.check_every; ++i) warm.step();
    warm_steps += o.check_every;
    probe_pass = rl::pass_at_g(model, *task, probe, r.group_size, r.temperature, probe_seed);
    if (++checks % 5 == 0 || probe_pass >= o.warm_pass) {
      log << fmt::format("warm start: step {}, pass@{} {:.3f} on training prompts\n", warm_steps,
                         r.group_size, probe_pass);
    }
  }
  const double warm_seconds = seconds_since(warm_start);
  const double warm_pass = pass_at_g(model, *task, r, o.seed);
  const double warm_exact = exact_match(model, *task, r);
  log << fmt::format("warm start: held-out exact match {:.3f}, pass@{} {:.3f}\n", warm_exact,
                     r.group_size, warm_pass);
  const fs::path warm_dir = out / "warm";
  fs::create_directories(warm_dir);
  write_llama_files(warm_dir, model, tokenizer);

  // 2. RL from the warm start, in chunks of chunk_steps, each resuming the last, while the
  //    time budget leaves room for another chunk and for the control, up to train.steps. Each
  //    chunk stops at its end (--stop-at): all of them are the one run of train.steps, with
  //    its schedule (rl_bench.h).
  TrainOptions train;
  train.config_file = config_file.string();
  train.overrides = o.overrides;
  train.out_dir = (out / "rl").string();
  const auto rl_start = Clock::now();
  int64_t steps = 0;
  double last_chunk = 0;
  while (steps < rc.train.steps) {
    if (steps > 0 &&
        seconds_since(start) + 1.2 * last_chunk + o.reserve_seconds > o.budget_seconds) {
      break;
    }
    train.stop_at = std::min(rc.train.steps, steps + o.chunk_steps);
    train.resume = steps > 0;
    const auto chunk_start = Clock::now();
    const TrainSummary chunk = run_rl(train, steps == 0 ? warm_dir.string() : std::string(), log);
    steps = chunk.steps_done;
    last_chunk = seconds_since(chunk_start);
    if (chunk.interrupted) break;  // SIGINT/SIGTERM: report what the run reached
  }
  const double rl_seconds = seconds_since(rl_start);
  const LoadedCheckpoint trained = load_checkpoint(train.out_dir);
  const double after = exact_match(*trained.model, *task, r);
  const auto [reward_first, reward_last] =
      first_and_last_tenth(fs::path(train.out_dir) / "metrics.jsonl", "reward_mean");

  // 3. The supervised control: the warm start, trained on as many prompts as RL saw (each with
  //    its demonstration instead of G samples), or for as long as RL ran (at most
  //    control_max_seconds) if that ends first.
  const LoadedCheckpoint control = load_checkpoint(warm_dir.string());
  sft.first_index += uint64_t(warm_steps * o.warm_batch);
  rl::SupervisedTrainer more(*control.model, *task, sft);
  const int64_t examples = steps * r.prompts_per_step;
  const double control_budget = std::min(rl_seconds, o.control_max_seconds);
  const auto control_start = Clock::now();
  while (more.examples_seen() < examples && seconds_since(control_start) < control_budget) {
    more.step();
  }
  const double control_seconds = seconds_since(control_start);
  const double sft_control = exact_match(*control.model, *task, r);

  json result{{"task", o.task},
              {"algo", o.algo},
              {"before", warm_exact},
              {"after", after},
              {"sft_control", sft_control},
              {"pass_at_g", warm_pass},
              {"steps", steps},
              {"seconds", seconds_since(start)},
              {"seed", o.seed},
              {"heldout", task->heldout_size()},
              {"warm_start_steps", warm_steps},
              {"warm_start_seconds", warm_seconds},
              {"warm_start_probe_pass", probe_pass},
              {"rl_seconds", rl_seconds},
              {"control_examples", more.examples_seen()},
              {"control_seconds", control_seconds},
              {"reward_first", reward_first},
              {"reward_last", reward_last},
              {"out", out.string()}};
  return result;
}

}  // namespace mnemo::train
