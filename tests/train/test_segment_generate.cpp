// Generation from memory-augmented LMs (train/lib/segment_generate.h) and `mnemo sample` on a
// memory checkpoint. The reference is independent of the generation loop: the generated
// stream re-scored as evaluation reads it (whole segments of S tokens, the state carried from
// one to the next); greedy generation must pick each row's argmax, with its log-probability,
// across several segment boundaries, for every mechanism.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "memory/factory.h"
#include "train/lib/commands.h"
#include "train/lib/segment_generate.h"

#include "support/scratch_dir.h"
#include "support/tiny_llama.h"
#include "support/train_runs.h"

namespace fs = std::filesystem;
using namespace mnemo;
using namespace mnemo::train;
using nlohmann::json;

namespace {

constexpr int64_t kVocab = 29;
constexpr int64_t kWindow = 8;  // every tiny model's segment_length

// initializer_range 0.3: large weights, far-apart logits, and the memory matters.
nn::LlamaConfig tiny_generate_model() {
  return mnemo::test::tiny_llama({.vocab_size = kVocab,
                                  .intermediate_size = 32,
                                  .max_position_embeddings = 16,
                                  .initializer_range = 0.3});
}

// A tiny SegmentLM of each mechanism. The Memorizing Transformer's kNN memory (capacity 8,
// smaller than the streams, so the FIFO wraps) has its gate open and layer 0 an XL cache, so
// the state moves the logits well above rounding.
std::unique_ptr<memory::SegmentLM> tiny_lm(const std::string& mechanism) {
  json section = {{"segment_length", kWindow}};
  if (mechanism == "memorizing") {
    section.update({{"capacity", 8}, {"top_k", 4}, {"xl_layers", {0}}, {"gate_init", 0.0}});
  } else if (mechanism == "memformer") {
    section.update({{"num_slots", 3}});
  } else if (mechanism == "titans") {  // chunks of 3 cross the segments of 8
    section.update({{"chunk_size", 3}, {"max_lr", 1.0}});
  }
  Generator gen(7);
  return memory::make_segment_lm(mechanism, tiny_generate_model(), section, &gen);
}

std::vector<int32_t> some_ids(int64_t n, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t s = seed;
  for (int32_t& x : ids) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = int32_t((s >> 33) % uint64_t(kVocab));
  }
  return ids;
}

// log_softmax of the logits of every position of `stream` (row p: the distribution of id p + 1),
// read in consecutive segments of S (the last may be shorter) from the initial state; with
// carry = false every segment starts from the initial state (no memory).
std::vector<std::vector<double>> rescore(memory::SegmentLM& lm, const std::vector<int32_t>& stream,
                                         int64_t S, bool carry = true) {
  NoGradGuard no_grad;
  lm.eval();
  std::vector<std::vector<double>> rows;
  memory::MemoryState state = lm.initial_state(1);
  for (size_t begin = 0; begin < stream.size(); begin += size_t(S)) {
    const size_t end = std::min(stream.size(), begin + size_t(S));
    const std::vector<int64_t> ids(stream.begin() + long(begin), stream.begin() + long(end));
    memory::SegmentOutput out =
        lm.forward_segment(from_vector(ids, {1, int64_t(ids.size())}), state);
    const std::vector<double> lp = log_softmax(out.logits, -1).to_vector<double>();
    for (size_t t = 0; t < ids.size(); ++t) {
      rows.emplace_back(lp.begin() + long(t * kVocab), lp.begin() + long((t + 1) * kVocab));
    }
    state = carry ? std::move(out.state) : lm.initial_state(1);
  }
  return rows;
}

size_t argmax(const std::vector<double>& row) {
  size_t best = 0;
  for (size_t i = 1; i < row.size(); ++i) best = row[i] > row[best] ? i : best;
  return best;
}

std::vector<int32_t> joined(const std::vector<int32_t>& prompt, const Generated& g) {
  std::vector<int32_t> s = prompt;
  s.insert(s.end(), g.tokens.begin(), g.tokens.end());
  return s;
}

