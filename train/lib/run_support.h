// Pieces of a training run that live outside the skeleton (train/lib/trainer.h): stopping on a
// signal, where a run starts (a checkpoint to resume or the config), the run's data
// preparation (tokenizer and token shards in RUN/data, train/lib/text_step.h), the
// learning-rate schedule of a config, and the loss curves read back from metrics.jsonl.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "optim/schedule.h"
#include "train/lib/run_config.h"
#include "train/lib/trainer.h"

namespace mnemo::train {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start);

// While alive, SIGINT and SIGTERM only set a flag (stop_requested()): the trainer finishes
// its step, writes a checkpoint and stops. The previous handlers come back on destruction.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  using Handler = void (*)(int);
  Handler old_int_, old_term_;
};
bool stop_requested();

// Where `mnemo train` starts: the checkpoint to resume (options.out_dir/latest with
// --resume), or "" to start from the config. Errors: no --out; a directory that already
// holds a run without --resume; nothing to resume and no --config. --resume before the first
// checkpoint was written (a crash early on) starts over from the config, which reproduces
// the same run (said on log).
std::string checkpoint_to_resume(const TrainOptions& options, std::ostream& log);

// The process's resident memory in bytes (/proc/self/statm; 0 where it cannot be read).
int64_t resident_bytes();

// The settings in which a config given beside --resume differs from the run's own: one line
// per leaf key, "train.lr: 0.01 in the run, 0.02 given". Keys the run's config lacks (added to
// mnemo after it started) are not differences, nor is rl.init: the weights an RL run starts
// from are read at its start only (a resume continues from the run's checkpoint, and `mnemo rl`
// refuses --init with --resume), so a resumed run's config rightly leaves it out.
std::vector<std::string> config_differences(const nlohmann::json& run, const nlohmann::json& given,
                                            const std::string& prefix = "");

// Reads the corpus (data.path, or the default corpus), trains or loads the tokenizer, and
// writes train.bin, val.bin, tokenizer.json and info.json into data_dir, logging sizes.
void prepare_data(const RunConfig& rc, const std::filesystem::path& data_dir, std::ostream& log);

// The schedule of train.lr, min_lr, warmup_steps (at most steps), steps and decay.
optim::LrSchedule make_schedule(const TrainSettings& t);

// The plotted points of a run so far, from its metrics.jsonl (so that a resumed run's plot is
// complete): (step, line[keys.first]) of the step lines and (step, line[keys.second]) of the
// validation lines ("loss" and "val_loss" for an LM). Empty if the file does not exist.
struct History {
  std::vector<std::pair<int64_t, double>> train, val;
};
History read_history(const std::filesystem::path& metrics_file,
                     const std::pair<std::string, std::string>& keys = {"loss", "val_loss"});

}  // namespace mnemo::train
