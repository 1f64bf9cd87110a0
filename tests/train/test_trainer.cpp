// The training pipeline end to end on a tiny model and corpus: a run writes metrics, curves
// and checkpoints; a resumed run reproduces the uninterrupted losses bit for bit; checkpoints
// load back exactly and reject damaged files; evaluation follows its windowing rule.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/allocator_stats.h"
#include "core/error.h"
#include "optim/schedule.h"
#include "train/io/files.h"
#include "train/lib/checkpoint.h"
#include "train/lib/commands.h"
#include "train/lib/evaluate.h"
#include "train/lib/generate.h"
#include "train/lib/run_config.h"
#include "train/lib/run_support.h"
#include "train/lib/trainer.h"

#include "support/scratch_dir.h"
#include "support/tiny_llama.h"
#include "support/train_runs.h"

namespace fs = std::filesystem;
using namespace mnemo;
using namespace mnemo::train;
using nlohmann::json;

namespace {

// A scratch directory per test (tests/support/scratch_dir.h) with this file's prefix.
struct TrainScratchDir : test::ScratchDir {
  TrainScratchDir() : test::ScratchDir("mnemo_train_test") {}
};

// A small corpus of fortune-style documents separated by "%" lines.
std::string write_corpus(const fs::path& dir) {
  std::ostringstream text;
  const char* words[] = {"the",   "cat",    "sees", "a",     "moon",    "river", "song", "quiet",
                         "house", "friend", "at",   "night", "without", "word",  "old",  "road"};
  uint64_t state = 12345;
  for (int doc = 0; doc < 80; ++doc) {
    if (doc) text << "%\n";
    for (int w = 0; w < 25; ++w) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      text << words[(state >> 33) % 16] << (w % 8 == 7 ? ".\n" : " ");
    }
    text << "\n";
  }
  const fs::path file = dir / "corpus.txt";
  std::ofstream(file) << text.str();
  return file.string();
}

std::string write_config(const fs::path& dir, const std::string& corpus, int64_t steps) {
  json config = {
      {"model",
       {{"vocab_size", 300},
        {"hidden_size", 16},
        {"intermediate_size", 32},
        {"num_hidden_layers", 2},
        {"num_attention_heads", 4},
        {"num_key_value_heads", 2},
        {"max_position_embeddings", 16}}},
      {"train",
       {{"batch_size", 4},
        {"seq_len", 16},
        {"lr", 0.01},
        {"min_lr", 0.001},
        {"warmup_steps", 2},
        {"steps", steps},
        {"eval_interval", 3},
        {"eval_batches", 2},
        {"checkpoint_interval", 3},
        {"grad_accum", 2},
        {"device", "cpu"}}},
      {"data",
       {{"path", corpus}, {"tokenizer", "bpe"}, {"vocab_size", 290}, {"val_fraction", 0.1}}}};
  const fs::path file = dir / "config.json";
  std::ofstream(file) << config.dump(2);
  return file.string();
}

nn::LlamaConfig tiny_train_model() {
  return test::tiny_llama({.vocab_size = 40, .max_position_embeddings = 32});
}

}  // namespace

TEST_CASE("train: a run writes metrics, the plot and an atomic latest checkpoint") {
  TrainScratchDir dir;
  const std::string config = write_config(dir.path, write_corpus(dir.path), 6);
  std::ostringstream log;
  const TrainOptions options = test::train_options(config, dir.path / "run");
  const TrainSummary summary = run_train(options, log);
  CHECK(summary.steps_done == 6);
  CHECK(std::isfinite(summary.val_bpb));

  const fs::path run = dir.path / "run";
  const auto metrics = test::read_metrics(run);
  CHECK(test::step_losses(metrics).size() == 6);
  int evals = 0;
  for (const json& m : metrics) {
    if (m.contains("loss")) {
      for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens_per_s"}) {
        CHECK(m.contains(key));
      }
    }
    if (m.contains("val_loss")) {
      CHECK(m.contains("val_bpb"));
      ++evals;
    }
  }
  CHECK(evals == 2);  // at step 3 and at the end
  CHECK(fs::is_symlink(run / "latest"));
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json",
                           "optimizer.safetensors", "trainer_state.json"}) {
    CHECK(fs::exists(run / "latest" / file));
  }
  const json hf = json::parse(io::read_file((run / "latest" / "config.json").string()));
  CHECK(hf["architectures"] == json::array({"LlamaForCausalLM"}));
  CHECK(hf["model_type"] == "llama");
  CHECK(hf["num_key_value_heads"] == 2);
  const std::string svg = io::read_file((run / "loss.svg").string());
  CHECK(svg.find("<svg") != std::string::npos);

  // Without --resume an existing run is not overwritten.
  CHECK_THROWS_WITH_AS(run_train(options, log), doctest::Contains("--resume"), Error);
}

