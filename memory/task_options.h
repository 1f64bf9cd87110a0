// Task options as `mnemo memory-bench` hands them to a task: the flags without their dashes,
// values kept as text ("gap" -> "2", "layout" -> "shuffled"). Each task reads the options it
// takes with an OptionReader, which checks every value and, at the end, that no option was
// left unread:
//
//   OptionReader read("recall", options);
//   pairs_ = read.integer("pairs", 8, 1, 32);        // the default when absent
//   layout_ = read.choice("layout", "grid", {"grid", "shuffled"});
//   read.finish();                                   // throws naming an unknown option
//
// Every error is a mnemo::Error (bad input) naming the task, the option and the value.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mnemo::memory {

using TaskOptions = std::map<std::string, std::string>;

class OptionReader {
 public:
  // `task` names the task in messages; `options` must outlive the reader.
  OptionReader(std::string task, const TaskOptions& options);

  int64_t integer(const std::string& key, int64_t fallback, int64_t lo, int64_t hi);
  double number(const std::string& key, double fallback, double lo, double hi);
  std::string text(const std::string& key, const std::string& fallback);
  std::string choice(const std::string& key, const std::string& fallback,
                     const std::vector<std::string>& allowed);
  // Throws naming the first option no reader asked for (and the options the task takes).
  void finish() const;

 private:
  const std::string* find(const std::string& key);  // records key as known; null when absent

  std::string task_;
  const TaskOptions& options_;
  std::vector<std::string> known_;
};

}  // namespace mnemo::memory
