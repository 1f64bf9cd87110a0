// BaselineLM (the no-memory baseline) against a plain Llama forward, and make_segment_lm.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/ops/random.h"
#include "memory/baseline.h"
#include "memory/factory.h"
#include "memory/memory_test_util.h"
#include "support/tiny_llama.h"

namespace mnemo::memory {
namespace {

nn::LlamaConfig tiny_config() {
  return mnemo::test::tiny_llama(
      {.vocab_size = 23, .max_position_embeddings = 16, .initializer_range = 0.2});
}

Tensor random_ids(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> v(size_t(B * T));
  uint64_t s = seed;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = int64_t((s >> 33) % uint64_t(vocab));
  }
  return from_vector(v, {B, T});
}

using test::max_abs_diff;

}  // namespace

TEST_CASE("BaselineLM: one segment equals a plain Llama forward with the same weights") {
  const nn::LlamaConfig config = tiny_config();
  Generator gen(11);
  BaselineLM lm(config, 8, &gen);
  lm.to(DType::f64);
  nn::LlamaForCausalLM plain(config);
  plain.to(DType::f64);
  plain.load_state_dict(lm.state_dict());  // strict: the names are HF Llama's

  const Tensor ids = random_ids(3, 8, config.vocab_size, 5);
  nn::LMInput input;
  input.input_ids = ids;
  const Tensor expected = plain.forward(input).logits;
  MemoryState state = lm.initial_state(3);
  CHECK(state.empty());
  SegmentOutput out = lm.forward_segment(ids, state);
  CHECK(out.logits.shape() == Shape{3, 8, config.vocab_size});
  CHECK(out.state.empty());
  CHECK(max_abs_diff(out.logits, expected) == 0.0);

  // A later segment is read as if it were the first: nothing is carried over.
  const Tensor later = random_ids(3, 5, config.vocab_size, 6);
  input.input_ids = later;
  CHECK(max_abs_diff(lm.forward_segment(later, out.state).logits, plain.forward(input).logits) ==
        0.0);
  CHECK(lm.num_parameters() == plain.num_parameters());
  CHECK(lm.mechanism() == "none");
  CHECK(lm.segment_length() == 8);
}

TEST_CASE("BaselineLM: forward_backward is the mean loss over segments, each on its own") {
  const nn::LlamaConfig config = tiny_config();
  Generator gen(12);
  BaselineLM lm(config, 6, &gen);
  lm.to(DType::f64);
  std::vector<Tensor> ids, targets;
  for (uint64_t s = 0; s < 3; ++s) {
    ids.push_back(random_ids(2, 6, config.vocab_size, 10 + s));
    Tensor t = random_ids(2, 6, config.vocab_size, 20 + s);
    targets.push_back(t);
  }
  const double loss = lm.forward_backward(ids, targets, lm.initial_state(2));
  // Reference: the fused LM loss per segment (every target scored, equal counts).
  double sum = 0;
  for (size_t s = 0; s < 3; ++s) sum += lm.decoder().loss(ids[s], targets[s]).item();
  CHECK(loss == doctest::Approx(sum / 3).epsilon(1e-12));
  CHECK(lm.decoder().output_weight().grad().defined());
}

TEST_CASE("BaselineLM: bad segments and configs are errors") {
  const nn::LlamaConfig config = tiny_config();
  BaselineLM lm(config, 8);
  CHECK_THROWS_WITH_AS(lm.forward_segment(random_ids(1, 9, 23, 1), {}),
                       doctest::Contains("segment_length 8"), Error);
  MemoryState junk;
  junk.set("x", zeros({1}));
  CHECK_THROWS_WITH_AS(lm.forward_segment(random_ids(1, 4, 23, 1), junk),
                       doctest::Contains("empty state"), Error);
  CHECK_THROWS_WITH_AS(BaselineLM(config, 17), doctest::Contains("max_position_embeddings"), Error);
}

TEST_CASE("make_segment_lm: mechanisms by name, errors naming the name or key") {
  const nn::LlamaConfig config = tiny_config();
  const auto none = make_segment_lm("none", config, {{"segment_length", 12}});
  CHECK(none->mechanism() == "none");
  CHECK(none->segment_length() == 12);
  CHECK(make_segment_lm("none", config, nullptr)->segment_length() == 16);
  CHECK_THROWS_WITH_AS(make_segment_lm("none", config, {{"top_k", 4}}),
                       doctest::Contains("memory.top_k"), Error);
  CHECK_THROWS_WITH_AS(make_segment_lm("recurrent", config, {}),
                       doctest::Contains("unknown memory mechanism 'recurrent'"), Error);
  for (const std::string name : {"memorizing", "memformer"}) {
    CAPTURE(name);
    CHECK(mechanism_built_in(name));
    const auto lm = make_segment_lm(name, config, {{"segment_length", 8}});
    CHECK(lm->mechanism() == name);
    CHECK(lm->segment_length() == 8);
  }
  CHECK_FALSE(mechanism_built_in("recurrent"));
  CHECK_THROWS_WITH_AS(make_segment_lm("memorizing", config, {{"segment_length", 8}, {"bogus", 1}}),
                       doctest::Contains("bogus"), Error);
}

}  // namespace mnemo::memory
