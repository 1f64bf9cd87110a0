// An explicit-memory run end to end (memory/explicit.h trained by train/lib/segment_step.h):
// memory.bank fills the bank from a text file; every checkpoint carries the bank, and --resume
// reproduces the run bit for bit without reading the file again; `mnemo sample` prints each
// position's retrieval and can add the prompt's sentences to the bank; `mnemo bank` shows,
// adds and edits entries of a checkpoint (train/lib/bank_command.h); freeze_backbone trains the
// memory parts and leaves every backbone weight's bits alone.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops/factory.h"
#include "memory/explicit.h"
#include "train/io/files.h"
#include "train/io/safetensors.h"
#include "train/lib/bank_command.h"
#include "train/lib/bank_file.h"
#include "train/lib/commands.h"
#include "train/lib/segment_checkpoint.h"

#include "support/errors.h"
#include "support/scratch_dir.h"
#include "support/train_runs.h"

namespace fs = std::filesystem;
using namespace mnemo;
using namespace mnemo::train;
using memory::ExplicitLM;
using nlohmann::json;
using test::write_text;

namespace {

struct ExplicitScratchDir : test::ScratchDir {
  ExplicitScratchDir() : test::ScratchDir("mnemo_explicit_run_test") {}
};

const std::vector<std::string> kFacts = {"the cat sat", "the dog ran", "a bird sang", "fish swim"};

// The facts, one per line, with a blank line among them (skipped).
std::string write_facts(const fs::path& dir) {
  return write_text(dir / "facts.txt",
                    kFacts[0] + "\n" + kFacts[1] + "\n\n" + kFacts[2] + "\n" + kFacts[3] + "\n");
}

// 16 entries of 16 tokens, 3 of them frozen (freeze_ratio 0.2), filled from `bank`.
json explicit_memory(const std::string& bank) {
  return {{"mechanism", "explicit"}, {"segments", 2}, {"bank_entries", 16},
          {"entry_length", 16},      {"key_dim", 16}, {"bank", bank}};
}

// Trains `memory` on the tiny corpus for `steps` into dir/NAME and returns the run directory.
fs::path train_run(const fs::path& dir, const std::string& name, const json& memory,
                   int64_t steps) {
  const std::string config =
      test::write_json(dir / (name + ".json"), test::tiny_config(memory, steps));
  const fs::path run = dir / name;
  std::ostringstream log;
  run_train(test::train_options(config, run), log);
  return run;
}

// Greedy `mnemo sample` of `max_tokens` after `prompt` from the run's checkpoint.
SampleOptions greedy_sample(const fs::path& run, const std::string& prompt, int64_t max_tokens) {
  SampleOptions o;
  o.checkpoint = run.string();
  o.prompt = prompt;
  o.max_tokens = max_tokens;
  o.temperature = 0;
  return o;
}

std::vector<std::string> bank_texts(const LoadedSegmentCheckpoint& ckpt, int64_t count) {
  const ExplicitLM& lm = explicit_lm(*ckpt.lm, "test");
  std::vector<std::string> texts;
  for (int64_t e = 0; e < count; ++e) texts.push_back(ckpt.tokenizer->decode(lm.bank().entry(e)));
  return texts;
}

}  // namespace

TEST_CASE("explicit run: memory.bank fills the bank; checkpoints carry it; resume is exact") {
  ExplicitScratchDir dir;
  const std::string facts = write_facts(dir.path);
  const fs::path run = train_run(dir.path, "run", explicit_memory(facts), 20);
  const std::vector<double> losses = test::step_losses(test::read_metrics(run));
  REQUIRE(losses.size() == 20);
  for (double loss : losses) CHECK(std::isfinite(loss));
  {
    const LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(run.string());
    CHECK(bank_texts(ckpt, 4) == kFacts);
    const ExplicitLM& lm = explicit_lm(*ckpt.lm, "test");
    CHECK(lm.bank().is_free(4));
    CHECK(lm.bank().frozen() == 3);
    CHECK(lm.bank().clock() == 4);  // four writes
  }
  const std::string weights = io::read_file((run / "latest" / "model.safetensors").string());

  // A resumed run takes its bank from the checkpoint: the file, changed now, is not read again.
  write_text(facts, "something else entirely\n");
  const std::vector<double> resumed =
      test::resume_after_crash(run, "step-00000010", "step-00000020");
  REQUIRE(resumed.size() == 20);
  for (size_t i = 0; i < 20; ++i) {
    CAPTURE(i);
    CHECK(resumed[i] == losses[i]);  // bitwise
  }
  CHECK(io::read_file((run / "latest" / "model.safetensors").string()) == weights);
  CHECK(bank_texts(load_segment_checkpoint(run.string()), 4) == kFacts);
}

