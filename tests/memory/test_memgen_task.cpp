// The shifted-rule chained arithmetic of `mnemo memory-bench memgen` (memory/memgen_task.h):
// the chains by hand under both rules, determinism, disjoint splits, bad options.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "core/error.h"
#include "memory/memgen_task.h"

namespace mnemo::memory {
namespace {

TEST_CASE("memgen task: a chain computed by hand under rules A and B") {
  const ChainTask task(3, {});
  for (uint64_t i = 0; i < 50; ++i) {
    const Chain a = task.chain(ChainRule::a, ChainSplit::train, i);
    const Chain b = task.chain(ChainRule::b, ChainSplit::train, i);
    CHECK(a.prompt == b.prompt);
    REQUIRE(a.prompt.size() == 10);  // 5 digits, 4 operators, ':'
    int64_t va = a.prompt[0] - '0', vb = va;
    std::string ra, rb;
    for (int s = 0; s < 4; ++s) {
      const char op = a.prompt[size_t(1 + 2 * s)];
      const int64_t y = a.prompt[size_t(2 + 2 * s)] - '0';
      auto step = [&](int64_t x, bool b_rule) {
        const int64_t r = op == '+' ? x + y : op == '-' ? x - y + 10 : x * y + (b_rule ? 1 : 0);
        return r % 10;
      };
      va = step(va, false);
      vb = step(vb, true);
      ra += std::to_string(va) + ".";
      rb += std::to_string(vb) + ".";
      CHECK(a.changed[size_t(s)] == (op == '*'));
    }
    CHECK(a.reasoning == ra);
    CHECK(b.reasoning == rb);
    CHECK(b.final_answer == std::to_string(vb));
    CHECK(ChainTask::final_of(b.reasoning) == b.final_answer);
  }
}

TEST_CASE("memgen task: chains are a function of the seed; held-out chains are never trained") {
  const ChainTask task(5, {});
  CHECK(task.chain(ChainRule::b, ChainSplit::train, 17).prompt ==
        ChainTask(5, {}).chain(ChainRule::b, ChainSplit::train, 17).prompt);
  CHECK(task.chain(ChainRule::b, ChainSplit::train, 17).prompt !=
        ChainTask(6, {}).chain(ChainRule::b, ChainSplit::train, 17).prompt);
  std::set<std::string> held_out;
  for (uint64_t i = 0; i < 300; ++i)
    held_out.insert(task.chain(ChainRule::b, ChainSplit::held_out, i).prompt);
  CHECK(held_out.size() > 290);  // distinct, up to chance collisions
  for (uint64_t i = 0; i < 20000; ++i) {
    CHECK_FALSE(held_out.count(task.chain(ChainRule::a, ChainSplit::train, i).prompt));
  }
  const ChainTask three(5, {{"chain-steps", "3"}});
  CHECK(three.chain(ChainRule::a, ChainSplit::held_out, 0).reasoning.size() == 6);
}

TEST_CASE("memgen task: final_of reads the last step's result") {
  CHECK(ChainTask::final_of("7.4.9.0.") == "0");
  CHECK(ChainTask::final_of("7.") == "7");
  CHECK(ChainTask::final_of("7.4") == "7");
  CHECK(ChainTask::final_of("74") == "");
}

TEST_CASE("memgen task: bad options are named") {
  CHECK_THROWS_WITH_AS(ChainTask(0, {{"operators", "+/"}}), doctest::Contains("operators"), Error);
  CHECK_THROWS_WITH_AS(ChainTask(0, {{"changed", "-"}, {"operators", "+*"}}),
                       doctest::Contains("changed"), Error);
  CHECK_THROWS_WITH_AS(ChainTask(0, {{"stepz", "3"}}), doctest::Contains("stepz"), Error);
}

}  // namespace
}  // namespace mnemo::memory
