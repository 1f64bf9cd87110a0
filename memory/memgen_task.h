// The task of `mnemo memory-bench memgen` (train/lib/memgen_bench.h): chained arithmetic
// written step by step, where the rule of one operator changes between pre-training and
// evaluation, so that a frozen reasoner is wrong exactly on the changed steps.
//
// A chain of S steps (default 4) over digits mod M (default 10) and the operators "+*-":
//
//   prompt      "3+4*2-5+1:"          S + 1 operands, S operators, then ':'
//   reasoning   "7.4.9.0."            each step's result, left to right, then '.'
//   final       "0"                   the last step's result
//
// Rule A is ordinary arithmetic mod M. Rule B changes one operator (default '*': x*y becomes
// x*y + 1 mod M); the other steps compute as under rule A. A reasoner pre-trained on rule A
// and asked a rule-B chain gets every '*' step wrong (and, through the carried result,
// usually the steps after it) — what a memory inserted before those steps has to fix.
//
// Splits. A chain is a pure function of the seed, its split and its index (counter-based
// draws, core/splitmix64.h). Each chain's operands and operators hash to a split; a chain
// whose hash falls in the held-out eighth is never a training chain, so the held-out chains
// the bench scores were never seen in training under either rule.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "memory/task_options.h"

namespace mnemo::memory {

enum class ChainRule { a, b };
enum class ChainSplit { train, held_out };

struct Chain {
  std::string prompt;         // "3+4*2-5+1:"
  std::string reasoning;      // "7.4.9.0."
  std::string final_answer;   // "0"
  std::vector<char> ops;      // the S operators, in order
  std::vector<bool> changed;  // step s uses the operator rule B changes (whatever the rule)
};

class ChainTask {
 public:
  // Options (memory/task_options.h): chain-steps (S, 4), modulus (M, 10), operators
  // ("+*-"), changed (the operator rule B changes, '*').
  ChainTask(uint64_t seed, const TaskOptions& options);

  std::string name() const { return "memgen"; }
  int64_t steps() const { return steps_; }
  nlohmann::json config() const;

  // Chain `index` (any) of a split, written under a rule. The same (split, index) under rules
  // A and B has the same operands and operators.
  Chain chain(ChainRule rule, ChainSplit split, uint64_t index) const;
  // One step under a rule: x op y mod M (rule B: the changed operator adds 1).
  int64_t apply(ChainRule rule, char op, int64_t x, int64_t y) const;
  // The final answer of a written reasoning: the text between its last two '.' (or before
  // its only one); "" when it holds no '.'. "7.4.9.0." -> "0".
  static std::string final_of(std::string_view reasoning);

 private:
  bool held_out(const std::vector<int64_t>& operands, const std::vector<char>& ops) const;

  uint64_t seed_;
  int64_t steps_, modulus_;
  std::string operators_;
  char changed_;
};

}  // namespace mnemo::memory
