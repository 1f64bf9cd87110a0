// A fresh temporary directory for one test, removed (with its contents) at scope exit
// (test::ScratchDir), with the text tests' file helpers.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include "support/scratch_dir.h"

namespace mnemo::text::testing {

class TempDir {
 public:
  std::string file(const std::string& name) const { return (dir_.path / name).string(); }
  std::string path() const { return dir_.path.string(); }
  // Writes bytes to name (creating parent folders) and returns its path.
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::filesystem::path p = dir_.path / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << bytes;
    return p.string();
  }

 private:
  mnemo::test::ScratchDir dir_{"mnemo_text_test"};
};

}  // namespace mnemo::text::testing
