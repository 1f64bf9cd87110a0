// Memory-augmented training (train/lib/segment_step.h in the run skeleton of trainer.h) end to
// end on the tiny corpus: each mechanism learns, writes checkpoints that carry the memory
// section, and resumes bit for bit; gradient accumulation follows the skeleton's convention;
// bad memory sections are one-line errors naming the key; without a memory section `mnemo
// train` is the plain trainer; stream scoring (evaluate.h) against a direct computation.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "memory/factory.h"
#include "train/io/files.h"
#include "train/io/safetensors.h"
#include "train/lib/checkpoint.h"
#include "train/lib/commands.h"
#include "train/lib/evaluate.h"
#include "train/lib/run_config.h"
#include "train/lib/segment_checkpoint.h"

#include "support/scratch_dir.h"
#include "support/tiny_llama.h"
#include "support/train_runs.h"

namespace fs = std::filesystem;
using namespace mnemo;
using namespace mnemo::train;
using nlohmann::json;

namespace {

// A scratch directory per test (tests/support/scratch_dir.h) with this file's prefix.
struct SegmentScratchDir : test::ScratchDir {
  SegmentScratchDir() : test::ScratchDir("mnemo_segment_test") {}
};

using test::tiny_config;
using test::tiny_corpus;
using test::write_json;

double mean(const std::vector<double>& v, size_t begin, size_t end) {
  double s = 0;
  for (size_t i = begin; i < end; ++i) s += v[i];
  return s / double(end - begin);
}

// A run of 30 steps: finite losses that fall, metrics, a checkpoint with the memory section;
// then the run cut back to its step-20 checkpoint and resumed gives the same 30 losses.
void check_learns_and_resumes(const json& memory,
                              const std::function<void(const fs::path& run)>& also = {}) {
  SegmentScratchDir dir;
  const std::string config = write_json(dir.path / "config.json", tiny_config(memory));
  const fs::path run = dir.path / "run";
  std::ostringstream log;
  const TrainOptions options = test::train_options(config, run);
  const TrainSummary summary = run_train(options, log);
  CAPTURE(log.str());
  CHECK(summary.steps_done == 30);
  const std::vector<double> losses = test::step_losses(test::read_metrics(run));
  REQUIRE(losses.size() == 30);
  for (double loss : losses) CHECK(std::isfinite(loss));
  CHECK(mean(losses, 25, 30) < mean(losses, 0, 5) - 0.5);  // ln 300 = 5.7 at the start
  CHECK(std::isfinite(summary.val_bpb));
  CHECK(summary.val_bpb > 0);
  int evals = 0;
  for (const json& m : test::read_metrics(run)) evals += m.contains("val_bpb");
  CHECK(evals == 3);  // steps 10, 20 and the end

  for (const char* file : {"config.json", "model.safetensors", "optimizer.safetensors",
                           "tokenizer.json", "trainer_state.json"}) {
    CHECK(fs::exists(run / "latest" / file));
  }
  const json saved = json::parse(io::read_file((run / "latest" / "config.json").string()));
  CHECK(saved["memory"]["mechanism"] == memory["mechanism"]);
  CHECK(saved["memory"]["segments"] == memory.value("segments", 4));
  CHECK(saved["memory"]["segment_length"] == 16);  // defaulted to train.seq_len
  CHECK(saved["architectures"] == json::array({"MnemoSegmentLM"}));
  CHECK(is_segment_checkpoint(run.string()));

  // The checkpoint loads back and scores text (mnemo eval on a memory checkpoint).
  std::ostringstream eval_out;
  EvalOptions eval;
  eval.checkpoint = run.string();
  eval.text = tiny_corpus();
  run_eval(eval, eval_out);
  const json scored = json::parse(eval_out.str());
  CHECK(scored["mechanism"] == memory["mechanism"]);
  CHECK(std::isfinite(scored["bits_per_byte"].get<double>()));

  if (also) also(run);

  // Without --resume an existing run is not overwritten.
  CHECK_THROWS_WITH_AS(run_train(options, log), doctest::Contains("--resume"), Error);

  // As if killed after the step-20 checkpoint: latest -> step 20, no step-30 checkpoint.
  const std::vector<double> resumed =
      test::resume_after_crash(run, "step-00000020", "step-00000030");
  REQUIRE(resumed.size() == 30);
  for (size_t i = 0; i < 30; ++i) {
    CAPTURE(i);
    CHECK(resumed[i] == losses[i]);  // bitwise
  }
}

nn::LlamaConfig tiny_segment_model() {
  return test::tiny_llama(
      {.vocab_size = 40, .intermediate_size = 32, .max_position_embeddings = 16});
}

// The summed next-token loss of `ids` read as one stream by `lm`, computed here rather than by
// evaluate.h: segments of seq_len inputs from the initial state with the state carried, each
// prediction's -log softmax taken in f64 from the logits.
double stream_nats(memory::SegmentLM& lm, std::span<const int32_t> ids, int64_t seq_len) {
  memory::MemoryState state = lm.initial_state(1);
  double nats = 0;
  for (size_t begin = 0; begin + 1 < ids.size(); begin += size_t(seq_len)) {
    const size_t T = std::min(size_t(seq_len), ids.size() - 1 - begin);
    const std::vector<int64_t> inputs(ids.begin() + begin, ids.begin() + begin + T);
    memory::SegmentOutput out = lm.forward_segment(from_vector(inputs, {1, int64_t(T)}), state);
    const int64_t V = out.logits.size(2);
    const std::vector<float> logits = out.logits.to_vector<float>();
    for (size_t t = 0; t < T; ++t) {
      const float* row = logits.data() + t * size_t(V);
      const double max = *std::max_element(row, row + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - max);
      nats += max + std::log(sum) - double(row[ids[begin + t + 1]]);
    }
    state = std::move(out.state);
  }
  return nats;
}

}  // namespace

