// Run metrics: the metrics.jsonl log, the loss chart, and the terminal progress line.
//
// DIR/metrics.jsonl holds one compact JSON object per line, appended and flushed as training
// goes: {"step": 10, "loss": 3.2, "lr": 0.0003, ...} per step and {"step": 100, "val_loss": ...}
// per evaluation. On --resume from step S the trainer first calls truncate_after(path, S), so
// the lines of steps that the resumed run will redo are not duplicated.
//
// The chart (write_loss_svg) and the progress line (Progress) are declared in loss_svg.h and
// progress.h, included here so that one header serves the trainer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/io/loss_svg.h"
#include "train/io/progress.h"

namespace mnemo::io {

class MetricsLog {
 public:
  // Opens (creating DIR and the file if needed) DIR/metrics.jsonl for appending.
  explicit MetricsLog(const std::string& dir);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends record as one compact line and flushes it (NaN/inf become null: valid JSON).
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

  // Rewrites path (atomically) without the lines whose "step" is greater than step, and
  // without lines that do not parse (a line torn by a crash). Lines without a "step" stay.
  // A missing file is not an error. Call it before opening a MetricsLog on the file.
  static void truncate_after(const std::string& path, int64_t step);

  // Every line that parses as a JSON object (torn lines are skipped); [] if the file is
  // missing. For rebuilding the loss curves of a resumed run.
  static std::vector<nlohmann::json> read(const std::string& path);

 private:
  std::string path_;
  FILE* file_ = nullptr;
};

}  // namespace mnemo::io
