// OptionReader (task_options.h): reading and checking a task's text options.
#include "memory/task_options.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/error.h"

namespace mnemo::memory {

OptionReader::OptionReader(std::string task, const TaskOptions& options)
    : task_(std::move(task)), options_(options) {}

const std::string* OptionReader::find(const std::string& key) {
  known_.push_back(key);
  const auto it = options_.find(key);
  return it == options_.end() ? nullptr : &it->second;
}

namespace {

// Whether `text` is exactly one number of type T, nothing before or after it.
template <typename T>
bool parse_number(const std::string& text, T& value) {
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  return !text.empty() && error == std::errc() && stop == end;
}

}  // namespace

int64_t OptionReader::integer(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) {
  const std::string* given = find(key);
  if (given == nullptr) return fallback;
  int64_t value = 0;
  MNEMO_CHECK(parse_number(*given, value) && value >= lo && value <= hi,
              "{}: --{} must be an integer in [{}, {}], got '{}'", task_, key, lo, hi, *given);
  return value;
}

double OptionReader::number(const std::string& key, double fallback, double lo, double hi) {
  const std::string* given = find(key);
  if (given == nullptr) return fallback;
  double value = 0;
  MNEMO_CHECK(parse_number(*given, value) && std::isfinite(value) && value >= lo && value <= hi,
              "{}: --{} must be a number in [{}, {}], got '{}'", task_, key, lo, hi, *given);
  return value;
}

std::string OptionReader::text(const std::string& key, const std::string& fallback) {
  const std::string* given = find(key);
  return given == nullptr ? fallback : *given;
}

std::string OptionReader::choice(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& allowed) {
  const std::string value = text(key, fallback);
  MNEMO_CHECK(std::find(allowed.begin(), allowed.end(), value) != allowed.end(),
              "{}: --{} must be one of {}, got '{}'", task_, key, fmt::join(allowed, ", "), value);
  return value;
}

void OptionReader::finish() const {
  for (const auto& [key, value] : options_) {
    if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
    std::string takes;
    for (const auto& k : known_) takes += (takes.empty() ? "--" : ", --") + k;
    fail("{}: unknown option --{} (it takes {})", task_, key, takes);
  }
}

}  // namespace mnemo::memory
