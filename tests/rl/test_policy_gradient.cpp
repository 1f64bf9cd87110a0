// The policy gradient end to end, through a tiny Llama: rollouts -> action_batch ->
// policy_forward -> clipped_policy_loss -> backward. Two failures that leave every loss value
// right and make RL go nowhere are checked here rather than in the loss's own tests:
//   - the sign: a small descent step on the loss must raise the log-probs of an answer with
//     A > 0 and lower them with A < 0;
//   - the masking: the tokens a row holds after its eos (and its pads) are not actions, so
//     changing them must change neither the loss nor any gradient.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/ops/random.h"
#include "support/tiny_llama.h"
#include "train/rl/losses.h"
#include "train/rl/rollout.h"

using namespace mnemo;
using namespace mnemo::rl;

namespace {

constexpr int64_t kVocab = 20;
constexpr double kTemperature = 0.7;

nn::LlamaForCausalLM tiny_policy() {
  manual_seed(11);
  return nn::LlamaForCausalLM(test::tiny_llama({.initializer_range = 0.5}));
}

// 2 prompts (one left-padded) x G = 3 samples of at most 6 tokens; eos is id 1.
Rollouts sample(const nn::LlamaForCausalLM& model) {
  RolloutOptions o;
  o.group_size = 3;
  o.max_new_tokens = 6;
  o.temperature = kTemperature;
  o.eos_id = 1;
  o.vocab_limit = kVocab;
  const std::vector<uint64_t> seeds{7, 8};
  return sample_rollouts(model, {{1, 5, 6}, {1, 7, 8, 9}}, seeds, o);
}

std::vector<int64_t> all_rows(const Rollouts& r) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < r.rows; ++i) rows.push_back(i);
  return rows;
}

// The loss sum_t w_t l_t with advantage advantage_of[row] on every action of a row and dapo's
// weights (1 / actions); old = the current log-probs, so the ratio is 1.
Tensor policy_loss(const nn::LlamaForCausalLM& model, const Rollouts& r,
                   const std::vector<float>& advantage_of) {
  const ActionBatch batch = action_batch(r, all_rows(r), Device::cpu());
  const PolicyOutput out = policy_forward(model, batch, kTemperature, kVocab);
  const std::vector<float> mask = r.action_mask();
  const int64_t A = r.actions_per_row();
  double actions = 0;
  for (float m : mask) actions += m;
  std::vector<float> adv(mask.size()), weights(mask.size());
  for (int64_t row = 0; row < r.rows; ++row) {
    for (int64_t c = 0; c < A; ++c) {
      const size_t at = size_t(row * A + c);
      adv[at] = advantage_of[size_t(row)];
      weights[at] = float(mask[at] / actions);
    }
  }
  return clipped_policy_loss(out.logprobs, detach(out.logprobs), from_vector(adv, {r.rows, A}),
                             from_vector(weights, {r.rows, A}), Tensor(), ClipOptions{});
}

// Sum of a row's action log-probs under the model.
double row_logprob(const nn::LlamaForCausalLM& model, const Rollouts& r, int64_t row) {
  NoGradGuard no_grad;
  const std::vector<int64_t> rows{row};
  const PolicyOutput out =
      policy_forward(model, action_batch(r, rows, Device::cpu()), kTemperature, kVocab);
  double total = 0;
  for (float lp : out.logprobs.to_vector<float>()) total += lp;
  return total;
}

std::vector<std::vector<float>> gradients(const nn::LlamaForCausalLM& model) {
  std::vector<std::vector<float>> g;
  for (const Tensor& p : model.parameters()) {
    REQUIRE(p.grad().defined());
    g.push_back(p.grad().to_vector<float>());
  }
  return g;
}

}  // namespace

TEST_CASE("rl policy gradient: a descent step raises A > 0 answers and lowers A < 0 ones") {
  for (const float sign : {1.0f, -1.0f}) {
    CAPTURE(sign);
    nn::LlamaForCausalLM model = tiny_policy();
    const Rollouts r = sample(model);
    const int64_t row = 4;  // the second prompt's (unpadded) second answer
    std::vector<float> advantage_of(size_t(r.rows), 0.0f);
    advantage_of[size_t(row)] = sign;
    const double before = row_logprob(model, r, row);
    model.zero_grad();
    backward(policy_loss(model, r, advantage_of));
    {
      NoGradGuard no_grad;
      for (const Tensor& p : model.parameters()) sub_(p, mul(p.grad(), 1e-2));
    }
    const double after = row_logprob(model, r, row);
    CHECK((after - before) * sign > 0);
  }
}

TEST_CASE("rl policy gradient: tokens after eos change neither the loss nor a gradient") {
  nn::LlamaForCausalLM model = tiny_policy();
  const Rollouts r = sample(model);
  // Row 0 ends early for sure: its third answer token becomes eos, what follows after_eos.
  Rollouts ended = r;
  const int64_t L = r.columns, first = r.prompt_columns;
  for (int64_t c = first; c < L; ++c) {
    ended.kind[size_t(c)] = c <= first + 2 ? Column::response : Column::after_eos;
  }
  ended.tokens[size_t(first + 2)] = 1;
  ended.lengths[0] = 3;
  ended.finished[0] = 1;
  // The same rows with other ids after every eos (and in the pads).
  Rollouts scrambled = ended;
  int64_t changed = 0;
  for (size_t at = 0; at < scrambled.tokens.size(); ++at) {
    if (scrambled.kind[at] == Column::after_eos || scrambled.kind[at] == Column::pad) {
      scrambled.tokens[at] = int32_t(2 + at % 15);
      ++changed;
    }
  }
  REQUIRE(changed >= 3);
  const std::vector<float> advantage_of{1.0f, -0.5f, 0.25f, -1.0f, 0.5f, 2.0f};
  model.zero_grad();
  const Tensor loss = policy_loss(model, ended, advantage_of);
  backward(loss);
  const std::vector<std::vector<float>> expected = gradients(model);
  model.zero_grad();
  const Tensor loss_scrambled = policy_loss(model, scrambled, advantage_of);
  backward(loss_scrambled);
  CHECK(loss_scrambled.item() == loss.item());
  const std::vector<std::vector<float>> got = gradients(model);
  REQUIRE(got.size() == expected.size());
  // Equal up to traces at the edge of float's range: the embedding's gradient differs by
  // about 4e-38 in a few entries.
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    REQUIRE(got[i].size() == expected[i].size());
    float worst = 0;
    for (size_t j = 0; j < got[i].size(); ++j) {
      worst = std::max(worst, std::abs(got[i][j] - expected[i][j]));
    }
    CHECK(worst <= 1e-30f);
  }
}
