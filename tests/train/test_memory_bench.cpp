// `mnemo memory-bench`: the library call and the command line on a tiny setting (2 steps):
// one valid JSON line with the promised keys; bad arguments exit 2 with one line naming them.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "memory/baseline.h"
#include "memory/tasks.h"
#include "memory/titans.h"
#include "support/tiny_llama.h"
#include "train/lib/memory_bench.h"
#include "train/lib/memory_capacity.h"

namespace fs = std::filesystem;
using namespace mnemo;
using nlohmann::json;

namespace {

train::MemoryBenchOptions tiny_bench(const std::string& task) {
  train::MemoryBenchOptions o;
  o.task = task;
  o.mechanism = "none";
  o.steps = 2;
  o.batch = 2;
  o.eval_streams = 3;
  o.layers = 1;
  o.hidden = 16;
  o.heads = 2;
  return o;
}

// The mnemo binary: $MNEMO_BIN, else BUILD/mnemo next to BUILD/tests/test_train.
fs::path mnemo_binary() {
  if (const char* env = std::getenv("MNEMO_BIN")) return env;
  return fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "mnemo";
}

struct Run {
  int exit_code = -1;
  std::string out, err;
};

Run run_mnemo(const std::string& args) {
  static int counter = 0;
  const fs::path err_file =
      fs::temp_directory_path() /
      ("mnemo_mb_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + ".err");
  const std::string command = mnemo_binary().string() + " " + args + " 2>" + err_file.string();
  Run r;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) r.out.append(buffer, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  fs::remove(err_file);
  return r;
}

void check_report(const json& r, const std::string& task, const std::string& metric) {
  for (const char* key :
       {"task", "mechanism", "metric", "memory", "baseline", "steps", "seconds"}) {
    CHECK_MESSAGE(r.contains(key), key);
  }
  CHECK(r["task"] == task);
  CHECK(r["metric"] == metric);
  CHECK(r["steps"] == 2);
  CHECK(r["memory"].is_number());
  CHECK(r["baseline"].is_number());
  CHECK(r["seconds"].get<double>() > 0);
}

}  // namespace

TEST_CASE("memory-bench: each task runs on a tiny setting and reports its metric") {
  std::ostringstream log;
  json r = train::run_memory_bench(tiny_bench("recall"), log);
  check_report(r, "recall", "exact_match");
  CHECK(r["mechanism"] == "none");
  CHECK(r["memory"] == r["baseline"]);  // none: the baseline, trained once
  CHECK(r["details"]["baseline"]["far_queries"] == 3 * 8);
  // exact_match counts the far queries answered right: a whole number of the 24.
  const double answered = r["baseline"].get<double>() * 24;
  CHECK(answered == doctest::Approx(std::round(answered)));
  CHECK(log.str().find("step 2/2") != std::string::npos);
  // The scalar controls' learning-rate factor: the mechanism's default unless given.
  CHECK(r["scalar_lr_scale"] == 10.0);
  CHECK(train::memory_bench_default_scalar_lr_scale("titans") == 1.0);
  // Titans' section: a gate without persistent tokens; overrides win.
  const nlohmann::json titans = train::memory_bench_section("titans", 40, 5, 2500, {});
  CHECK(titans["variant"] == "mag");
  CHECK(titans["persistent_tokens"] == 0);
  CHECK_FALSE(titans.contains("max_forget"));
  CHECK(train::memory_bench_section("titans", 40, 5, 2500, {"max_forget=0.02"})["max_forget"] ==
        0.02);

  auto copy = tiny_bench("copy-far");
  copy.task_options = {{"gap", "1"}, {"segment-length", "12"}};
  r = train::run_memory_bench(copy, log);
  check_report(r, "copy-far", "token_accuracy");
  CHECK(r["model"]["window"] == 12);

  // longdoc on a scratch corpus of headers.
  const fs::path dir = fs::temp_directory_path() / fmt::format("mnemo_mb_corpus_{}", getpid());
  fs::create_directories(dir);
  for (int d = 0; d < 30; ++d) {
    std::string text;
    for (int i = 0; text.size() < 400; ++i) text += fmt::format("int name{};\n", (i * 7 + d) % 13);
    std::ofstream(dir / fmt::format("h{}.h", d)) << text;
  }
  auto longdoc = tiny_bench("longdoc");
  longdoc.task_options = {{"corpus", dir.string()}, {"segments", "3"}, {"segment-length", "16"}};
  r = train::run_memory_bench(longdoc, log);
  fs::remove_all(dir);
  check_report(r, "longdoc", "bits_per_byte");
  CHECK(r["higher_is_better"] == false);
  CHECK(r["baseline"].get<double>() > 0.0);
  CHECK(r["baseline"].get<double>() < 16.0);
}

TEST_CASE("memory-bench: titans' gate is held shut for 8% of the steps, or until the loss falls") {
  // The section: 200 of 2500 steps, 32 of 400; an override wins; MAC has no gate to hold.
  CHECK(train::memory_bench_section("titans", 40, 5, 2500, {})["gate_hold_steps"] == 200);
  CHECK(train::memory_bench_section("titans", 40, 5, 400, {})["gate_hold_steps"] == 32);
  CHECK(train::memory_bench_section("titans", 40, 5, 2500,
                                    {"gate_hold_steps=0"})["gate_hold_steps"] == 0);
  CHECK_FALSE(train::memory_bench_section("titans", 40, 5, 2500, {"variant=mac"})
                  .contains("gate_hold_steps"));
  CHECK_FALSE(
      train::memory_bench_section("memorizing", 40, 5, 2500, {}).contains("gate_hold_steps"));
  // An opening loss given (the loss rule, titans.h): the longest hold becomes 40% of the
  // steps; a hold given by length stays that length; an opening loss of 0 is the 8% hold.
  const nlohmann::json on_loss =
      train::memory_bench_section("titans", 40, 5, 2500, {"gate_open_loss=2.0"});
  CHECK(on_loss["gate_open_loss"] == 2.0);
  CHECK(on_loss["gate_hold_steps"] == 1000);
  CHECK(train::memory_bench_section(
            "titans", 40, 5, 2500,
            {"gate_open_loss=2.0", "gate_hold_steps=300"})["gate_hold_steps"] == 300);
  CHECK(train::memory_bench_section("titans", 40, 5, 2500,
                                    {"gate_open_loss=0"})["gate_hold_steps"] == 200);
  CHECK_FALSE(train::memory_bench_section("titans", 40, 5, 2500, {}).contains("gate_open_loss"));
  // Values of the wrong type reach the model's config, whose error names the key.
  CHECK(train::memory_bench_section("titans", 40, 5, 2500,
                                    {"gate_open_loss=soon"})["gate_hold_steps"] == 200);
  CHECK_FALSE(train::memory_bench_section("titans", 40, 5, 2500, {"variant=3"})
                  .contains("gate_hold_steps"));
  train::MemoryBenchOptions bad = tiny_bench("recall");
  bad.mechanism = "titans";
  bad.memory_overrides = {"gate_open_loss=soon"};
  std::ostringstream bad_log;
  CHECK_THROWS_WITH_AS(train::run_memory_bench(bad, bad_log), doctest::Contains("gate_open_loss"),
                       Error);
  // The training loop tells the model its step and its losses: held over both steps, the gate
  // and the memory's weights keep their bits (no gradient, so AdamW leaves them alone); held
  // over one, or over two with an opening loss that the first step's loss is under, the
  // second step trains them.
  train::MemoryBenchOptions o = train::memory_bench_resolved([] {
    train::MemoryBenchOptions t = tiny_bench("recall");
    t.mechanism = "titans";
    return t;
  }());
  const auto task = memory::make_task("recall", 0, o.task_options);
  const int64_t T = task->segment_length();
  const nn::LlamaConfig model = train::memory_bench_model(o, task->vocab_size(), T);
  for (const auto& [hold, open_loss] : {std::pair{2, 0.0}, {1, 0.0}, {2, 100.0}}) {
    CAPTURE(hold);
    CAPTURE(open_loss);
    std::vector<std::string> overrides = {fmt::format("gate_hold_steps={}", hold)};
    if (open_loss > 0) overrides.push_back(fmt::format("gate_open_loss={}", open_loss));
    const nlohmann::json section =
        train::memory_bench_section("titans", T, task->num_segments(), 2, overrides);
    CHECK(section["gate_hold_steps"] == hold);
    const bool trains = hold == 1 || open_loss > 0;
    train::MemoryBenchModels models = train::make_memory_bench_models(o, model, section, T);
    auto& lm = dynamic_cast<memory::TitansLM&>(*models.memory);
    const memory::TitansBlock& block = *lm.memory_blocks.back();
    const std::vector<float> gate0 = block.memory_gate->weight.to_vector<float>();
    const std::vector<float> keys0 = block.memory->key_proj->weight.to_vector<float>();
    const std::vector<float> attn0 = block.self_attn->q_proj->weight.to_vector<float>();
    std::ostringstream log;
    train::train_memory_bench_model(
        lm, o, 2, Device::cpu(),
        [&](int64_t step) {
          const memory::StreamBatch b = task->batch(memory::Split::train, step * o.batch, o.batch);
          return lm.forward_backward(b.ids_segments(Device::cpu()),
                                     b.targets_segments(Device::cpu()), lm.initial_state(o.batch));
        },
        log);
    CHECK(block.self_attn->q_proj->weight.to_vector<float>() != attn0);  // trained either way
    CHECK((block.memory_gate->weight.to_vector<float>() == gate0) != trains);
    CHECK((block.memory->key_proj->weight.to_vector<float>() == keys0) != trains);
    CHECK((log.str().find("titans gate opens after step 1 ") != std::string::npos) ==
          (open_loss > 0));
  }
}

TEST_CASE("memory-bench: the rate warms up, holds, then falls over the last lr_decay") {
  train::MemoryBenchOptions o = tiny_bench("recall");
  o.mechanism = "titans";
  o.steps = 100;
  const train::MemoryBenchOptions r = train::memory_bench_resolved(o);
  CHECK(r.lr_decay == 0.2);  // titans' default; the others keep a constant rate
  o.mechanism = "memformer";
  CHECK(train::memory_bench_resolved(o).lr_decay == 0.0);
  // 100 steps: warmup over 5, constant to step 79, then 20 steps down to lr / 21.
  const double lr = r.lr;
  CHECK(train::memory_bench_lr(r, 100, 0) == doctest::Approx(lr / 5));
  CHECK(train::memory_bench_lr(r, 100, 4) == doctest::Approx(lr));
  CHECK(train::memory_bench_lr(r, 100, 79) == doctest::Approx(lr));
  CHECK(train::memory_bench_lr(r, 100, 80) == doctest::Approx(lr * 20 / 21));
  CHECK(train::memory_bench_lr(r, 100, 99) == doctest::Approx(lr / 21));
  for (int64_t step = 80; step < 99; ++step) {
    CHECK(train::memory_bench_lr(r, 100, step + 1) < train::memory_bench_lr(r, 100, step));
  }
  train::MemoryBenchOptions constant = r;
  constant.lr_decay = 0;
  CHECK(train::memory_bench_lr(constant, 100, 99) == doctest::Approx(lr));
  // Out of range: an error naming the option.
  o.lr_decay = 1.5;
  CHECK_THROWS_WITH_AS(train::memory_bench_resolved(o), doctest::Contains("--lr-decay"), Error);
}

TEST_CASE("memory-bench: the evaluation scores a model's argmax exactly") {
  // An untrained baseline scored by evaluate_segment_lm agrees with a hand count of its
  // argmax predictions over the same eval streams.
  const auto task = memory::make_task("copy-far", 4, {{"gap", "1"}, {"segment-length", "10"}});
  const nn::LlamaConfig c = mnemo::test::tiny_llama({.vocab_size = task->vocab_size(),
                                                     .hidden_size = 8,
                                                     .intermediate_size = 16,
                                                     .num_hidden_layers = 1,
                                                     .num_key_value_heads = 2,
                                                     .max_position_embeddings = 10});
  Generator gen(3);
  memory::BaselineLM lm(c, 10, &gen);
  const memory::Tally tally = train::evaluate_segment_lm(lm, *task, 5, 2, Device::cpu());
  int64_t correct = 0, scored = 0;
  for (int64_t i = 0; i < 5; ++i) {
    const memory::Stream st = task->stream(memory::Split::eval, i);
    const Tensor ids =
        from_vector(std::vector<int64_t>(st.ids.begin() + 10, st.ids.end()), {1, 10});
    const Tensor logits = lm.forward_segment(ids, {}).logits;  // segment 1 (the copy)
    for (int64_t t = 0; t < 10; ++t) {
      const int64_t target = st.targets[size_t(10 + t)];
      if (target == -100) continue;
      int64_t best = 0;
      for (int64_t v = 1; v < c.vocab_size; ++v) {
        if (logits.at({0, t, v}) > logits.at({0, t, best})) best = v;
      }
      correct += best == target ? 1 : 0;
      ++scored;
    }
  }
  CHECK(tally.far.tokens == scored);
  CHECK(tally.far.correct == correct);
}

TEST_CASE("memory-bench: bad input is an error naming it, before any training") {
  std::ostringstream log;
  auto o = tiny_bench("recall");
  o.mechanism = "telepathy";
  CHECK_THROWS_WITH_AS(train::run_memory_bench(o, log), doctest::Contains("'telepathy'"), Error);
  o = tiny_bench("recal");
  CHECK_THROWS_WITH_AS(train::run_memory_bench(o, log), doctest::Contains("'recal'"), Error);
  o = tiny_bench("recall");
  o.task_options = {{"gap", "2"}};
  CHECK_THROWS_WITH_AS(train::run_memory_bench(o, log), doctest::Contains("--gap"), Error);
  o = tiny_bench("recall");
  o.memory_overrides = {"top_k=4"};
  CHECK_THROWS_WITH_AS(train::run_memory_bench(o, log), doctest::Contains("--memory"), Error);
  CHECK(log.str().empty());
}

TEST_CASE("mnemo memory-bench: one JSON line on --steps 2, exit 2 on bad arguments") {
  const fs::path bin = mnemo_binary();
  REQUIRE_MESSAGE(fs::exists(bin), "build the mnemo target (or set MNEMO_BIN): ", bin.string());
  const std::string tiny_args =
      " --steps 2 --batch 2 --eval-streams 2 --layers 1 --hidden 16 --heads 2 --threads 1";
  Run r =
      run_mnemo("memory-bench copy-far --mechanism none --gap 1 --segment-length 12" + tiny_args);
  CHECK(r.exit_code == 0);
  REQUIRE(!r.out.empty());
  CHECK(r.out.back() == '\n');
  CHECK(r.out.find('\n') == r.out.size() - 1);  // one line
  const json report = json::parse(r.out);
  check_report(report, "copy-far", "token_accuracy");
  CHECK(report["task_config"]["gap"] == 1);

  struct Bad {
    std::string args, names;
  };
  for (const Bad& bad : {Bad{"memory-bench nope --mechanism none", "'nope'"},
                         Bad{"memory-bench recall --mechanism magic", "'magic'"},
                         Bad{"memory-bench recall --mechanism none --gap 2", "--gap"},
                         Bad{"memory-bench copy-far --mechanism none --gap x", "--gap"},
                         Bad{"memory-bench recall --mechanism none --frobnicate 1", "frobnicate"},
                         Bad{"memory-bench recall", "--mechanism"}}) {
    CAPTURE(bad.args);
    r = run_mnemo(bad.args + tiny_args);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.find(bad.names) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}

TEST_CASE("memory-bench capacity: rows per model and count; storing and forgetting are seen") {
  std::ostringstream log;
  train::CapacityOptions o;
  o.plot = "";
  o.max_pairs = 16;
  o.trials = 4;
  o.head_dim = 16;
  o.theta = 4;  // big steps: few pairs are stored clearly
  const std::vector<json> rows = train::run_memory_capacity(o, log);
  REQUIRE(rows.size() == 3 * 3);  // linear, mlp, attention x 4, 8, 16 pairs
  for (const json& row : rows) {
    CAPTURE(row.dump());
    CHECK(row["task"] == "capacity");
    CHECK(row["error"].get<double>() >= 0);
    // What was stored points towards the values, for every model.
    CHECK(row["cosine_added"].get<double>() > 0.2);
  }
  CHECK(rows[0]["memory_model"] == "linear");
  CHECK(rows[0]["pairs"] == 4);
  CHECK(rows[3]["memory_model"] == "mlp");
  // More pairs in the same memory interfere: the linear memory's cosine falls.
  CHECK(rows[2]["cosine"].get<double>() < rows[0]["cosine"].get<double>());

  // Full forgetting and no momentum: only the last chunk is held.
  o.models = {"linear"};
  o.alpha = 1;
  o.eta = 0;
  o.chunk_size = 4;
  const std::vector<json> forgetful = train::run_memory_capacity(o, log);
  REQUIRE(forgetful.size() == 3);
  const json& last = forgetful.back();
  CHECK(last["cosine_newest"].get<double>() > 0.5);
  CHECK(std::abs(last["cosine_oldest"].get<double>()) < 0.3);

  train::CapacityOptions bad;
  CHECK_THROWS_WITH_AS(bad.apply({"depth=2"}), doctest::Contains("'depth'"), Error);
  CHECK_THROWS_WITH_AS(bad.apply({"theta=fast"}), doctest::Contains("theta"), Error);
}
