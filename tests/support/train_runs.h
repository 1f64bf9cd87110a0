// Helpers for the tests that run whole trainings (tests/train): the options of a run, its
// metrics.jsonl read back (io::MetricsLog::read) with the per-step training losses, and a tiny
// run config on tests/data/tiny_corpus.txt.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "train/io/metrics.h"
#include "train/lib/commands.h"
#include "train/lib/trainer.h"

namespace mnemo::test {

inline train::TrainOptions train_options(const std::string& config,
                                         const std::filesystem::path& out, bool resume = false) {
  train::TrainOptions o;
  o.config_file = config;
  o.out_dir = out.string();
  o.resume = resume;
  return o;
}

// Every line of RUN/metrics.jsonl.
inline std::vector<nlohmann::json> read_metrics(const std::filesystem::path& run) {
  return io::MetricsLog::read((run / "metrics.jsonl").string());
}

// The "loss" of every step line, in order.
inline std::vector<double> step_losses(const std::vector<nlohmann::json>& metrics) {
  std::vector<double> losses;
  for (const nlohmann::json& m : metrics) {
    if (m.contains("loss")) losses.push_back(m["loss"].get<double>());
  }
  return losses;
}

// As if the run had been killed after its checkpoint `kept` (a step-* directory name): the newer
// checkpoint `dropped` removed and `latest` pointed back at `kept`; then `mnemo train
// --resume`. Returns the per-step losses of metrics.jsonl after it.
inline std::vector<double> resume_after_crash(const std::filesystem::path& run,
                                              const std::string& kept, const std::string& dropped) {
  std::filesystem::remove_all(run / dropped);
  std::filesystem::remove(run / "latest");
  std::filesystem::create_directory_symlink(kept, run / "latest");
  std::ostringstream log;
  train::run_train(train_options("", run, /*resume=*/true), log);
  return step_losses(read_metrics(run));
}

// tests/data/tiny_corpus.txt: next to this file's folder, or above the working directory
// (ctest runs inside the build tree).
inline std::string tiny_corpus() {
  const std::filesystem::path beside =
      std::filesystem::path(__FILE__).parent_path().parent_path() / "data/tiny_corpus.txt";
  if (beside.is_absolute() && std::filesystem::exists(beside)) return beside.string();
  for (std::filesystem::path dir = std::filesystem::current_path();; dir = dir.parent_path()) {
    if (std::filesystem::exists(dir / "tests/data/tiny_corpus.txt")) {
      return (dir / "tests/data/tiny_corpus.txt").string();
    }
    if (dir == dir.parent_path()) break;
  }
  FAIL("tests/data/tiny_corpus.txt not found from " << std::filesystem::current_path());
  return {};
}

// A run of the tiny corpus: a 2-layer model of width 32, BPE of 300 ids, batches of 4 x 16
// tokens on 2 CPU threads, evaluated and checkpointed every 10 steps; `memory` (unless null)
// is the memory section.
inline nlohmann::json tiny_config(const nlohmann::json& memory, int64_t steps = 30) {
  nlohmann::json config = {{"model",
                            {{"vocab_size", 320},
                             {"hidden_size", 32},
                             {"intermediate_size", 64},
                             {"num_hidden_layers", 2},
                             {"num_attention_heads", 4},
                             {"num_key_value_heads", 4},
                             {"max_position_embeddings", 32}}},
                           {"train",
                            {{"batch_size", 4},
                             {"seq_len", 16},
                             {"lr", 0.005},
                             {"min_lr", 0.0005},
                             {"warmup_steps", 5},
                             {"steps", steps},
                             {"eval_interval", 10},
                             {"eval_batches", 2},
                             {"checkpoint_interval", 10},
                             {"threads", 2},
                             {"device", "cpu"}}},
                           {"data",
                            {{"path", tiny_corpus()},
                             {"tokenizer", "bpe"},
                             {"vocab_size", 300},
                             {"val_fraction", 0.1}}}};
  if (!memory.is_null()) config["memory"] = memory;
  return config;
}

inline std::string write_json(const std::filesystem::path& file, const nlohmann::json& j) {
  std::ofstream(file) << j.dump(2);
  return file.string();
}

}  // namespace mnemo::test
