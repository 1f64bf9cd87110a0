// `mnemo rl-bench`'s RL run config is the one configs/ gives users (configs/arith-grpo.json,
// configs/arith-ppo.json), and it passes the run config's checks; a tiny benchmark runs end
// to end, its RL run in two chunks (the second resuming the first).
#include <doctest/doctest.h>

#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "optim/schedule.h"
#include "train/io/config.h"
#include "train/lib/rl_bench.h"
#include "train/lib/run_config.h"
#include "train/lib/run_support.h"

using namespace mnemo;

TEST_CASE("rl-bench: its configs are configs/arith-grpo.json and configs/arith-ppo.json") {
  for (const std::string algo : {"grpo", "ppo"}) {
    const std::string file = std::string(MNEMO_SOURCE_DIR) + "/configs/arith-" + algo + ".json";
    CHECK_MESSAGE(io::load_json_file(file) == train::rl_bench_config(algo), file);
    const train::RunConfig rc = train::load_run_config(file, {});
    CHECK(rc.rl.enabled);
    CHECK(rc.rl.algo == algo);
    CHECK(rc.rl.is_ppo() == (algo == "ppo"));
  }
  CHECK_THROWS_AS(train::rl_bench_config("dqn"), Error);
}

TEST_CASE("rl-bench: bad warm-start options are errors before any work") {
  std::ostringstream log;
  for (const double pass : {0.0, -0.5, 1.5}) {
    train::RlBenchOptions o;
    o.warm_pass = pass;
    CHECK_THROWS_AS(train::run_rl_bench(o, log), Error);
  }
  train::RlBenchOptions o;
  o.probe_prompts = 0;
  CHECK_THROWS_AS(train::run_rl_bench(o, log), Error);
  CHECK(log.str().empty());
}

TEST_CASE("rl-bench: a tiny run goes end to end, its RL in chunks that resume each other") {
  namespace fs = std::filesystem;
  const fs::path out =
      fs::temp_directory_path() / ("mnemo_test_rl_bench_" + std::to_string(::getpid()));
  fs::remove_all(out);
  for (const std::string algo : {"grpo", "ppo"}) {
    train::RlBenchOptions o;
    o.algo = algo;
    o.out = (out / algo).string();
    o.warm_batch = 64;
    o.warm_pass = 0.05;
    o.probe_prompts = 32;
    o.warm_max_steps = 1000;
    o.control_max_seconds = 1;
    o.chunk_steps = 2;  // 4 steps: a first chunk started from the warm start, one resuming it
    o.threads = 1;
    // A model of one small layer (the warm start and the held-out evaluations are most of the
    // time, ~20x more under the sanitizers with the benchmark's model).
    o.overrides = {"train.steps=4",
                   "rl.prompts_per_step=4",
                   "rl.group_size=4",
                   "rl.eval_prompts=8",
                   "train.eval_interval=2",
                   "train.warmup_steps=0",
                   "model.num_hidden_layers=1",
                   "model.hidden_size=32",
                   "model.intermediate_size=64",
                   "model.num_attention_heads=2",
                   "model.num_key_value_heads=2",
                   "train.decay_steps=0"};  // the cosine spans train.steps: the chunks' 4
    std::ostringstream log;
    const nlohmann::json r = train::run_rl_bench(o, log);
    CHECK_MESSAGE(r["steps"] == 4, log.str());
    CHECK(r["warm_start_probe_pass"].get<double>() >= 0.05);
    for (const char* key : {"before", "after", "sft_control", "pass_at_g"}) {
      CHECK(r[key].get<double>() >= 0.0);
      CHECK(r[key].get<double>() <= 1.0);
    }
    // One metrics line per step, the resumed chunk's included, each at the rate of the one
    // schedule of train.steps (not of the chunk it ran in).
    const optim::LrSchedule schedule = train::make_schedule(
        train::load_run_config((out / algo / "rl_config.json").string(), o.overrides).train);
    std::ifstream metrics(out / algo / "rl" / "metrics.jsonl");
    int steps_logged = 0;
    for (std::string line; std::getline(metrics, line);) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (!j.contains("reward_mean")) continue;
      ++steps_logged;
      CAPTURE(j.dump());
      CHECK(j["lr"].get<double>() == schedule.at(j["step"].get<int64_t>() - 1));
    }
    CHECK(steps_logged == 4);
  }
  fs::remove_all(out);
}
