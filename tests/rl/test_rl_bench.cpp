// `mnemo rl-bench`'s RL run config is the one configs/ gives users (configs/arith-grpo.json,
// configs/arith-ppo.json), and it passes the run config's checks.
#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include "core/error.h"
#include "train/io/config.h"
#include "train/lib/rl_bench.h"
#include "train/lib/run_config.h"

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
