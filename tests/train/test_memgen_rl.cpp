// GRPO for MemGen's weaver (train/lib/memgen_rl.h): the teacher-forced batch it learns from
// gives back exactly the log-probabilities generation drew its tokens with — so the columns,
// the padding, the insertions and the temperature all line up — and the policy gradient
// reaches the weaver through the frozen reasoner and never the reasoner itself.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "memory/memgen.h"
#include "memory/memgen_generate.h"
#include "memory/memgen_test_util.h"
#include "train/lib/memgen_rl.h"

namespace mnemo::train {
namespace {

constexpr int64_t kEos = memory::test::kMemGenEos;

// A reasoner that writes the delimiter often, and a weaver whose latents are large enough to
// matter (tests/memory/memgen_test_util.h).
memory::MemGenLM tiny_memgen() {
  memory::MemGenConfig c = memory::test::memgen_config();
  c.max_inference_aug = 3;
  c.latent_rms = 3;
  Generator weaver_gen(8);
  return memory::MemGenLM(memory::test::chatty_reasoner(), c, &weaver_gen);
}

const std::vector<std::vector<int32_t>> kPrompts{{0, 5, 1}, {0, 4, 6}, {0, 2, 2}, {0, 9, 8}};
constexpr int64_t kMaxNew = 10;

memory::MemGenGenerated sampled(const memory::MemGenLM& lm, double temperature, bool cache) {
  memory::MemGenGenerateOptions o;
  o.mode = memory::InsertMode::delimiters;
  o.max_new_tokens = kMaxNew;
  o.eos_id = kEos;
  o.use_cache = cache;
  o.sampling.temperature = temperature;
  o.seed = 21;
  return memory::memgen_generate(lm, nullptr, kPrompts, o);
}

TEST_CASE("memgen weaver grpo: the answer batch gives the log-probs generation drew with") {
  const memory::MemGenLM lm = tiny_memgen();
  for (double temperature : {1.0, 0.7}) {
    for (bool cache : {true, false}) {
      CAPTURE(temperature);
      CAPTURE(cache);
      const memory::MemGenGenerated g = sampled(lm, temperature, cache);
      // The draw must exercise what the batch has to line up: insertions after delimiters
      // written during generation, and rows of different lengths (eos, then padding).
      int64_t inference_points = 0, shortest = kMaxNew;
      for (size_t r = 0; r < kPrompts.size(); ++r) {
        for (const memory::InsertionPoint& p : g.inserted[r]) inference_points += !p.prompt;
        shortest = std::min(shortest, int64_t(g.tokens[r].size()));
      }
      REQUIRE(inference_points >= 2);
      REQUIRE(shortest < kMaxNew);

      const AnswerBatch b = answer_batch(g, kPrompts, kMaxNew, kEos);
      CHECK(b.columns == int64_t(kPrompts[0].size()) + kMaxNew - 1);
      NoGradGuard no_grad;
      const std::vector<float> logp = answer_logprobs(lm, b, temperature, 0).to_vector<float>();
      const std::vector<int64_t> targets = b.targets.to_vector<int64_t>();
      for (size_t r = 0; r < kPrompts.size(); ++r) {
        const int64_t P = int64_t(kPrompts[r].size());
        for (size_t j = 0; j < g.tokens[r].size(); ++j) {
          const size_t at = r * size_t(b.columns) + size_t(P - 1) + j;
          CHECK(b.mask[at] == 1.0f);
          CHECK(targets[at] == g.tokens[r][j]);
          CHECK(logp[at] == doctest::Approx(g.logprobs[r][j]).epsilon(1e-4));
        }
        double actions = 0;
        for (int64_t c = 0; c < b.columns; ++c) actions += b.mask[r * size_t(b.columns) + c];
        CHECK(actions == double(g.tokens[r].size()));
      }
    }
  }
}

TEST_CASE("memgen weaver grpo: the policy gradient reaches the weaver, never the reasoner") {
  const memory::MemGenLM lm = tiny_memgen();
  const memory::MemGenGenerated g = sampled(lm, 1.0, true);
  const AnswerBatch b = answer_batch(g, kPrompts, kMaxNew, kEos);
  const Tensor mask = from_vector(b.mask, {b.rows, b.columns});
  backward(sum(answer_logprobs(lm, b, 1.0, 0) * mask));
  for (const auto& [name, p] : lm.reasoner().named_parameters()) {
    CAPTURE(name);
    CHECK_FALSE(p.requires_grad());
    CHECK_FALSE(p.grad().defined());
  }
  double weaver_norm = 0;
  for (const auto& [name, p] : lm.named_parameters()) {
    if (p.grad().defined()) {
      for (float v : p.grad().to_vector<float>()) weaver_norm += double(v) * v;
    }
  }
  CHECK(weaver_norm > 0);
  CHECK(lm.inference_latents.grad().defined());  // the queries of the delimiters' latents
}

}  // namespace
}  // namespace mnemo::train