// Checks that every generated token (and its logprob) is the reference row's: the argmax for
// greedy decoding, the full-softmax log-probability for plain sampling (temperature 1).
void check_against_rescoring(memory::SegmentLM& lm, const std::vector<int32_t>& prompt,
                             const Generated& g, int64_t S, bool greedy) {
  const std::vector<int32_t> stream = joined(prompt, g);
  const auto rows = rescore(lm, stream, S);
  for (size_t i = 0; i < g.tokens.size(); ++i) {
    const std::vector<double>& row = rows[prompt.size() + i - 1];
    CAPTURE(i);
    if (greedy) CHECK(size_t(g.tokens[i]) == argmax(row));
    CHECK(g.logprobs[i] == doctest::Approx(row[size_t(g.tokens[i])]).epsilon(1e-5));
  }
}

}  // namespace

TEST_CASE("generate_segments: greedy equals the argmax of the stream re-scored by segments") {
  for (const std::string mechanism : {"none", "memorizing", "memformer", "titans"}) {
    // (S, prompt length): the model's window with a short prompt, and S = 5 with a prompt
    // that fills two segments and starts a third before the first new token.
    for (const auto& [S, prompt_len] : {std::pair<int64_t, int64_t>{0, 3}, {5, 11}}) {
      CAPTURE(mechanism);
      CAPTURE(S);
      const auto lm = tiny_lm(mechanism);
      const int64_t window = S > 0 ? S : kWindow;
      const std::vector<int32_t> prompt = some_ids(prompt_len, 11);
      GenerateOptions o;
      o.max_new_tokens = 24;  // streams of 27 / 35 tokens: >= 3 segment boundaries
      o.sampling.temperature = 0;
      const Generated g = generate_segments(*lm, prompt, o, S);
      REQUIRE(g.tokens.size() == 24);
      REQUIRE(int64_t(prompt.size() + g.tokens.size()) >= 3 * window + 1);
      check_against_rescoring(*lm, prompt, g, window, /*greedy=*/true);
      if (mechanism == "memorizing") {
        // A document end inside the prompt: the memory is cleared inside forward_segment,
        // so generation and re-scoring still agree.
        lm->document_end_id = prompt[size_t(prompt_len / 2)];
        const Generated after_end = generate_segments(*lm, prompt, o, S);
        check_against_rescoring(*lm, prompt, after_end, window, /*greedy=*/true);
        lm->document_end_id = -1;
      }

      // The reference can tell: without the state carried, the logits after the first
      // segment move (for the mechanisms with a memory).
      if (mechanism != "none") {
        const std::vector<int32_t> stream = joined(prompt, g);
        const auto with = rescore(*lm, stream, window),
                   without = rescore(*lm, stream, window, false);
        double moved = 0;
        for (size_t p = size_t(window); p < stream.size(); ++p) {
          for (size_t v = 0; v < size_t(kVocab); ++v) {
            moved = std::max(moved, std::abs(with[p][v] - without[p][v]));
          }
        }
        CHECK(moved > 1e-2);
      }
    }
  }
}

TEST_CASE("generate_segments: sampling is seeded, its logprobs are the model's; eos stops") {
  for (const std::string mechanism : {"memorizing", "memformer", "titans"}) {
    CAPTURE(mechanism);
    const auto lm = tiny_lm(mechanism);
    const std::vector<int32_t> prompt = some_ids(4, 3);
    GenerateOptions o;
    o.max_new_tokens = 20;
    o.seed = 5;
    const Generated a = generate_segments(*lm, prompt, o);
    const Generated b = generate_segments(*lm, prompt, o);
    CHECK(a.tokens == b.tokens);
    CHECK(a.logprobs == b.logprobs);
    check_against_rescoring(*lm, prompt, a, kWindow, /*greedy=*/false);
    o.seed = 6;
    CHECK(generate_segments(*lm, prompt, o).tokens != a.tokens);

    // eos: stop right after the first occurrence of a token the seed-5 run produced.
    o.seed = 5;
    o.eos_id = a.tokens[9];
    const Generated stopped = generate_segments(*lm, prompt, o);
    size_t first = 0;
    while (a.tokens[first] != o.eos_id) ++first;
    CHECK(stopped.tokens ==
          std::vector<int32_t>(a.tokens.begin(), a.tokens.begin() + long(first) + 1));
    CHECK_FALSE(stopped.hit_context_limit);

    o.max_new_tokens = 0;
    const Generated none = generate_segments(*lm, prompt, o);
    CHECK(none.tokens.empty());
    CHECK(none.logprobs.empty());
  }
}