TEST_CASE("train: the loss falls and the optimizer moves every parameter") {
  TrainScratchDir dir;
  const std::string config = write_config(dir.path, write_corpus(dir.path), 30);
  const fs::path run = dir.path / "run";
  std::ostringstream log;
  TrainOptions options = test::train_options(config, run);
  options.overrides = {"eval_interval=0", "checkpoint_interval=0"};
  const TrainSummary summary = run_train(options, log);
  CAPTURE(log.str());
  const std::vector<double> losses = test::step_losses(test::read_metrics(run));
  REQUIRE(losses.size() == 30);
  const auto mean = [&](size_t begin, size_t end) {
    double sum = 0;
    for (size_t i = begin; i < end; ++i) sum += losses[i];
    return sum / double(end - begin);
  };
  // ln 290 = 5.67 at the start; 16 words in a fixed order are learnt fast.
  CHECK(losses.front() > 5.0);
  CHECK(mean(25, 30) < mean(0, 5) - 1.5);
  CHECK(summary.val_loss < losses.front() - 1.5);

  // Every parameter moved away from its initial value (a step that skipped some, or the
  // whole update, would leave them where the seed put them).
  const RunConfig rc = load_run_config(config);
  manual_seed(rc.train.seed);
  const nn::LlamaForCausalLM initial(rc.model);
  const LoadedCheckpoint trained = load_checkpoint(run.string());
  const auto before = initial.state_dict();
  const auto after = trained.model->state_dict();
  REQUIRE(before.size() == after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    CAPTURE(before[i].first);
    CHECK(before[i].second.to_vector<float>() != after[i].second.to_vector<float>());
  }
}

TEST_CASE("train: two micro-batches of 2 train exactly like one batch of 4") {
  // The accumulation convention of trainer.h: each micro-batch's gradient is scaled by the
  // micro-batch's token count and 1 / grad_accum, so with exact gradients (the CPU default)
  // the accumulated gradient is the same bits as one batch's.
  TrainScratchDir dir;
  const std::string config = write_config(dir.path, write_corpus(dir.path), 5);
  std::vector<std::vector<double>> losses;
  for (int accum : {1, 2}) {
    const fs::path run = dir.path / fmt::format("accum{}", accum);
    TrainOptions options = test::train_options(config, run);
    options.overrides = {fmt::format("grad_accum={}", accum), "eval_interval=0"};
    std::ostringstream log;
    run_train(options, log);
    losses.push_back(test::step_losses(test::read_metrics(run)));
  }
  REQUIRE(losses[0].size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    CAPTURE(i);  // the reported loss sums the micro-batches' shares: equal up to rounding
    CHECK(losses[1][i] == doctest::Approx(losses[0][i]).epsilon(1e-6));
  }
  const auto one = load_checkpoint((dir.path / "accum1").string()).model->state_dict();
  const auto two = load_checkpoint((dir.path / "accum2").string()).model->state_dict();
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(one[i].first);
    CHECK(one[i].second.to_vector<float>() == two[i].second.to_vector<float>());
  }
}

TEST_CASE("train: resuming from a checkpoint reproduces the uninterrupted losses bitwise") {
  TrainScratchDir dir;
  const std::string config = write_config(dir.path, write_corpus(dir.path), 6);
  const fs::path run = dir.path / "run";
  std::ostringstream log;
  run_train(test::train_options(config, run), log);
  const std::vector<double> uninterrupted = test::step_losses(test::read_metrics(run));
  REQUIRE(uninterrupted.size() == 6);

  // As if the process had been killed after the checkpoint at step 3 was published: latest
  // points at step 3 and the step-6 checkpoint never existed.
  fs::remove_all(run / "step-00000006");
  fs::remove(run / "latest");
  fs::create_directory_symlink("step-00000003", run / "latest");
  run_train(test::train_options("", run, /*resume=*/true), log);
  const std::vector<double> resumed = test::step_losses(test::read_metrics(run));
  REQUIRE(resumed.size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    CHECK(resumed[i] == uninterrupted[i]);  // bitwise: same doubles
  }
}

