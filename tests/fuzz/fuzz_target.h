// What every fuzz target of tests/fuzz shares.
//
// A target is a libFuzzer entry point, LLVMFuzzerTestOneInput(data, size), that hands the bytes
// to one of mnemo's readers of outside files. The contract it checks is the one the CLI
// promises: bad bytes are an mnemo::Error of kind input (exit 2, one line naming the file),
// never a crash, a hang, another exception or a sanitizer report. Anything else aborts, which
// the fuzzer (or tests/fuzz/replay_main.cpp) reports with the input.
//
// The readers take paths, so the input goes through a file: input_file() writes it to a
// per-process scratch directory ($TMPDIR/mnemo-fuzz-PID/) and returns its path. After a crash
// that file holds the input that caused it.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace mnemo::fuzz {

inline std::filesystem::path scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::filesystem::path d = std::filesystem::path(tmp && *tmp ? tmp : "/tmp") /
                              ("mnemo-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// Writes bytes to SCRATCH/name and returns the path.
inline std::string input_file(std::string_view bytes, const std::string& name) {
  const std::filesystem::path path = scratch_dir() / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), std::streamsize(bytes.size()));
  return path.string();
}

[[noreturn]] inline void finding(const char* what, const char* message) {
  std::fprintf(stderr, "fuzz: %s: %s\n", what, message);
  std::fflush(stderr);
  std::abort();
}

// Runs fn: returning, or an input Error, is the contract kept; anything else is a finding.
template <class Fn>
void expect_input_errors(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::input) finding("an Error that is not of kind input", e.what());
  } catch (const std::exception& e) {
    finding("an exception that is not an mnemo::Error", e.what());
  } catch (...) {
    finding("an exception of unknown type", "");
  }
}

}  // namespace mnemo::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
