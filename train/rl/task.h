// What RL trains on: a task hands out prompts and a reward scores the model's answers.
//
// A Reward is any function (prompt, answer) -> a number; RL needs nothing else from the task
// (no demonstrations, no gradient of the reward). The built-in tasks are verifiable: their
// reward checks an answer exactly, which is what makes small-model RL measurable.
//
//   arith   "37+85=" -> "122": two operands of `digits` digits (default 2) and their sum.
//           Reward 1 when the answer is exactly the sum's decimal digits followed by eos,
//           else 0. A tenth of the operand pairs (chosen by the seed) are held out: they are
//           never training prompts, and validation scores greedy answers to them.
//
// Prompts are drawn by index from the seed alone (a counter-based draw, core/splitmix64.h),
// so the prompts of a step follow from the step and a resumed run sees the same ones. The
// model sees eos first (the start of a document, as in pre-training), then the prompt's ids.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "train/text/tokenizer.h"

namespace mnemo::rl {

struct Prompt {
  std::string text;          // "37+85="
  std::vector<int32_t> ids;  // eos, then the ids of text
  std::string answer;        // what the verifier expects ("122"); also the demonstration
};

struct Score {
  double reward = 0;
  bool correct = false;  // the answer is right (the accuracy figures count these)
};

class Reward {
 public:
  virtual ~Reward() = default;
  // answer: the response's tokens without eos, and its text; ended: it stopped with eos
  // (an answer cut at max_new_tokens did not).
  virtual Score score(const Prompt& prompt, std::span<const int32_t> answer_ids,
                      std::string_view answer_text, bool ended) const = 0;
};

// 1 when the answer is exactly prompt.answer and ended with eos, else 0.
class ExactMatchReward final : public Reward {
 public:
  Score score(const Prompt& prompt, std::span<const int32_t> answer_ids,
              std::string_view answer_text, bool ended) const override;
};

enum class Split { train, heldout };

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  // Split::train: any index (each a fresh draw); Split::heldout: index < heldout_size().
  virtual Prompt prompt(Split split, uint64_t index) const = 0;
  virtual int64_t heldout_size() const = 0;
  virtual const Reward& reward() const = 0;
  virtual const text::Tokenizer& tokenizer() const = 0;
  int32_t eos_id() const { return tokenizer().eos_id(); }
  // Answer tokens the longest correct answer takes, eos included.
  virtual int64_t answer_tokens() const = 0;
  virtual nlohmann::json config() const = 0;  // the options in use, for logs and results
};

// The names make_task knows.
std::vector<std::string> task_names();
// A built-in task from its name, the seed of its prompts and its options (an object; arith
// takes "digits", 1 to 4). The tokenizer must encode the prompts' characters one by one or in
// merges; it is kept by reference. Errors name the task or the option.
std::unique_ptr<Task> make_task(std::string_view name, uint64_t seed,
                                const text::Tokenizer& tokenizer,
                                const nlohmann::json& options = nlohmann::json::object());

}  // namespace mnemo::rl