TEST_CASE("explicit run: a bad memory.bank is an error naming the key and the file") {
  ExplicitScratchDir dir;
  memory::MemoryBank small(3, 16);  // 9 entries: the model's bank has 16
  const std::string bank_file = (dir.path / "small.safetensors").string();
  save_bank(bank_file, small);
  const std::string long_line = write_text(dir.path / "long.txt", "short\n" + std::string(60, 'x'));
  const std::pair<std::string, std::string> cases[] = {
      {bank_file, "bank_entries is 16 and entry_length 16"},
      {long_line, "line 2:"},
      {(dir.path / "missing.txt").string(), "missing.txt"}};
  int i = 0;
  for (const auto& [bank, says] : cases) {
    CAPTURE(bank);
    std::string message;
    try {
      train_run(dir.path, fmt::format("run{}", i++), explicit_memory(bank), 2);
    } catch (const Error& e) {
      message = e.what();
    }
    CHECK(message.find("'memory.bank'") != std::string::npos);
    CHECK(message.find(bank) != std::string::npos);
    CHECK(message.find(says) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
}

TEST_CASE("explicit run: sample --show-retrieval prints what each position read") {
  ExplicitScratchDir dir;
  const fs::path run = train_run(dir.path, "run", explicit_memory(write_facts(dir.path)), 4);
  SampleOptions o = greedy_sample(run, "the cat", 4);
  o.show_retrieval = true;
  std::ostringstream out;
  run_sample(o, out);
  const std::string text = out.str();
  CAPTURE(text);
  CHECK(text.starts_with("the cat"));
  const size_t header = text.find("retrieval, memory layer 1 (");
  REQUIRE(header != std::string::npos);

  // The rows of the prompt's positions against one forward of the prompt: same entries, alphas.
  LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(run.string());
  ExplicitLM& lm = explicit_lm(*ckpt.lm, "test");
  std::vector<int64_t> prompt{ckpt.tokenizer->eos_id()};
  for (int32_t id : ckpt.tokenizer->encode(o.prompt)) prompt.push_back(id);
  {
    NoGradGuard no_grad;
    lm.forward_segment(from_vector(prompt, {1, int64_t(prompt.size())}), lm.initial_state(1));
  }
  const std::vector<int64_t> selected = lm.last_retrieval().at(0).selected.to_vector<int64_t>();
  const std::vector<float> alpha = lm.last_retrieval().at(0).alpha.to_vector<float>();
  const std::regex row(R"(^ +(\d+) .* -> +(\d+)  alpha ([0-9.]+)  .*$)");
  std::istringstream rows(text.substr(text.find('\n', header) + 1));
  std::string line;
  size_t count = 0;
  while (std::getline(rows, line)) {
    std::smatch m;
    REQUIRE(std::regex_match(line, m, row));
    CHECK(std::stoul(m[1]) == count);
    CHECK(std::stol(m[2]) < 16);
    if (count < prompt.size()) {
      CHECK(std::stol(m[2]) == selected[count]);
      CHECK(std::stod(m[3]) == doctest::Approx(alpha[count]).epsilon(2e-3));
    }
    ++count;
  }
  CHECK(count >= prompt.size());  // the prompt's positions, then the generated ones read
  CHECK(count <= prompt.size() + 3);
}

TEST_CASE("explicit run: sample --bank-update adds the prompt's sentences in memory only") {
  CHECK(split_sentences("A b. C d!  E?\nF") == std::vector<std::string>{"A b.", "C d!", "E?", "F"});
  CHECK(split_sentences("Pi is 3.14. Wait...  what?!") ==
        std::vector<std::string>{"Pi is 3.14.", "Wait...", "what?!"});
  CHECK(split_sentences(" \n\n. \n").size() == 1);  // a lone "." is a sentence
  CHECK(split_sentences("").empty());

  ExplicitScratchDir dir;
  const fs::path run = train_run(dir.path, "run", explicit_memory(write_facts(dir.path)), 2);
  LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(run.string());
  ExplicitLM& lm = explicit_lm(*ckpt.lm, "test");
  std::ostringstream log;
  update_bank_from_prompt(lm, *ckpt.tokenizer, "cats nap. dogs dig!", memory::BankPolicy::fifo,
                          log);
  CHECK(ckpt.tokenizer->decode(lm.bank().entry(4)) == "cats nap.");
  CHECK(ckpt.tokenizer->decode(lm.bank().entry(5)) == "dogs dig!");
  CHECK(log.str().find("entries [4,5]") != std::string::npos);
  CHECK(log.str().find("LLMLingua") != std::string::npos);
  CHECK(test::error_message([&] {
          update_bank_from_prompt(lm, *ckpt.tokenizer, "ok. " + std::string(60, 'z') + ".",
                                  memory::BankPolicy::fifo, log);
        }).find("sentence 2") != std::string::npos);

  const std::string weights = io::read_file((run / "latest" / "model.safetensors").string());
  SampleOptions o = greedy_sample(run, "cats nap. dogs dig!", 2);
  o.bank_update = "similar";
  std::ostringstream out;
  run_sample(o, out);
  CHECK(out.str().starts_with(o.prompt));
  CHECK(io::read_file((run / "latest" / "model.safetensors").string()) == weights);
  o.bank_update = "random";
  CHECK(test::error_message([&] { run_sample(o, out); }).find("'random'") != std::string::npos);
}

TEST_CASE("mnemo bank: show, add and edit rewrite a checkpoint's bank; others are errors") {
  ExplicitScratchDir dir;
  const fs::path run = train_run(dir.path, "run", explicit_memory(write_facts(dir.path)), 2);
  BankOptions o;
  o.checkpoint = run.string();
  o.entry = 1;
  std::ostringstream out;
  run_bank_show(o, out);
  const json shown = json::parse(out.str());
  CHECK(shown["text"] == kFacts[1]);
  CHECK(shown["frozen"] == true);
  CHECK(shown["free"] == false);
  CHECK(shown["written"] == 2);
  CHECK(shown["tokens"].size() >= 3);

  // add: free slots after the frozen part first (4 and 5), then fifo replaces the oldest.
  std::vector<std::string> lines;
  for (int i = 0; i < 12; ++i) lines.push_back(fmt::format("new fact {}", i));
  std::string file_text;
  for (const std::string& line : lines) file_text += line + "\n";
  o.text = write_text(dir.path / "new.txt", file_text);
  out.str("");
  run_bank_add(o, out);
  CHECK(json::parse(out.str())["slots"] == json::array({4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  o.text = write_text(dir.path / "two.txt", "one more\nand another\n");
  out.str("");
  run_bank_add(o, out);
  CHECK(json::parse(out.str())["slots"] == json::array({3, 4}));  // the oldest outside 0..2
  CHECK_FALSE(fs::exists(run / "latest" / "model.safetensors.tmp"));
  {
    const LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(run.string());
    const std::vector<std::string> texts = bank_texts(ckpt, 16);
    CHECK(texts[0] == kFacts[0]);
    CHECK(texts[3] == "one more");
    CHECK(texts[4] == "and another");
    CHECK(texts[15] == "new fact 11");
  }

  // similar: the slot whose representation is closest to the new entry's.
  o.text = write_text(dir.path / "similar.txt", "new fact 7\n");
  o.policy = "similar";
  int64_t expected = -1;
  {
    const LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(run.string());
    const ExplicitLM& lm = explicit_lm(*ckpt.lm, "test");
    const std::vector<float> fresh =
        lm.represent({ckpt.tokenizer->encode("new fact 7")}).to_vector<float>();
    double best = -2;
    for (int64_t e = 3; e < 16; ++e) {
      const std::vector<float> rep = lm.represent_entries({e}).to_vector<float>();
      double dot = 0, a = 0, b = 0;
      for (size_t c = 0; c < rep.size(); ++c) {
        dot += double(fresh[c]) * rep[c], a += double(fresh[c]) * fresh[c];
        b += double(rep[c]) * rep[c];
      }
      if (dot / std::sqrt(a * b) > best) best = dot / std::sqrt(a * b), expected = e;
    }
  }
  CHECK(expected == 11);  // the entry holding the same text
  out.str("");
  run_bank_add(o, out);
  CHECK(json::parse(out.str())["slots"] == json::array({expected}));

  // edit: one entry changes, frozen or not; the others stay.
  o.entry = 0;
  o.text = "the cat slept";
  out.str("");
  run_bank_edit(o, out);
  CHECK(json::parse(out.str())["text"] == "the cat slept");
  {
    const LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(run.string());
    const std::vector<std::string> texts = bank_texts(ckpt, 16);
    CHECK(texts[0] == "the cat slept");
    CHECK(texts[1] == kFacts[1]);
    CHECK(texts[3] == "one more");
  }
  o.entry = 16;
  CHECK(test::error_message([&] { run_bank_edit(o, out); }).find("--entry must be in [0, 16)") !=
        std::string::npos);
  o.entry = 2;
  o.text = std::string(60, 'q');
  CHECK(test::error_message([&] { run_bank_edit(o, out); }).find("more than the entry length 16") !=
        std::string::npos);

  const fs::path other =
      train_run(dir.path, "memorizing",
                {{"mechanism", "memorizing"}, {"capacity", 64}, {"top_k", 8}, {"segments", 2}}, 1);
  o.checkpoint = other.string();
  CHECK(test::error_message([&] { run_bank_show(o, out); })
            .find("memory mechanism is 'memorizing'; only an explicit memory checkpoint has a "
                  "bank") != std::string::npos);
}

TEST_CASE("explicit run: freeze_backbone moves the memory parts, never a backbone bit") {
  ExplicitScratchDir dir;
  json memory = explicit_memory(write_facts(dir.path));
  memory["freeze_backbone"] = true;
  const fs::path run = train_run(dir.path, "run", memory, 6);
  const LoadedSegmentCheckpoint trained = load_segment_checkpoint(run.string());
  // The same model as the run's step 0: weights drawn from the run's seed.
  const auto initial = make_run_segment_lm(trained.run_config, trained.run_config.train.seed);
  const auto before = initial->named_parameters();
  const auto after = trained.lm->named_parameters();
  REQUIRE(before.size() == after.size());
  int frozen = 0, moved = 0;
  std::vector<std::string> frozen_names;
  for (size_t i = 0; i < before.size(); ++i) {
    CAPTURE(before[i].first);
    const bool same = before[i].second.to_vector<float>() == after[i].second.to_vector<float>();
    if (!before[i].second.requires_grad()) {
      ++frozen;
      frozen_names.push_back(before[i].first);
      CHECK(same);
    } else if (before[i].first.find(".memory.") != std::string::npos) {
      moved += !same;
    }
  }
  CHECK(frozen > 0);
  CHECK(moved > 0);
  // The optimizer holds no moments for the frozen parameters.
  for (const auto& [name, tensor] :
       io::load_safetensors((run / "latest" / "optimizer.safetensors").string())) {
    for (const std::string& frozen_name : frozen_names) {
      CHECK_FALSE(name.starts_with(frozen_name + "."));
    }
  }
}
