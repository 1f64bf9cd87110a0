// metrics.jsonl: append, truncate on resume, read back.
#include "train/io/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "train/io/files.h"

namespace mnemo::io {
namespace {

// Calls fn(parsed object) for every line of text that parses as a JSON object.
template <typename Fn>
void for_each_record(const std::string& text, Fn&& fn) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_discarded() && record.is_object()) fn(line, record);
    start = end + 1;
  }
}

}  // namespace

MetricsLog::MetricsLog(const std::string& dir) : path_(dir + "/metrics.jsonl") {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  file_ = std::fopen(path_.c_str(), "a");
  MNEMO_CHECK(file_ != nullptr, "metrics: cannot open '{}' for appending: {}", path_,
              std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsLog::write(const nlohmann::json& record) {
  std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  bool ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size();
  MNEMO_CHECK(ok && std::fflush(file_) == 0, "metrics: cannot write '{}': {}", path_,
              std::strerror(errno));
}

void MetricsLog::truncate_after(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return;
  std::string kept;
  for_each_record(read_file(path), [&](std::string_view line, const nlohmann::json& record) {
    auto it = record.find("step");
    if (it != record.end() && it->is_number()) {
      bool redone =
          it->is_number_integer() ? it->get<int64_t>() > step : it->get<double>() > double(step);
      if (redone) return;
    }
    kept.append(line);
    kept += '\n';
  });
  write_file_atomic(path, kept);
}

std::vector<nlohmann::json> MetricsLog::read(const std::string& path) {
  std::vector<nlohmann::json> records;
  if (!std::filesystem::exists(path)) return records;
  for_each_record(read_file(path), [&](std::string_view, const nlohmann::json& record) {
    records.push_back(record);
  });
  return records;
}

}  // namespace mnemo::io
