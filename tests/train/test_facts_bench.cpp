// `mnemo memory-bench facts` (train/lib/facts_bench.h) on a tiny setting (8 syllables: 64
// subjects, a few steps): the JSON keys it promises for an ExplicitLM and for the other
// mechanisms, figures that are fractions of the questions asked, the same report from the
// same seed, and bad input as errors naming it before any training.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "train/lib/facts_bench.h"

using namespace mnemo;
using nlohmann::json;

namespace {

train::MemoryBenchOptions tiny_facts(const std::string& mechanism) {
  train::MemoryBenchOptions o;
  o.task = "facts";
  o.mechanism = mechanism;
  o.steps = 3;
  o.batch = 2;
  o.layers = 1;
  o.hidden = 16;
  o.heads = 2;
  // 64 subjects: 4 reserved, 16 held out, 44 trained; rows of 3 questions.
  o.task_options = {{"syllables", "8"}, {"segment-length", "16"}};
  if (mechanism == "explicit") o.memory_overrides = {"key_dim=8"};
  return o;
}

// A figure that counts `total` questions: a number in [0, 1], a whole number of them.
void check_fraction(const json& value, int64_t total) {
  REQUIRE(value.is_number());
  const double count = value.get<double>() * double(total);
  CHECK(count >= 0);
  CHECK(count <= double(total));
  CHECK(count == doctest::Approx(std::round(count)));
}

}  // namespace

TEST_CASE("memory-bench facts: an ExplicitLM's report holds every figure") {
  std::ostringstream log;
  const json r = train::run_facts_bench(tiny_facts("explicit"), log);
  for (const char* key : {"task", "mechanism", "metric", "memory", "baseline", "steps", "seconds",
                          "seed", "details", "task_config", "final_loss", "parameters"}) {
    CHECK_MESSAGE(r.contains(key), key);
  }
  CHECK(r["task"] == "facts");
  CHECK(r["mechanism"] == "explicit");
  CHECK(r["metric"] == "exact_match");
  CHECK(r["steps"] == 3);
  CHECK(r["task_config"]["facts"]["held_out"] == 16);
  CHECK(r["task_config"]["bank_entries"] == 64);
  CHECK(r["chance"] == doctest::Approx(1.0 / 64));
  const json& m = r["details"]["memory"];
  const json& b = r["details"]["baseline"];
  CHECK(r["memory"] == m["held_out"]);
  CHECK(r["baseline"] == b["held_out"]);
  check_fraction(m["held_out"], 16);
  check_fraction(m["trained"], 44);
  check_fraction(m["hit_rate"], 16 + 44);
  check_fraction(m["edit_success"], 15);  // a quarter of the 60 facts in the bank
  check_fraction(m["inserted"], 4);
  check_fraction(m["inserted_hit_rate"], 4);
  // Kept: of the untouched facts answered right before the edits (possibly none this early).
  CHECK(m.contains("edit_kept"));
  CHECK((m["edit_kept"].is_null() || m["edit_kept"].is_number()));
  check_fraction(b["held_out"], 16);
  check_fraction(b["trained"], 44);
  CHECK_FALSE(b.contains("hit_rate"));
  CHECK(r["parameters"]["memory"] != r["parameters"]["baseline"]);
  CHECK(std::isfinite(r["final_loss"]["memory"].get<double>()));
  CHECK(log.str().find("explicit step 3/3") != std::string::npos);
  CHECK(log.str().find("none step 3/3") != std::string::npos);
}

TEST_CASE("memory-bench facts: the same seed gives the same figures") {
  std::ostringstream log;
  auto o = tiny_facts("explicit");
  o.task_options["layout"] = "shuffled";
  json a = train::run_facts_bench(o, log), b = train::run_facts_bench(o, log);
  a.erase("seconds");
  b.erase("seconds");
  CHECK(a == b);
  CHECK(a["task_config"]["layout"] == "shuffled");
}

TEST_CASE("memory-bench facts: other mechanisms report held_out and trained") {
  std::ostringstream log;
  json r = train::run_facts_bench(tiny_facts("none"), log);
  CHECK(r["memory"] == r["baseline"]);  // none: the baseline, trained once
  CHECK(r["details"]["memory"] == r["details"]["baseline"]);
  r = train::run_facts_bench(tiny_facts("memorizing"), log);
  check_fraction(r["memory"], 16);
  check_fraction(r["details"]["memory"]["trained"], 44);
  CHECK_FALSE(r["details"]["memory"].contains("edit_success"));
  // The dispatch: run_memory_bench hands the facts task to run_facts_bench.
  r = train::run_memory_bench(tiny_facts("none"), log);
  CHECK(r["task"] == "facts");
}

TEST_CASE("memory-bench facts: bad input is an error naming it, before any training") {
  std::ostringstream log;
  auto o = tiny_facts("explicit");
  o.task_options["layout"] = "spiral";
  CHECK_THROWS_WITH_AS(train::run_facts_bench(o, log), doctest::Contains("--layout"), Error);
  o = tiny_facts("explicit");
  o.task_options["gap"] = "2";
  CHECK_THROWS_WITH_AS(train::run_facts_bench(o, log), doctest::Contains("--gap"), Error);
  o = tiny_facts("telepathy");
  CHECK_THROWS_WITH_AS(train::run_facts_bench(o, log), doctest::Contains("'telepathy'"), Error);
  o = tiny_facts("none");
  o.memory_overrides = {"keys=content"};
  CHECK_THROWS_WITH_AS(train::run_facts_bench(o, log), doctest::Contains("--memory"), Error);
  o = tiny_facts("explicit");
  o.memory_overrides.push_back("candidates=0");
  CHECK_THROWS_WITH_AS(train::run_facts_bench(o, log), doctest::Contains("candidates"), Error);
  CHECK(log.str().empty());
}
