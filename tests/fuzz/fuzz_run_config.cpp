// Fuzz target: run configs (train/lib/run_config.h). The first byte picks what the rest is:
//   0  a config file (--config): merged over the defaults, every key typed and checked
//   1  --set overrides, one "key=value" per line, applied over the defaults
//   2  an HF config.json, as a checkpoint carries it (llama_config_from_hf)
//   3  a trainer_state.json's run_config on --resume: overrides (after a NUL) applied to it,
//      then read as a run config
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_target.h"
#include "train/io/config.h"
#include "train/lib/run_config.h"

namespace {

std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mnemo;
  using nlohmann::json;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      const std::string path = fuzz::input_file(rest, "config.json");
      fuzz::expect_input_errors([&] { train::load_run_config(path); });
      break;
    }
    case 1: fuzz::expect_input_errors([&] { train::load_run_config("", lines_of(rest)); }); break;
    case 2: {
      const std::string path = fuzz::input_file(rest, "config.json");
      fuzz::expect_input_errors(
          [&] { train::llama_config_from_hf(io::load_json_file(path), path); });
      break;
    }
    case 3: {
      const size_t nul = rest.find('\0');
      const std::string path = fuzz::input_file(rest.substr(0, nul), "trainer_state.json");
      fuzz::expect_input_errors([&] {
        json config = io::load_json_file(path);
        if (nul != std::string_view::npos) {
          for (const std::string& line : lines_of(rest.substr(nul + 1))) {
            train::apply_run_override(config, line);
          }
        }
        train::run_config_from_json(config, path);
      });
      break;
    }
  }
  return 0;
}