// A run made in pieces with --stop-at (rl-bench's chunks) is the run made at once: the same
// schedule (of train.steps, not of the piece), the same losses and rates, bit for bit.
TEST_CASE("train: a run stopped at steps and resumed is the run made at once, its schedule too") {
  TrainScratchDir dir;
  const std::string corpus = write_corpus(dir.path);
  const std::string config = write_config(dir.path, corpus, 8);
  std::ostringstream log;
  const fs::path whole = dir.path / "whole", pieces = dir.path / "pieces";
  run_train(test::train_options(config, whole), log);

  TrainOptions o = test::train_options(config, pieces);
  for (const int64_t stop : {2, 5}) {
    o.stop_at = stop;
    const TrainSummary piece = run_train(o, log);
    CHECK(piece.stopped);
    CHECK_FALSE(piece.interrupted);
    CHECK(piece.steps_done == stop);
    CHECK(fs::exists(pieces / fmt::format("step-{:08d}", stop) / "trainer_state.json"));
    o = test::train_options("", pieces, /*resume=*/true);
  }
  const TrainSummary last = run_train(o, log);  // no stop_at: to train.steps
  CHECK_FALSE(last.stopped);
  CHECK(last.steps_done == 8);

  const std::vector<json> a = test::read_metrics(whole), b = test::read_metrics(pieces);
  REQUIRE(a.size() == b.size());  // the same evaluations too: none at the stops
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(a[i].value("step", -1) == b[i].value("step", -1));
    for (const char* key : {"loss", "lr", "grad_norm", "val_loss"}) {
      CHECK(a[i].contains(key) == b[i].contains(key));
      if (a[i].contains(key)) CHECK(a[i][key].get<double>() == b[i][key].get<double>());
    }
  }
}

TEST_CASE("train: decay_steps ends the decay early and the rate stays at min_lr") {
  TrainSettings t;
  t.lr = 0.01;
  t.min_lr = 0.001;
  t.warmup_steps = 2;
  t.steps = 20;
  t.decay_steps = 6;
  const optim::LrSchedule s = make_schedule(t);
  CHECK(s.at(1) == doctest::Approx(0.01));                     // warmup's end
  CHECK(s.at(4) == doctest::Approx(0.001 + 0.009 * 0.5));      // halfway (cosine)
  for (int64_t step : {6, 7, 19}) CHECK(s.at(step) == 0.001);  // min_lr after
  t.decay_steps = 0;                                           // 0: over train.steps
  CHECK(make_schedule(t).at(6) > 0.005);

  TrainScratchDir dir;
  const std::string config = write_config(dir.path, write_corpus(dir.path), 8);
  CHECK_THROWS_WITH_AS(load_run_config(config, {"train.decay_steps=1"}),
                       doctest::Contains("train.decay_steps"), Error);
  CHECK_THROWS_WITH_AS(load_run_config(config, {"train.decay_steps=-3"}),
                       doctest::Contains("train.decay_steps"), Error);
  CHECK(load_run_config(config, {"train.decay_steps=2"}).train.decay_steps == 2);
}

