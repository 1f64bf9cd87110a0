// The built-in tasks and their rewards (see task.h).
#include "train/rl/task.h"

#include <algorithm>

#include "core/error.h"
#include "core/splitmix64.h"

namespace mnemo::rl {

Score ExactMatchReward::score(const Prompt& prompt, std::span<const int32_t> /*answer_ids*/,
                              std::string_view answer_text, bool ended) const {
  const bool correct = ended && answer_text == prompt.answer;
  return {correct ? 1.0 : 0.0, correct};
}

namespace {

// "a+b=" with a, b of `digits` digits. Pair (a, b) is number (a - lo) * n + (b - lo) of the
// n * n pairs, lo = 10^(digits-1), n = 9 lo; it is held out when a draw keyed by the seed and
// the pair says so (one in ten).
class ArithTask final : public Task {
 public:
  ArithTask(uint64_t seed, const text::Tokenizer& tokenizer, int64_t digits)
      : seed_(seed), tokenizer_(tokenizer), digits_(digits) {
    lo_ = 1;
    for (int64_t d = 1; d < digits; ++d) lo_ *= 10;
    n_ = 9 * lo_;
    for (int64_t pair = 0; pair < n_ * n_; ++pair) {
      if (held_out(pair)) heldout_.push_back(pair);
    }
    // A seeded Fisher-Yates shuffle, so the first K held-out prompts are a fair sample.
    SplitMix64 rng(splitmix64_mix(seed ^ 0x5eedULL));
    for (size_t i = heldout_.size(); i > 1; --i) {
      std::swap(heldout_[i - 1], heldout_[size_t(below_multiply_shift(rng.next(), i))]);
    }
    MNEMO_CHECK(!heldout_.empty() && int64_t(heldout_.size()) < n_ * n_,
                "rl task arith: digits {} leaves no held-out or no training pairs", digits);
  }

  std::string name() const override { return "arith"; }

  Prompt prompt(Split split, uint64_t index) const override {
    if (split == Split::heldout) {
      MNEMO_CHECK(index < heldout_.size(), "rl task arith: held-out prompt {} of {}", index,
                  heldout_.size());
      return make(heldout_[size_t(index)]);
    }
    // Rejection: the first of a few draws that is not held out (one in ten is).
    for (uint64_t attempt = 0; attempt < 64; ++attempt) {
      const uint64_t r = splitmix64_at(seed_ ^ 0x7a11ULL, index * 64 + attempt);
      const int64_t pair = int64_t(below_multiply_shift(r, uint64_t(n_ * n_)));
      if (!held_out(pair)) return make(pair);
    }
    fail_internal("rl task arith: 64 draws in a row were held-out pairs");
  }

  int64_t heldout_size() const override { return int64_t(heldout_.size()); }
  const Reward& reward() const override { return reward_; }
  const text::Tokenizer& tokenizer() const override { return tokenizer_; }
  int64_t answer_tokens() const override { return digits_ + 2; }  // d + 1 digits, then eos
  nlohmann::json config() const override {
    return {{"digits", digits_}, {"heldout", heldout_.size()}, {"pairs", n_ * n_}};
  }

 private:
  bool held_out(int64_t pair) const { return splitmix64_at(seed_, uint64_t(pair)) % 10 == 0; }

  Prompt make(int64_t pair) const {
    const int64_t a = lo_ + pair / n_, b = lo_ + pair % n_;
    Prompt p;
    p.text = std::to_string(a) + "+" + std::to_string(b) + "=";
    p.answer = std::to_string(a + b);
    p.ids.push_back(tokenizer_.eos_id());
    const std::vector<int32_t> ids = tokenizer_.encode(p.text);
    p.ids.insert(p.ids.end(), ids.begin(), ids.end());
    return p;
  }

  uint64_t seed_;
  const text::Tokenizer& tokenizer_;
  int64_t digits_, lo_ = 1, n_ = 9;
  std::vector<int64_t> heldout_;
  ExactMatchReward reward_;
};

}  // namespace

std::vector<std::string> task_names() {
  return {"arith"};
}

std::unique_ptr<Task> make_task(std::string_view name, uint64_t seed,
                                const text::Tokenizer& tokenizer, const nlohmann::json& options) {
  MNEMO_CHECK(options.is_object(), "rl task {}: options must be an object, got {}", name,
              options.dump());
  if (name == "arith") {
    int64_t digits = 2;
    for (const auto& [key, value] : options.items()) {
      MNEMO_CHECK(key == "digits", "rl task arith: unknown option '{}' (it takes digits)", key);
      MNEMO_CHECK(
          value.is_number_integer() && value.get<int64_t>() >= 1 && value.get<int64_t>() <= 4,
          "rl task arith: 'digits' must be an integer from 1 to 4, got {}", value.dump());
      digits = value.get<int64_t>();
    }
    return std::make_unique<ArithTask>(seed, tokenizer, digits);
  }
  fail("rl: unknown task '{}' (the tasks: arith)", name);
}

}  // namespace mnemo::rl