TEST_CASE("train memory: memorizing learns on the tiny corpus, checkpoints, resumes exactly") {
  check_learns_and_resumes({{"mechanism", "memorizing"},
                            {"capacity", 64},
                            {"top_k", 8},
                            {"xl_layers", {0}},
                            {"scalar_lr_scale", 10}});
}

TEST_CASE("train memory: memformer learns on the tiny corpus, checkpoints, resumes exactly") {
  check_learns_and_resumes({{"mechanism", "memformer"}, {"segments", 3}, {"num_slots", 4}});
}

TEST_CASE("train memory: titans learns on the tiny corpus, checkpoints, resumes exactly") {
  // Segments of 16 in chunks of 3: the memory's unfinished chunk crosses segment boundaries.
  check_learns_and_resumes(
      {{"mechanism", "titans"}, {"segments", 3}, {"chunk_size", 3}, {"persistent_tokens", 2}});
}

TEST_CASE("train memory: titans mag with its gate held past the resume point resumes exactly") {
  // The gate is held for 25 of 30 steps: the run resumed at step 20 must take its step count
  // from the checkpoint (trainer.h's RunContext::step), or its steps 20-24 would open the gate.
  // Held, the gate gets no gradient: its bias is still gate_init (-4) at step 20 and moves
  // once the gate opens.
  auto gate_bias = [](const fs::path& checkpoint) {
    std::vector<float> out;
    for (const auto& [name, t] : load_segment_checkpoint(checkpoint.string()).lm->state_dict()) {
      if (name.find("memory_gate.bias") != std::string::npos) out = t.to_vector<float>();
    }
    REQUIRE_FALSE(out.empty());
    return out;
  };
  check_learns_and_resumes({{"mechanism", "titans"},
                            {"segments", 3},
                            {"chunk_size", 3},
                            {"variant", "mag"},
                            {"gate_hold_steps", 25}},
                           [&](const fs::path& run) {
                             auto at_init = [](const std::vector<float>& b) {
                               return std::all_of(b.begin(), b.end(),
                                                  [](float v) { return v == -4.0f; });
                             };
                             CHECK(at_init(gate_bias(run / "step-00000020")));
                             CHECK_FALSE(at_init(gate_bias(run / "step-00000030")));
                           });
}

TEST_CASE("train memory: titans' gate opened by the loss rule resumes exactly") {
  // The trainer hands each step's loss to the model (SegmentStep::end_step): the loss rule's
  // average and the step it opens the gate at are in the checkpoint (titans.h's "gate_hold"
  // buffer), so a run resumed at step 20 opens it at the same step as the uninterrupted run.
  // A first run with an opening loss the tiny run never reaches gives its losses, all with the
  // gate held (the rule only ends holds); its 23rd step's average is then the opening loss of a
  // second run, whose gate opens after step 23: between the step-20 and step-30 checkpoints.
  json memory = {{"mechanism", "titans"}, {"segments", 3},         {"chunk_size", 3},
                 {"variant", "mag"},      {"gate_hold_steps", 30}, {"gate_open_loss", 1e-6}};
  std::vector<double> losses;
  {
    SegmentScratchDir dir;
    const std::string config = write_json(dir.path / "config.json", tiny_config(memory));
    std::ostringstream log;
    run_train(test::train_options(config, dir.path / "run"), log);
    losses = test::step_losses(test::read_metrics(dir.path / "run"));
  }
  REQUIRE(losses.size() == 30);
  // The average as titans.cpp keeps it, in millionths: averages[i] after step i + 1.
  std::vector<int64_t> averages;
  for (double loss : losses) {
    const double before = averages.empty() ? loss : double(averages.back()) * 1e-6;
    averages.push_back(std::llround((before + (loss - before) / 25) / 1e-6));
  }
  const int64_t opening = averages[22];
  for (size_t i = 0; i < 22; ++i) REQUIRE(averages[i] > opening);  // the loss falls
  memory["gate_open_loss"] = double(opening) * 1e-6;
  auto gate_hold = [](const fs::path& checkpoint) {
    for (const auto& [name, t] : load_segment_checkpoint(checkpoint.string()).lm->state_dict()) {
      if (name == "gate_hold") return t.to_vector<int64_t>();
    }
    FAIL("no gate_hold in " << checkpoint);
    return std::vector<int64_t>{};
  };
  check_learns_and_resumes(memory, [&](const fs::path& run) {
    CHECK(gate_hold(run / "step-00000020") == std::vector<int64_t>{0, averages[19]});
    CHECK(gate_hold(run / "step-00000030") == std::vector<int64_t>{1, opening});
    // The first 20 steps are the first run's: the gate held in both.
    const std::vector<double> again = test::step_losses(test::read_metrics(run));
    for (size_t i = 0; i < 20; ++i) CHECK(again[i] == losses[i]);
  });
}