// An absurd learning rate after a good start: Adam moves every weight by about lr, so at
// 1e300 the weights of step 7 are infinite (f32) and step 8's loss is not finite.
TEST_CASE("train: a non-finite run stops naming the step and never replaces a good checkpoint") {
  TrainScratchDir dir;
  const std::string config = write_config(dir.path, write_corpus(dir.path), 6);
  const fs::path run = dir.path / "run";
  std::ostringstream log;
  run_train(test::train_options(config, run), log);
  const auto latest = [&] { return fs::read_symlink(run / "latest").string(); };
  REQUIRE(latest() == "step-00000006");
  const auto diverge = [&](std::vector<std::string> extra) {
    TrainOptions o = test::train_options("", run, /*resume=*/true);
    o.steps = 12;
    o.overrides = {"train.lr=1e300", "train.min_lr=1e300"};
    o.overrides.insert(o.overrides.end(), extra.begin(), extra.end());
    return o;
  };

  SUBCASE("stop: the error names the step; no checkpoint is written") {
    CHECK_THROWS_WITH_AS(run_train(diverge({}), log), doctest::Contains("at step 8"), Error);
    CHECK(latest() == "step-00000006");
  }
  SUBCASE("a checkpoint due after the weights blew up is refused, the good one kept") {
    CHECK_THROWS_WITH_AS(run_train(diverge({"train.checkpoint_interval=1"}), log),
                         doctest::Contains("weights are not finite after step 7"), Error);
    CHECK(latest() == "step-00000006");
    CHECK_FALSE(fs::exists(run / "step-00000007"));
  }
  SUBCASE("skip: such steps are counted in metrics.jsonl, N in a row stop the run") {
    CHECK_THROWS_WITH_AS(
        run_train(diverge({"train.skip_non_finite=3", "train.checkpoint_interval=100"}), log),
        doctest::Contains("4 steps in a row up to step 11"), Error);
    CHECK(latest() == "step-00000006");
    std::vector<int64_t> skipped;
    for (const json& m : test::read_metrics(run)) {
      if (m.contains("skipped_updates")) {
        CHECK_FALSE(m.contains("loss"));
        CHECK(m["skipped_updates"] == 1);  // updates_per_step is 1 for the LM
        CHECK(m["skipped_steps"] == int64_t(skipped.size()) + 1);
        skipped.push_back(m["step"].get<int64_t>());
      }
    }
    CHECK(skipped == std::vector<int64_t>{8, 9, 10});  // step 11's line is not written
  }
}

TEST_CASE("train: --resume with another --config is an error naming what differs") {
  TrainScratchDir dir;
  const std::string corpus = write_corpus(dir.path);
  const std::string config = write_config(dir.path, corpus, 3);
  const fs::path run = dir.path / "run";
  std::ostringstream log;
  run_train(test::train_options(config, run), log);
  fs::create_directory(dir.path / "other");
  json other = json::parse(io::read_file(config));
  other["train"]["lr"] = 0.02;
  other["train"]["batch_size"] = 2;
  const fs::path other_file = dir.path / "other" / "config.json";
  std::ofstream(other_file) << other.dump(2);

  TrainOptions o = test::train_options(other_file.string(), run, /*resume=*/true);
  o.steps = 6;
  CHECK_THROWS_WITH_AS(run_train(o, log),
                       doctest::Contains("train.batch_size: 4 in the run, 2 given; train.lr: "
                                         "0.01 in the run, 0.02 given"),
                       Error);
  CHECK(fs::read_symlink(run / "latest").string() == "step-00000003");
  // The run's own config (and --set, applied to both) continues it.
  o.config_file = config;
  o.overrides = {"train.eval_interval=2"};
  CHECK(run_train(o, log).steps_done == 6);
}

// AddressSanitizer keeps freed memory in a quarantine (up to 256 MiB), so resident memory
// grows there by design; the tensor bytes are checked everywhere.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kResidentMemoryMeaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kResidentMemoryMeaningful = false;
#else
constexpr bool kResidentMemoryMeaningful = true;
#endif
#else
constexpr bool kResidentMemoryMeaningful = true;
#endif

