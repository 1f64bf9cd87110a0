// test_cuda's main: asks the CUDA runtime for a GPU before running anything.
//
//   test_cuda                 with a GPU: every test case except the "without gpu" suite.
//                             without one: prints one line saying why, exits kSkipped, which
//                             ctest reports as skipped (SKIP_RETURN_CODE in tests/CMakeLists.txt).
//   test_cuda --without-gpu   the "without gpu" suite: what a CUDA build does on a machine
//                             with no GPU (clear errors, no crash). Skipped when a GPU is
//                             visible. This is the part CI (no GPU) exercises.
//
// Other arguments go to doctest (--test-case, --list-test-cases, --success, ...).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string_view>
#include <vector>

#include "cuda/runtime.h"

namespace {

constexpr int kSkipped = 77;  // the SKIP_RETURN_CODE registered with ctest
constexpr const char* kWithoutGpuSuite = "without gpu";

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool without_gpu = false;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--without-gpu") {
      without_gpu = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  const bool have_gpu = mnemo::cuda::device_count() > 0;
  if (without_gpu && have_gpu) {
    std::printf("CUDA no-GPU tests skipped: a GPU is visible\n");
    return kSkipped;
  }
  if (!without_gpu && !have_gpu) {
    std::printf("CUDA tests skipped: no GPU visible (%s)\n",
                mnemo::cuda::no_device_reason().c_str());
    return kSkipped;
  }
  doctest::Context context(int(args.size()), args.data());
  context.addFilter(without_gpu ? "test-suite" : "test-suite-exclude", kWithoutGpuSuite);
  return context.run();
}
