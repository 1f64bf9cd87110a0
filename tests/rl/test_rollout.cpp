// Rollouts (train/rl/rollout.h) and the arith task (train/rl/task.h): the log-probs stored at
// sampling equal those the training forward recomputes on the same tokens (the most common
// RL bug when they do not), padded prompts included; a prompt's samples do not depend on the
// batch they are drawn in; the task's prompts, held-out split and reward.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops/random.h"
#include "support/tiny_llama.h"
#include "train/rl/evaluate.h"
#include "train/rl/rollout.h"
#include "train/rl/task.h"
#include "train/text/tokenizer.h"

using namespace mnemo;
using namespace mnemo::rl;

namespace {

// Prompts of 3, 5 and 2 tokens (so two are left-padded), G = 4, at temperature 0.7, drawing
// from the first 20 of the model's 32 ids; eos is id 1.
struct Fixture {
  nn::LlamaForCausalLM model{[] {
    manual_seed(3);
    return test::tiny_llama({.initializer_range = 0.5});
  }()};
  std::vector<std::vector<int32_t>> prompts{{1, 5, 6}, {1, 7, 8, 9, 10}, {1, 11}};
  std::vector<uint64_t> seeds{101, 202, 303};
  RolloutOptions options = [] {
    RolloutOptions o;
    o.group_size = 4;
    o.max_new_tokens = 6;
    o.temperature = 0.7;
    o.eos_id = 1;
    o.vocab_limit = 20;
    return o;
  }();
};

}  // namespace

TEST_CASE("rl rollouts: the stored log-probs equal the training forward's") {
  Fixture f;
  const Rollouts r = sample_rollouts(f.model, f.prompts, f.seeds, f.options);
  CHECK(r.rows == 12);
  CHECK(r.prompt_columns == 5);
  CHECK(r.columns == 11);
  CHECK(r.pads == std::vector<int64_t>{2, 2, 2, 2, 0, 0, 0, 0, 3, 3, 3, 3});
  std::vector<int64_t> rows(12);
  for (int64_t i = 0; i < 12; ++i) rows[size_t(i)] = i;
  const ActionBatch batch = action_batch(r, rows, Device::cpu());
  NoGradGuard no_grad;
  const PolicyOutput out = policy_forward(f.model, batch, f.options.temperature, 20);
  const std::vector<float> recomputed = out.logprobs.to_vector<float>();
  const std::vector<float> mask = r.action_mask();
  int64_t actions = 0;
  double worst = 0;
  for (size_t i = 0; i < recomputed.size(); ++i) {
    if (mask[i] == 0) {
      CHECK(recomputed[i] == 0.0f);
      CHECK(r.logprobs[i] == 0.0f);
      continue;
    }
    ++actions;
    CHECK(r.logprobs[i] < 0.0f);
    worst = std::max(worst, std::abs(double(recomputed[i]) - double(r.logprobs[i])));
  }
  int64_t lengths = 0;
  for (int64_t l : r.lengths) lengths += l;
  CHECK(actions == lengths);
  CHECK(actions > 12);
  // The KV cache's incremental forward and the full forward are different kernels' sums: equal
  // to float rounding (measured: below 1e-6).
  CHECK_MESSAGE(worst < 1e-5, "largest log-prob mismatch " << worst);
  // Each row's answer stops at its first eos; what follows is not an action.
  for (int64_t row = 0; row < r.rows; ++row) {
    const int64_t len = r.lengths[size_t(row)];
    CHECK(len >= 1);
    CHECK(len <= 6);
    const int32_t last = r.tokens[size_t(row * r.columns + r.prompt_columns + len - 1)];
    CHECK((r.finished[size_t(row)] != 0) == (last == 1));
  }
}

TEST_CASE("rl rollouts: a prompt's samples do not depend on the batch") {
  Fixture f;
  const Rollouts all = sample_rollouts(f.model, f.prompts, f.seeds, f.options);
  // Prompt 2 alone (no padding at all), with its seed.
  const Rollouts one =
      sample_rollouts(f.model, {f.prompts[2]}, std::vector<uint64_t>{303}, f.options);
  for (int64_t g = 0; g < 4; ++g) {
    CHECK(all.answer(8 + g, 1) == one.answer(g, 1));
    CHECK(all.lengths[size_t(8 + g)] == one.lengths[size_t(g)]);
  }
}

TEST_CASE("rl task arith: prompts, the held-out split and the exact-match reward") {
  const text::ByteTokenizer tokenizer;
  const auto task = make_task("arith", 5, tokenizer);
  const Prompt p = task->prompt(Split::train, 0);
  CHECK(p.ids.front() == tokenizer.eos_id());
  CHECK(tokenizer.decode(std::vector<int32_t>(p.ids.begin() + 1, p.ids.end())) == p.text);
  const size_t plus = p.text.find('+');
  REQUIRE(plus == 2);
  CHECK(p.text.size() == 6);
  CHECK(std::stoi(p.text.substr(0, 2)) + std::stoi(p.text.substr(3, 2)) == std::stoi(p.answer));
  // About a tenth of the 8100 pairs are held out, and training draws never give one.
  CHECK(task->heldout_size() > 600);
  CHECK(task->heldout_size() < 1000);
  std::set<std::string> heldout;
  for (int64_t i = 0; i < task->heldout_size(); ++i) {
    heldout.insert(task->prompt(Split::heldout, uint64_t(i)).text);
  }
  CHECK(int64_t(heldout.size()) == task->heldout_size());
  for (uint64_t i = 0; i < 2000; ++i) CHECK(heldout.count(task->prompt(Split::train, i).text) == 0);
  // Reward 1 only for exactly the sum's digits followed by eos.
  const Reward& reward = task->reward();
  const std::vector<int32_t> ids = tokenizer.encode(p.answer);
  CHECK(reward.score(p, ids, p.answer, true).reward == 1.0);
  CHECK(reward.score(p, ids, p.answer, false).reward == 0.0);
  CHECK(reward.score(p, ids, p.answer + "0", true).reward == 0.0);
  CHECK_THROWS_AS(make_task("arith", 0, tokenizer, {{"digits", 9}}), Error);
  CHECK_THROWS_AS(make_task("sort", 0, tokenizer), Error);
}