// Over `steps` steps with evaluations and checkpoints in between: the bytes in tensors are
// the same after every step from the second on, and resident memory grows by less than
// `rss_slack` over the second half.
void check_flat_memory(const fs::path& dir, const std::vector<std::string>& overrides,
                       int64_t steps, int64_t rss_slack) {
  const std::string config = write_config(dir, write_corpus(dir), steps);
  TrainOptions o = test::train_options(config, dir / "run");
  o.overrides = {"train.eval_interval=25", "train.checkpoint_interval=40", "train.grad_accum=1"};
  o.overrides.insert(o.overrides.end(), overrides.begin(), overrides.end());
  std::ostringstream log;
  run_train(o, log);
  std::map<int64_t, std::pair<int64_t, int64_t>> at;  // step -> (tensor bytes, rss)
  for (const json& m : test::read_metrics(dir / "run")) {
    if (m.contains("loss")) at[m["step"]] = {m["tensor_bytes"], m["rss_bytes"]};
  }
  REQUIRE(int64_t(at.size()) == steps);
  for (int64_t step = 2; step <= steps; ++step) {
    CAPTURE(step);
    CHECK(at[step].first == at[2].first);
  }
  if (!kResidentMemoryMeaningful) {
    MESSAGE("resident memory not checked under AddressSanitizer (its quarantine grows it)");
    return;
  }
  int64_t most = 0;
  for (int64_t step = steps / 2; step <= steps; ++step) most = std::max(most, at[step].second);
  CHECK(at[steps / 2].second > 0);
  CHECK(most - at[steps / 2].second < rss_slack);
}

TEST_CASE("train: tensor bytes and resident memory stay flat after warm-up (no leak)") {
  TrainScratchDir dir;
  SUBCASE("the LM") {
    check_flat_memory(dir.path, {}, 200, 1 << 20);
  }
  SUBCASE("a memory-augmented LM") {
    check_flat_memory(dir.path,
                      {"memory.mechanism=memorizing", "memory.segments=2", "memory.capacity=64"},
                      120, 1 << 20);
  }
}

TEST_CASE("sample: repeated generation leaves no tensor bytes behind") {
  manual_seed(5);
  nn::LlamaForCausalLM model(tiny_train_model());
  const std::vector<int32_t> prompt{1, 5, 7, 2};
  GenerateOptions options;
  options.max_new_tokens = 20;
  options.seed = 3;
  generate(model, prompt, options);  // warm-up
  const size_t before = cpu::allocator_stats().allocated_bytes;
  for (int i = 0; i < 20; ++i) {
    options.use_cache = i % 2 == 0;
    generate(model, prompt, options);
    CHECK(cpu::allocator_stats().allocated_bytes == before);
  }
}

TEST_CASE("train: bad configs are errors naming the key") {
  TrainScratchDir dir;
  const fs::path file = dir.path / "c.json";
  std::ofstream(file) << R"({"train": {"lrr": 0.1}})";
  CHECK_THROWS_WITH_AS(load_run_config(file.string()), doctest::Contains("lrr"), Error);
  std::ofstream(file, std::ios::trunc) << R"({"train": {"steps": "many"}})";
  CHECK_THROWS_WITH_AS(load_run_config(file.string()), doctest::Contains("steps"), Error);
  std::ofstream(file, std::ios::trunc) << R"({"model": {"hidden_size": 30}})";
  CHECK_THROWS_AS(load_run_config(file.string()), Error);  // 30 % 4 heads != 0
  CHECK_THROWS_WITH_AS(load_run_config("", {"train.batch_size=6", "grad_accum=4"}),
                       doctest::Contains("grad_accum"), Error);
  const RunConfig rc = load_run_config("", {"lr=0.5", "train.seq_len=64"}, 7);
  CHECK(rc.train.lr == 0.5);
  CHECK(rc.train.seq_len == 64);
  CHECK(rc.train.steps == 7);
  CHECK_THROWS_WITH_AS(load_run_config("", {"vocab_size=100"}), doctest::Contains("vocab_size"),
                       Error);  // in both model and data: ambiguous
}

TEST_CASE("train: a checkpoint loads back exactly and damaged weights are rejected") {
  TrainScratchDir dir;
  manual_seed(3);
  text::ByteTokenizer tokenizer;
  nn::LlamaConfig c = tiny_train_model();
  c.vocab_size = 300;  // the byte tokenizer has 257 ids
  nn::LlamaForCausalLM big(c);
  const std::string path = save_checkpoint(
      dir.path.string(), 5, [&](const fs::path& to) { write_llama_files(to, big, tokenizer); });
  LoadedCheckpoint loaded = load_checkpoint(dir.path.string());
  CHECK(loaded.path == path);
  const auto original = big.state_dict();
  const auto restored = loaded.model->state_dict();
  REQUIRE(original.size() == restored.size());
  for (size_t i = 0; i < original.size(); ++i) {
    CHECK(original[i].first == restored[i].first);
    CHECK(original[i].second.to_vector<float>() == restored[i].second.to_vector<float>());
  }

  // Truncated weights: an error naming the file, never a crash.
  const std::string weights = path + "/model.safetensors";
  const std::string bytes = io::read_file(weights);
  std::ofstream(weights, std::ios::binary | std::ios::trunc).write(bytes.data(), 100);
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("model.safetensors"), Error);
}

