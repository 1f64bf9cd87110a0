// The shifted-rule chained arithmetic of memgen_task.h.
#include "memory/memgen_task.h"

#include "core/error.h"
#include "core/splitmix64.h"

namespace mnemo::memory {

namespace {

// Keys of the draw streams, so that the splits and the hash never share draws.
constexpr uint64_t kTrainStream = 0x7a1'0001ULL;
constexpr uint64_t kHeldOutStream = 0x7a1'0002ULL;
constexpr uint64_t kSplitHash = 0x7a1'0003ULL;
constexpr uint64_t kHeldOutEighths = 8;  // one chain in kHeldOutEighths is held out

}  // namespace

ChainTask::ChainTask(uint64_t seed, const TaskOptions& options) : seed_(seed) {
  OptionReader read("memgen", options);
  steps_ = read.integer("chain-steps", 4, 1, 16);
  modulus_ = read.integer("modulus", 10, 2, 10);  // one digit per operand and result
  operators_ = read.text("operators", "+*-");
  const std::string changed = read.text("changed", "*");
  read.finish();
  MNEMO_CHECK(!operators_.empty() && operators_.find_first_not_of("+*-") == std::string::npos,
              "memgen: operators must be some of \"+*-\", got \"{}\"", operators_);
  MNEMO_CHECK(changed.size() == 1 && operators_.find(changed[0]) != std::string::npos,
              "memgen: changed must be one of the operators \"{}\", got \"{}\"", operators_,
              changed);
  changed_ = changed[0];
}

nlohmann::json ChainTask::config() const {
  return {{"chain_steps", steps_},
          {"modulus", modulus_},
          {"operators", operators_},
          {"changed", std::string(1, changed_)}};
}

int64_t ChainTask::apply(ChainRule rule, char op, int64_t x, int64_t y) const {
  int64_t r = 0;
  switch (op) {
    case '+': r = x + y; break;
    case '-': r = x - y + modulus_; break;
    case '*': r = x * y; break;
    default: fail_internal("memgen: unknown operator '{}'", op);
  }
  if (rule == ChainRule::b && op == changed_) r += 1;
  return r % modulus_;
}

bool ChainTask::held_out(const std::vector<int64_t>& operands, const std::vector<char>& ops) const {
  uint64_t key = splitmix64_mix(seed_ ^ kSplitHash);
  for (int64_t x : operands) key = splitmix64_mix(key + uint64_t(x) + 1);
  for (char op : ops) key = splitmix64_mix(key + uint64_t(uint8_t(op)));
  return key % kHeldOutEighths == 0;
}

Chain ChainTask::chain(ChainRule rule, ChainSplit split, uint64_t index) const {
  const bool want_held_out = split == ChainSplit::held_out;
  const uint64_t stream = splitmix64_mix(seed_ ^ (want_held_out ? kHeldOutStream : kTrainStream));
  // Draw candidates from this index's own sub-stream until one hashes to the split (an
  // eighth of draws for held-out chains, seven eighths for training ones).
  std::vector<int64_t> operands(static_cast<size_t>(steps_ + 1));
  std::vector<char> ops(static_cast<size_t>(steps_));
  for (uint64_t attempt = 0;; ++attempt) {
    SplitMix64 rng(splitmix64_at(stream, index) + attempt * kSplitMix64Gamma * 3);
    for (auto& x : operands) x = int64_t(below_modulo(rng.next(), uint64_t(modulus_)));
    for (auto& op : ops) op = operators_[below_modulo(rng.next(), operators_.size())];
    if (held_out(operands, ops) == want_held_out) break;
  }
  Chain c;
  c.ops = ops;
  int64_t value = operands[0];
  c.prompt = std::to_string(operands[0]);
  for (int64_t s = 0; s < steps_; ++s) {
    const char op = ops[size_t(s)];
    c.prompt += op;
    c.prompt += std::to_string(operands[size_t(s + 1)]);
    value = apply(rule, op, value, operands[size_t(s + 1)]);
    c.reasoning += std::to_string(value) + ".";
    c.changed.push_back(op == changed_);
  }
  c.prompt += ':';
  c.final_answer = std::to_string(value);
  return c;
}

std::string ChainTask::final_of(std::string_view reasoning) {
  const size_t last = reasoning.rfind('.');
  if (last == std::string_view::npos) return "";
  const size_t before = last == 0 ? std::string_view::npos : reasoning.rfind('.', last - 1);
  const size_t first = before == std::string_view::npos ? 0 : before + 1;
  return std::string(reasoning.substr(first, last - first));
}

}  // namespace mnemo::memory
