// A fresh temporary directory per test, removed with everything in it at the end
// (test::ScratchDir), with the io tests' string-path helpers.
#pragma once

#include <fstream>
#include <string>

#include "support/scratch_dir.h"

namespace mnemo::io::testing {

class TempDir {
 public:
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  mnemo::test::ScratchDir dir_{"mnemo_io_test"};
  std::string path_ = dir_.path.string();
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace mnemo::io::testing