TEST_CASE("train: greedy decoding with the KV cache equals decoding without it") {
  manual_seed(11);
  nn::LlamaForCausalLM model(tiny_train_model());
  const std::vector<int32_t> prompt{1, 5, 7, 2};
  GenerateOptions options;
  options.max_new_tokens = 20;
  options.sampling.temperature = 0;
  const Generated cached = generate(model, prompt, options);
  options.use_cache = false;
  const Generated uncached = generate(model, prompt, options);
  CHECK(cached.tokens.size() == 20);
  CHECK(cached.tokens == uncached.tokens);
  for (size_t i = 0; i < cached.logprobs.size(); ++i) {
    CHECK(cached.logprobs[i] == doctest::Approx(uncached.logprobs[i]).epsilon(1e-4));
  }
  // Sampling with a seed is reproducible.
  options.use_cache = true;
  options.sampling.temperature = 1;
  options.seed = 4;
  CHECK(generate(model, prompt, options).tokens == generate(model, prompt, options).tokens);
  // vocab_limit: ids at or past it (a padded vocabulary) are never drawn, even at a high
  // temperature where every id is likely.
  options.sampling.temperature = 50;
  options.max_new_tokens = 25;  // within the tiny model's 32 positions
  const Generated free = generate(model, prompt, options);
  options.vocab_limit = 3;
  const Generated limited = generate(model, prompt, options);
  CHECK(std::any_of(free.tokens.begin(), free.tokens.end(), [](int32_t t) { return t >= 3; }));
  CHECK(limited.tokens.size() == 25);
  CHECK(std::all_of(limited.tokens.begin(), limited.tokens.end(), [](int32_t t) { return t < 3; }));
  options.vocab_limit = -1;
  CHECK_THROWS_WITH_AS(generate(model, prompt, options), doctest::Contains("vocab_limit"), Error);
}

TEST_CASE("train: evaluation scores each window on its own") {
  manual_seed(5);
  nn::LlamaForCausalLM model(tiny_train_model());
  std::vector<int32_t> ids;
  for (int i = 0; i < 23; ++i) ids.push_back((i * 7 + 3) % 40);
  std::vector<int64_t> bytes(40, 1);
  bytes[3] = 2;
  const EvalResult r = evaluate_windows(model, ids, 8, 2, bytes);
  // Windows [0,8), [8,16), [16,23): 7 + 7 + 6 predictions.
  CHECK(r.tokens == 20);
  double nats = 0;
  int64_t expected_bytes = 0;
  NoGradGuard no_grad;
  for (int64_t start = 0; start < 23; start += 8) {
    const int64_t n = std::min<int64_t>(8, 23 - start);
    std::vector<int64_t> window(ids.begin() + start, ids.begin() + start + n);
    nn::LMInput input;
    input.input_ids = from_vector(window, {1, n});
    const Tensor logits = model.forward(input).logits;  // (1, n, V)
    const std::vector<float> l = logits.to_vector<float>();
    for (int64_t i = 0; i + 1 < n; ++i) {
      double max = -1e30, sum = 0;
      for (int64_t v = 0; v < 40; ++v) max = std::max(max, double(l[size_t(i * 40 + v)]));
      for (int64_t v = 0; v < 40; ++v) sum += std::exp(double(l[size_t(i * 40 + v)]) - max);
      nats += max + std::log(sum) - double(l[size_t(i * 40 + window[size_t(i + 1)])]);
      expected_bytes += bytes[size_t(window[size_t(i + 1)])];
    }
  }
  CHECK(r.total_nats == doctest::Approx(nats).epsilon(1e-5));
  CHECK(r.bytes == expected_bytes);
  CHECK(r.bits_per_byte() == doctest::Approx(nats / std::log(2.0) / double(expected_bytes)));
}
