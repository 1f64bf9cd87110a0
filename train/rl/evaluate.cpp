// Held-out exact match and pass@G (see evaluate.h).
#include "train/rl/evaluate.h"

#include <algorithm>

#include "core/error.h"
#include "core/splitmix64.h"
#include "train/rl/rollout.h"

namespace mnemo::rl {

namespace {

// The share of prompts with at least one correct answer among `group_size` samples each.
double share_solved(const nn::LlamaForCausalLM& model, const Task& task, const EvalSettings& s,
                    int64_t group_size, double temperature, uint64_t seed) {
  const int64_t count = s.split == Split::heldout
                            ? std::min(s.prompts, task.heldout_size() - int64_t(s.first))
                            : s.prompts;
  MNEMO_CHECK(count >= 1 && s.batch >= 1, "rl evaluate: need prompts >= 1 and batch >= 1");
  RolloutOptions o;
  o.group_size = group_size;
  o.max_new_tokens = s.max_new_tokens;
  o.temperature = temperature;
  o.vocab_limit = s.vocab_limit;
  o.eos_id = task.eos_id();
  int64_t solved = 0;
  for (int64_t first = 0; first < count; first += s.batch) {
    const int64_t n = std::min(s.batch, count - first);
    std::vector<Prompt> prompts;
    std::vector<std::vector<int32_t>> ids;
    std::vector<uint64_t> seeds;
    for (int64_t i = first; i < first + n; ++i) {
      prompts.push_back(task.prompt(s.split, s.first + uint64_t(i)));
      ids.push_back(prompts.back().ids);
      seeds.push_back(splitmix64_at(seed, uint64_t(i)));
    }
    const Rollouts r = sample_rollouts(model, ids, seeds, o);
    for (int64_t p = 0; p < n; ++p) {
      bool any = false;
      for (int64_t g = 0; g < group_size && !any; ++g) {
        const int64_t row = p * group_size + g;
        any = score_answer(task, prompts[size_t(p)], r, row).correct;
      }
      solved += any ? 1 : 0;
    }
  }
  return double(solved) / double(count);
}

}  // namespace

Score score_answer(const Task& task, const Prompt& prompt, const Rollouts& r, int64_t row) {
  const std::vector<int32_t> answer = r.answer(row, task.eos_id());
  return task.reward().score(prompt, answer, task.tokenizer().decode(answer),
                             r.finished[size_t(row)] != 0);
}

double greedy_exact_match(const nn::LlamaForCausalLM& model, const Task& task,
                          const EvalSettings& settings) {
  return share_solved(model, task, settings, 1, 0.0, 0);
}

double pass_at_g(const nn::LlamaForCausalLM& model, const Task& task, const EvalSettings& settings,
                 int64_t group_size, double temperature, uint64_t seed) {
  MNEMO_CHECK(group_size >= 1 && temperature > 0,
              "pass_at_g: need group_size >= 1 and a temperature > 0, got {} and {}", group_size,
              temperature);
  return share_solved(model, task, settings, group_size, temperature, seed);
}

}  // namespace mnemo::rl
