// ScratchDir: a fresh directory under the system's temporary directory for one test, removed
// with everything in it when the test ends. Names carry the prefix, the process id and a
// counter, so parallel ctest processes and repeated cases never share one. write_text puts
// bytes into a file of it and returns the file's path.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

namespace mnemo::test {

struct ScratchDir {
  std::filesystem::path path;

  explicit ScratchDir(std::string_view prefix) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           (std::string(prefix) + "_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

inline std::string write_text(const std::filesystem::path& file, const std::string& text) {
  std::ofstream(file, std::ios::binary) << text;
  return file.string();
}

}  // namespace mnemo::test
