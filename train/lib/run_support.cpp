// What the two trainers share (see run_support.h).
#include "train/lib/run_support.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "core/error.h"
#include "train/io/checkpoint_dir.h"
#include "train/io/metrics.h"
#include "train/text/corpus.h"
#include "train/text/dataset.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::atomic<bool> g_stop_requested{false};

extern "C" void request_stop(int) {
  g_stop_requested.store(true);
}

std::unique_ptr<text::Tokenizer> make_tokenizer(const DataSettings& data,
                                                const std::vector<std::string>& docs,
                                                std::ostream& log) {
  if (data.tokenizer == "byte") return std::make_unique<text::ByteTokenizer>();
  if (data.tokenizer == "bpe") {
    const auto start = Clock::now();
    auto tokenizer = std::make_unique<text::BpeTokenizer>(
        text::BpeTokenizer::train(docs, int32_t(data.vocab_size)));
    log << "tokenizer: byte-level BPE, " << tokenizer->vocab_size() << " ids, trained in "
        << fmt::format("{:.1f}", seconds_since(start)) << " s\n";
    return tokenizer;
  }
  return text::Tokenizer::load(data.tokenizer);
}

}  // namespace

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

StopSignals::StopSignals() {
  g_stop_requested.store(false);
  old_int_ = std::signal(SIGINT, request_stop);
  old_term_ = std::signal(SIGTERM, request_stop);
}

StopSignals::~StopSignals() {
  std::signal(SIGINT, old_int_);
  std::signal(SIGTERM, old_term_);
}

bool stop_requested() {
  return g_stop_requested.load();
}

std::string checkpoint_to_resume(const TrainOptions& options, std::ostream& log) {
  MNEMO_CHECK(!options.out_dir.empty(), "train: --out DIR is required");
  const fs::path out(options.out_dir);
  std::error_code error;
  fs::create_directories(out, error);  // here, so that an impossible --out fails first
  MNEMO_CHECK(!error && fs::is_directory(out, error),
              "train: cannot create the run directory {}: {}", out.string(),
              error ? error.message() : "not a directory");
  const bool has_checkpoint = fs::exists(fs::symlink_status(out / "latest", error));
  if (has_checkpoint && !options.resume) {
    fail(
        "train: {} already holds a run ({}); pass --resume to continue it or choose another "
        "--out",
        out.string(), (out / "latest").string());
  }
  if (options.resume && has_checkpoint) return io::resolve_checkpoint(out.string());
  MNEMO_CHECK(!options.config_file.empty(),
              "train: {} has no checkpoint to resume ({} is missing) and no --config was given",
              out.string(), (out / "latest").string());
  if (options.resume) {
    log << "train: no checkpoint in " << out.string() << " yet; starting from the config\n";
  }
  return "";
}

int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return pages_resident * int64_t(::sysconf(_SC_PAGESIZE));
}

std::vector<std::string> config_differences(const json& run, const json& given,
                                            const std::string& prefix) {
  std::vector<std::string> out;
  if (!run.is_object() || !given.is_object()) {
    if (run != given)
      out.push_back(fmt::format("{}: {} in the run, {} given", prefix, run.dump(), given.dump()));
    return out;
  }
  for (const auto& [key, value] : given.items()) {
    if (!run.contains(key)) continue;
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if (path == "rl.init") continue;  // read at a run's start only (run_support.h)
    for (std::string& d : config_differences(run[key], value, path)) out.push_back(std::move(d));
  }
  for (const auto& [key, value] : run.items()) {  // a section (memory, rl) the config dropped
    if (!given.contains(key) && value.is_object()) {
      out.push_back(
          fmt::format("{}{}: in the run, not given", prefix.empty() ? "" : prefix + ".", key));
    }
  }
  return out;
}

void prepare_data(const RunConfig& rc, const fs::path& data_dir, std::ostream& log) {
  const std::string path = rc.data.path.empty() ? text::default_corpus_path() : rc.data.path;
  const std::vector<std::string> docs = text::read_documents(path);
  int64_t bytes = 0;
  for (const std::string& d : docs) bytes += int64_t(d.size());
  log << "corpus: " << path << ", " << docs.size() << " documents, " << bytes << " bytes\n";
  auto tokenizer = make_tokenizer(rc.data, docs, log);
  MNEMO_CHECK(tokenizer->vocab_size() <= rc.model.vocab_size,
              "config: the tokenizer has {} ids but model.vocab_size is {}",
              tokenizer->vocab_size(), rc.model.vocab_size);
  fs::create_directories(data_dir);
  const auto start = Clock::now();
  const text::DatasetInfo info = text::prepare_dataset(docs, *tokenizer, rc.data.val_fraction,
                                                       rc.train.seed, data_dir.string());
  tokenizer->save((data_dir / "tokenizer.json").string());
  log << fmt::format("data: {} train tokens ({:.2f} bytes/token), {} val tokens, in {:.1f} s\n",
                     info.train_tokens, double(info.train_bytes) / double(info.train_tokens),
                     info.val_tokens, seconds_since(start));
}

optim::LrSchedule make_schedule(const TrainSettings& t) {
  optim::LrSchedule s;
  s.max_lr = t.lr;
  s.min_lr = t.min_lr;
  s.total_steps = t.decay_steps > 0 ? t.decay_steps : t.steps;
  // A short run (--steps 10) still works.
  s.warmup_steps = std::min(t.warmup_steps, s.total_steps);
  s.decay = optim::decay_from_name(t.decay);
  s.validate();
  return s;
}

History read_history(const fs::path& metrics_file,
                     const std::pair<std::string, std::string>& keys) {
  History h;
  if (!fs::exists(metrics_file)) return h;
  for (const json& j : io::MetricsLog::read(metrics_file.string())) {
    if (!j.is_object() || !j.contains("step")) continue;
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains(keys.first)) h.train.emplace_back(step, j[keys.first].get<double>());
    if (j.contains(keys.second)) h.val.emplace_back(step, j[keys.second].get<double>());
  }
  return h;
}

}  // namespace mnemo::train