TEST_CASE("generate_segments: bad options are errors naming the option") {
  const auto lm = tiny_lm("memorizing");
  const std::vector<int32_t> prompt = some_ids(3, 1);
  GenerateOptions o;
  CHECK_THROWS_WITH_AS(generate_segments(*lm, {}, o), doctest::Contains("prompt"), Error);
  CHECK_THROWS_WITH_AS(generate_segments(*lm, prompt, o, kWindow + 1),
                       doctest::Contains("segment_tokens"), Error);
  o.max_new_tokens = -1;
  CHECK_THROWS_WITH_AS(generate_segments(*lm, prompt, o), doctest::Contains("max_new_tokens"),
                       Error);
  o.max_new_tokens = 3;
  o.sampling.top_p = 0;
  CHECK_THROWS_WITH_AS(generate_segments(*lm, prompt, o), doctest::Contains("top_p"), Error);
  CHECK(lm->is_training());  // a failed call leaves the mode as it found it
}

TEST_CASE("mnemo sample on a memory-augmented checkpoint: end to end") {
  test::ScratchDir dir("mnemo_segment_generate_test");
  // A small byte-level corpus: documents of short sentences, in the fortune format ("%" lines
  // separate documents).
  {
    std::ofstream text(dir.path / "corpus.txt");
    for (int d = 0; d < 60; ++d) {
      for (int s = 0; s < 4; ++s)
        text << "the cat number " << (d * 7 + s) % 23 << " sat on mat " << s << ".\n";
      text << "%\n";
    }
  }
  for (const std::string mechanism : {"memorizing", "memformer", "titans"}) {
    CAPTURE(mechanism);
    const json config = {{"model",
                          {{"vocab_size", 257},  // the byte tokenizer's: no id it cannot decode
                           {"hidden_size", 32},
                           {"intermediate_size", 64},
                           {"num_hidden_layers", 2},
                           {"num_attention_heads", 4},
                           {"num_key_value_heads", 4},
                           {"max_position_embeddings", 16}}},
                         {"train",
                          {{"batch_size", 2},
                           {"seq_len", 16},
                           {"lr", 0.005},
                           {"warmup_steps", 2},
                           {"steps", 6},
                           {"eval_interval", 0},
                           {"eval_batches", 1},
                           {"checkpoint_interval", 0},
                           {"threads", 2},
                           {"device", "cpu"}}},
                         {"data",
                          {{"path", (dir.path / "corpus.txt").string()},
                           {"tokenizer", "byte"},
                           {"val_fraction", 0.1}}},
                         {"memory", {{"mechanism", mechanism}, {"segments", 2}}}};
    const fs::path config_file = dir.path / (mechanism + ".json");
    std::ofstream(config_file) << config.dump(2);
    const fs::path run = dir.path / mechanism;
    std::ostringstream log;
    run_train(test::train_options(config_file.string(), run), log);

    SampleOptions o;
    o.checkpoint = run.string();
    o.prompt = "the cat";
    o.max_tokens = 20;
    o.temperature = 0;
    o.device = "cpu";
    std::ostringstream first, second;
    run_sample(o, first);
    run_sample(o, second);
    CAPTURE(first.str());
    CHECK(first.str().starts_with("the cat"));
    CHECK(first.str().size() > std::string("the cat\n").size());
    CHECK(first.str() == second.str());

    o.temperature = 1;
    o.seed = 2;
    o.use_cache = false;  // means nothing here: there is no cache
    std::ostringstream sampled;
    run_sample(o, sampled);
    CHECK(sampled.str().starts_with("the cat"));
    o.max_tokens = 0;
    std::ostringstream nothing;
    run_sample(o, nothing);
    CHECK(nothing.str() == "the cat\n");
  }
}