TEST_CASE("train memory: explicit learns on the tiny corpus, checkpoints, resumes exactly") {
  // An empty bank of 16 entries (the bank key and its round trip:
  // tests/train/test_explicit_run.cpp).
  check_learns_and_resumes({{"mechanism", "explicit"},
                            {"segments", 2},
                            {"bank_entries", 16},
                            {"entry_length", 8},
                            {"key_dim", 16}});
}

TEST_CASE("train memory: two micro-batches of 2 streams train like one batch of 4") {
  // The skeleton's accumulation convention (trainer.h) holds for the memory step too. Exact
  // gradients (autograd/exact_grad.h) cover the token-row sums of linear layers, embeddings and
  // norms, not every reduction of a mechanism (gates, Memformer's sums over slots), so the
  // weights agree to rounding: measured 1.6e-8 (memorizing) and about 1e-6 (memformer).
  const std::pair<json, float> cases[] = {
      {{{"mechanism", "memorizing"}, {"capacity", 64}, {"top_k", 8}, {"xl_layers", {0}}}, 1e-6f},
      {{{"mechanism", "memformer"}, {"segments", 3}, {"num_slots", 4}}, 1e-5f}};
  for (const auto& [memory, tolerance] : cases) {
    CAPTURE(memory.dump());
    SegmentScratchDir dir;
    const std::string config = write_json(dir.path / "config.json", tiny_config(memory, 6));
    std::vector<std::vector<std::pair<std::string, Tensor>>> weights;
    std::vector<std::vector<double>> losses;
    for (int accum : {1, 2}) {
      const fs::path run = dir.path / fmt::format("accum{}", accum);
      TrainOptions options = test::train_options(config, run);
      options.overrides = {fmt::format("grad_accum={}", accum), "eval_interval=0"};
      std::ostringstream log;
      run_train(options, log);
      weights.push_back(load_segment_checkpoint(run.string()).lm->state_dict());
      losses.push_back(test::step_losses(test::read_metrics(run)));
    }
    REQUIRE(weights[0].size() == weights[1].size());
    float worst = 0;
    for (size_t i = 0; i < weights[0].size(); ++i) {
      const std::vector<float> a = weights[0][i].second.to_vector<float>();
      const std::vector<float> b = weights[1][i].second.to_vector<float>();
      for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(a[k] - b[k]));
    }
    CHECK(worst <= tolerance);
    REQUIRE(losses[0].size() == 6);
    for (size_t i = 0; i < 6; ++i)
      CHECK(losses[1][i] == doctest::Approx(losses[0][i]).epsilon(1e-5));
  }
}

