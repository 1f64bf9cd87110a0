// MemGen (memory/memgen.h, memgen_trigger.h, memgen_generate.h): the invariants the design
// promises — no insertion is the reasoner exactly, a zero output map is the reasoner exactly,
// a trigger that always inserts is the weaver at every delimiter, generation with the KV
// cache is generation without it — plus where the points go, that the gradient reaches the
// weaver and its queries through the frozen reasoner (against f64 finite differences), and
// the trigger's log-probabilities.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/ops/random.h"
#include "memory/memgen.h"
#include "memory/memgen_generate.h"
#include "memory/memgen_trigger.h"
#include "memory/memgen_test_util.h"
#include "memory/memory_test_util.h"

namespace mnemo::memory {
namespace {

using test::max_abs_diff;

constexpr int64_t kDelimiter = test::kMemGenDelimiter, kEos = test::kMemGenEos;

std::shared_ptr<nn::LlamaForCausalLM> tiny_reasoner(uint64_t seed = 1) {
  return test::memgen_reasoner(seed);
}
MemGenConfig tiny_config(const std::string& source = "weaver") {
  return test::memgen_config(source);
}

// Rows of 9 tokens with delimiters at different columns in each row.
Tensor tiny_ids() {
  return from_vector(std::vector<int64_t>{0, 5, 1, 2, 3, 7, 3, 4, 3,  //
                                          0, 4, 6, 8, 9, 3, 1, 2, 5},
                     {2, 9});
}

InsertionPlan plan_of(const MemGenLM& lm, const Tensor& ids, int64_t prompt_length) {
  InsertionPlan plan;
  const std::vector<int64_t> flat = ids.to_vector<int64_t>();
  const int64_t T = ids.size(1);
  for (int64_t b = 0; b < ids.size(0); ++b) {
    const std::vector<int64_t> row(flat.begin() + b * T, flat.begin() + (b + 1) * T);
    plan.push_back(lm.points(row, prompt_length, T, true, true));
  }
  return plan;
}

TEST_CASE(
    "memgen: insertion points are the prompt's end and delimiters, at most max_inference_aug") {
  MemGenLM lm(tiny_reasoner(), tiny_config());
  const std::vector<int64_t> row{0, 3, 1, 3, 2, 3, 3, 5};
  const auto points = lm.points(row, 3, 8, true, true);
  REQUIRE(points.size() == 3);
  CHECK(points[0].after == 2);
  CHECK(points[0].prompt);
  CHECK(points[1].after == 3);  // the delimiter in the prompt (column 1) is not a point
  CHECK(points[2].after == 5);  // then max_inference_aug = 2 stops it
  CHECK_FALSE(points[1].prompt);
  CHECK(lm.points(row, 3, 8, false, true).size() == 2);
  CHECK(lm.points(row, 3, 8, true, false).size() == 1);
}

TEST_CASE("memgen: an empty plan is the reasoner exactly") {
  auto reasoner = tiny_reasoner();
  MemGenLM lm(reasoner, tiny_config());
  const Tensor ids = tiny_ids();
  nn::LMInput in;
  in.input_ids = ids;
  const Tensor plain = reasoner->forward(in).logits;
  CHECK(max_abs_diff(lm.forward(ids, InsertionPlan(2)).logits, plain) == 0);
}

TEST_CASE("memgen: a weaver whose output map is zero leaves the reasoner's logits unchanged") {
  auto reasoner = tiny_reasoner();
  MemGenLM lm(reasoner, tiny_config());
  const Tensor ids = tiny_ids();
  nn::LMInput in;
  in.input_ids = ids;
  const Tensor plain = reasoner->forward(in).logits;
  const InsertionPlan plan = plan_of(lm, ids, 3);
  REQUIRE(plan[0].size() == 3);  // prompt end, two delimiters
  const MemGenOutput live = lm.forward(ids, plan);
  CHECK(max_abs_diff(live.logits, plain) > 1e-3);  // a live weaver changes them
  {
    NoGradGuard no_grad;
    fill_(lm.weaver_to_reasoner->weight, 0);
    fill_(lm.weaver_to_reasoner->bias, 0);
  }
  const MemGenOutput out = lm.forward(ids, plan);
  CHECK(max_abs_diff(out.logits, plain) == 0);
  // And the trigger's features are the reasoner's hidden states.
  CHECK(max_abs_diff(out.hidden, reasoner->forward(in).last_hidden) == 0);
}

TEST_CASE("memgen: the gradient reaches the weaver and its queries through the frozen reasoner") {
  auto reasoner = tiny_reasoner();
  reasoner->to(DType::f64);
  MemGenLM lm(reasoner, tiny_config());
  lm.to(DType::f64);
  const Tensor ids = tiny_ids();
  const InsertionPlan plan = plan_of(lm, ids, 3);
  Tensor targets = from_vector(std::vector<int64_t>{-100, -100, 1, 2, 3, 7, 3, 4, -100,  //
                                                    -100, -100, 8, 9, 3, 1, 2, 5, -100},
                               {2, 9});
  const Tensor loss = MemGenLM::loss(lm.forward(ids, plan), targets);
  backward(loss);
  for (const Tensor& p : reasoner->parameters()) CHECK_FALSE(p.grad().defined());
  // Central differences on a few elements of the queries and the maps.
  for (Tensor* param : {&lm.prompt_latents, &lm.inference_latents, &lm.weaver_to_reasoner->weight,
                        &lm.reasoner_to_weaver->weight}) {
    REQUIRE(param->grad().defined());
    const std::vector<double> grad = param->grad().to_vector<double>();
    for (int64_t i : {int64_t(0), param->numel() / 2 + 1}) {
      NoGradGuard no_grad;
      const Tensor flat = reshape(*param, {param->numel()});
      const Tensor element = narrow(flat, 0, i, 1);
      const double x = element.item(), eps = 1e-6;
      fill_(element, x + eps);
      const double up = MemGenLM::loss(lm.forward(ids, plan), targets).item();
      fill_(element, x - eps);
      const double down = MemGenLM::loss(lm.forward(ids, plan), targets).item();
      fill_(element, x);
      CHECK(grad[size_t(i)] == doctest::Approx((up - down) / (2 * eps)).epsilon(1e-5));
    }
  }
}

TEST_CASE("memgen: the soft prompt goes at the prompt's end only") {
  MemGenLM lm(tiny_reasoner(), tiny_config("soft_prompt"));
  const Tensor ids = tiny_ids();
  InsertionPlan plan(2, {InsertionPoint{2, true}});
  const MemGenOutput out = lm.forward(ids, plan);
  CHECK(out.latents.size(1) == 3);
  CHECK(max_abs_diff(select(out.latents, 0, 0), select(out.latents, 0, 1)) == 0);
  plan[0].push_back({4, false});
  CHECK_THROWS_WITH_AS(lm.forward(ids, plan), doctest::Contains("soft prompt"), Error);
}

TEST_CASE("memgen: the trigger's log-probabilities are log sigmoid(+-z)") {
  Generator gen(3);
  MemGenTrigger trigger(4, 0.8, &gen);
  const Tensor features = randn({3, 4}, {}, &gen);
  const std::vector<float> z = trigger.logits(features).to_vector<float>();
  const std::vector<float> lp =
      trigger.log_prob(features, from_vector(std::vector<float>{1, 0, 1}, {3})).to_vector<float>();
  for (int i = 0; i < 3; ++i) {
    const double s = 1 / (1 + std::exp(-double(z[size_t(i)])));
    CHECK(lp[size_t(i)] == doctest::Approx(std::log(i == 1 ? 1 - s : s)).epsilon(1e-5));
  }
  // The bias starts at logit(0.8).
  CHECK(trigger.head->bias.item() == doctest::Approx(std::log(4.0)));
}

// Greedy generation of two prompts; the weaver's output is made large so that it matters.
MemGenGenerated generate(const MemGenLM& lm, const MemGenTrigger* trigger, InsertMode mode,
                         bool cache, bool sample_decisions = false) {
  MemGenGenerateOptions o;
  o.mode = mode;
  o.max_new_tokens = 12;
  o.eos_id = kEos;
  o.use_cache = cache;
  o.sample_decisions = sample_decisions;
  o.seed = 11;
  return memgen_generate(lm, trigger, {{0, 5, 1}, {0, 4, 6}}, o);
}

using test::chatty_reasoner;

TEST_CASE("memgen: generation with the KV cache equals generation without it") {
  MemGenConfig c = tiny_config();
  c.latent_rms = 3;
  c.max_inference_aug = 4;
  MemGenLM lm(chatty_reasoner(), c);
  Generator gen(5);
  MemGenTrigger trigger(8, 0.5, &gen);
  for (InsertMode mode :
       {InsertMode::none, InsertMode::prompt, InsertMode::delimiters, InsertMode::trigger}) {
    CAPTURE(insert_mode_name(mode));
    const MemGenGenerated a = generate(lm, &trigger, mode, true, true);
    const MemGenGenerated b = generate(lm, &trigger, mode, false, true);
    CHECK(a.tokens == b.tokens);
    REQUIRE(a.inserted.size() == b.inserted.size());
    for (size_t r = 0; r < a.inserted.size(); ++r) {
      REQUIRE(a.inserted[r].size() == b.inserted[r].size());
      for (size_t i = 0; i < a.inserted[r].size(); ++i) {
        CHECK(a.inserted[r][i].after == b.inserted[r][i].after);
      }
    }
    if (mode == InsertMode::delimiters) CHECK(a.insertions(0) + a.insertions(1) >= 4);
  }
  // The sampled trigger decided differently in the two rows at least once (so the absent
  // columns of the cached path were exercised).
  const MemGenGenerated t = generate(lm, &trigger, InsertMode::trigger, true, true);
  int64_t inserted = 0;
  for (const TriggerDecision& d : t.decisions) inserted += d.insert;
  CHECK(inserted > 0);
  CHECK(inserted < int64_t(t.decisions.size()));
}

TEST_CASE("memgen: a trigger that always inserts equals the weaver at every delimiter") {
  MemGenConfig c = tiny_config();
  c.latent_rms = 3;
  c.max_inference_aug = 4;
  MemGenLM lm(chatty_reasoner(), c);
  MemGenTrigger always(8, 0.999999);
  const MemGenGenerated weaver = generate(lm, nullptr, InsertMode::delimiters, true);
  const MemGenGenerated triggered = generate(lm, &always, InsertMode::trigger, true);
  CHECK(weaver.tokens == triggered.tokens);
  for (size_t r = 0; r < weaver.inserted.size(); ++r) {
    CHECK(weaver.insertions(int64_t(r)) == triggered.insertions(int64_t(r)));
  }
  // One decision per delimiter point: every insertion but the two at the prompts' ends.
  CHECK(triggered.decisions.size() == size_t(weaver.insertions(0) + weaver.insertions(1) - 2));
  for (const TriggerDecision& d : triggered.decisions) CHECK(d.after >= 3);
}

TEST_CASE("memgen: config keys are checked by name") {
  CHECK_THROWS_WITH_AS(MemGenConfig::from_json({{"prompt_latent", 3}}),
                       doctest::Contains("unknown key 'prompt_latent'"), Error);
  CHECK_THROWS_WITH_AS(MemGenConfig::from_json({{"inference_latents", "4"}}),
                       doctest::Contains("'inference_latents' must be an integer"), Error);
  CHECK_THROWS_WITH_AS(MemGenConfig::from_json({{"weaver", {{"hidden_size", 7}}}}),
                       doctest::Contains("hidden_size"), Error);
  const MemGenConfig c = MemGenConfig::from_json(tiny_config().to_json());
  CHECK(c.to_json() == tiny_config().to_json());
}

}  // namespace
}  // namespace mnemo::memory
