// Helpers for the tests that run whole trainings (tests/train): the options of a run, and its
// metrics.jsonl read back (io::MetricsLog::read) with the per-step training losses.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/io/metrics.h"
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

}  // namespace mnemo::test