TEST_CASE("train memory: bad memory sections are one-line errors naming the key") {
  SegmentScratchDir dir;
  struct Case {
    json memory;
    std::vector<std::string> overrides;
    const char* names;  // the error must contain this
  };
  const Case cases[] = {
      {json(3), {}, "'memory' must be an object"},
      {{{"segments", 2}}, {}, "memory.mechanism"},
      {{{"mechanism", "memorising"}}, {}, "memory.mechanism"},
      {{{"mechanism", "memformer"}, {"segments", 0}}, {}, "memory.segments"},
      {{{"mechanism", "memformer"}, {"segments", 2.5}}, {}, "memory.segments"},
      {{{"mechanism", "memformer"}, {"scalar_lr_scale", -1}}, {}, "memory.scalar_lr_scale"},
      {{{"mechanism", "memformer"}, {"segment_length", 8}}, {}, "segment_length"},
      {{{"mechanism", "memorizing"}, {"topk", 4}}, {}, "topk"},
      {{{"mechanism", "memorizing"}}, {"memory.capacity=lots"}, "capacity"},
      {{{"mechanism", "memorizing"}, {"memory_layer", 5}}, {}, "memory_layer"},
      {{{"mechanism", "memformer"}, {"num_slots", 0}}, {}, "num_slots"},
      {{{"mechanism", "none"}, {"num_slots", 4}}, {}, "num_slots"},
  };
  int i = 0;
  for (const Case& c : cases) {
    CAPTURE(c.memory.dump());
    const fs::path sub = dir.path / fmt::format("case{}", i++);
    fs::create_directories(sub);
    const std::string config = write_json(sub / "config.json", tiny_config(c.memory));
    TrainOptions options = test::train_options(config, sub / "run");
    options.overrides = c.overrides;
    std::ostringstream log;
    std::string message;
    try {
      run_train(options, log);
    } catch (const Error& e) {
      message = e.what();
    }
    CHECK(message.find(c.names) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
    CHECK_FALSE(fs::exists(options.out_dir + "/data/train.bin"));  // failed before the data
  }
}

TEST_CASE("train memory: without a memory section `mnemo train` is the plain trainer") {
  SegmentScratchDir dir;
  const std::string config = write_json(dir.path / "plain.json", tiny_config(json(), 4));
  const RunConfig rc = load_run_config(config);
  CHECK_FALSE(rc.memory.enabled);
  CHECK_FALSE(rc.json.contains("memory"));
  const fs::path run = dir.path / "run";
  TrainOptions options = test::train_options(config, run);
  std::ostringstream log;
  CHECK(run_train(options, log).steps_done == 4);
  const json saved = json::parse(io::read_file((run / "latest" / "config.json").string()));
  CHECK(saved["architectures"] == json::array({"LlamaForCausalLM"}));
  CHECK_FALSE(saved.contains("memory"));
  CHECK_FALSE(is_segment_checkpoint(run.string()));
  CHECK(load_checkpoint(run.string()).model != nullptr);  // an ordinary Llama checkpoint

  // --set memory.KEY=VALUE adds the section (and so switches to the memory step).
  options.overrides = {"memory.mechanism=memformer", "memory.num_slots=2"};
  const RunConfig with = load_run_config(config, options.overrides);
  CHECK(with.memory.mechanism == "memformer");
  CHECK(with.memory.mechanism_section["num_slots"] == 2);
  options.out_dir = (dir.path / "run_memformer").string();
  options.steps = 2;
  CHECK(run_train(options, log).steps_done == 2);
  CHECK(is_segment_checkpoint(options.out_dir));
  CHECK(load_segment_checkpoint(options.out_dir).lm->mechanism() == "memformer");
  CHECK(with.memory.mechanism_section["segment_length"] == 16);
}

TEST_CASE("stream scoring: every prediction once, each stream scored as one, any batch") {
  NoGradGuard no_grad;
  Generator gen(5);
  auto lm = memory::make_segment_lm("memformer", tiny_segment_model(),
                                    {{"num_slots", 2}, {"segment_length", 8}}, &gen);
  lm->eval();
  std::vector<int32_t> ids(100);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7 + 3) % 40);
  std::vector<int64_t> bytes(40, 2);
  bytes[3] = 5;
  // Streams of 3 x 8 + 1 = 25 ids: four full streams, no tail; 96 predictions.
  const std::span<const int32_t> all(ids);
  double nats = 0;
  int64_t expected_bytes = 0;
  for (size_t first = 0; first < 100; first += 25) {
    nats += stream_nats(*lm, all.subspan(first, 25), 8);
    for (size_t i = first + 1; i < first + 25; ++i) expected_bytes += bytes[size_t(ids[i])];
  }
  for (int64_t batch : {1, 3}) {
    CAPTURE(batch);
    const EvalResult r = evaluate_streams(*lm, ids, 8, 3, batch, bytes);
    CHECK(r.tokens == 96);
    CHECK(r.bytes == expected_bytes);
    CHECK(r.total_nats == doctest::Approx(nats).epsilon(1e-5));
  }
  // 90 ids: three full streams and a tail of 15 ids (14 predictions, segments of 8 and 6).
  const EvalResult tail = evaluate_streams(*lm, all.first(90), 8, 3, 2, bytes);
  CHECK(tail.tokens == 3 * 24 + 14);
  double expected_tail = stream_nats(*lm, all.subspan(75, 15), 8);
  for (size_t first = 0; first < 75; first += 25) {
    expected_tail += stream_nats(*lm, all.subspan(first, 25), 8);
  }
  CHECK(tail.total_nats == doctest::Approx(expected_tail).epsilon(1e-5));
  CHECK(evaluate_streams(*lm, ids, 8, 3, 2, bytes, /*max_streams=*/2).tokens == 48);
  CHECK_THROWS_AS(evaluate_streams(*lm, ids, 9, 3, 2, bytes), Error);  // longer than the window
}
