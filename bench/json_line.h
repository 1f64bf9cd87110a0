// One JSON object per line on stdout: the output of every bench program (bench_core,
// bench_cuda, kernels), built with nlohmann::json so that strings are escaped once, correctly.
//
//   JsonLine("gemm").set("what", s.what).set("m", s.m).fixed("mnemo_ms", ms, 4).print();
//   -> {"bench":"gemm","what":"qkv forward","m":2048,"mnemo_ms":0.1234}
//
// Keys keep the order they were set in. Numbers are rounded to what the measurement supports
// (fixed decimals or significant digits); a value that is not finite prints as null.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mnemo::bench {

class JsonLine {
 public:
  explicit JsonLine(std::string_view bench) { json_["bench"] = bench; }

  // Any value nlohmann::json takes: strings, integers, bools, arrays.
  JsonLine& set(const std::string& key, nlohmann::ordered_json value) {
    json_[key] = std::move(value);
    return *this;
  }
  // value rounded to `decimals` places ({:.Nf}).
  JsonLine& fixed(const std::string& key, double value, int decimals) {
    return rounded(key, value, fmt::format("{:.{}f}", value, decimals));
  }
  // value rounded to `digits` significant digits ({:.Ng}).
  JsonLine& significant(const std::string& key, double value, int digits = 4) {
    return rounded(key, value, fmt::format("{:.{}g}", value, digits));
  }

  // Prints the line and flushes: a run cut short keeps its finished lines.
  void print() const {
    std::printf("%s\n", json_.dump().c_str());
    std::fflush(stdout);
  }

 private:
  JsonLine& rounded(const std::string& key, double value, const std::string& text) {
    json_[key] = std::isfinite(value) ? nlohmann::ordered_json(std::stod(text)) : nullptr;
    return *this;
  }

  nlohmann::ordered_json json_;
};

}  // namespace mnemo::bench
