// Skipping a test case that cannot run here, so that ctest reports it "Skipped", not "Passed".
//
//   TEST_CASE("gemm_f32: ...") {
//     if (!cpu::gemm_f32_available()) return test::skip("this CPU has no AVX2 and FMA");
//     ...
//   }
//
// skip() prints the reason (a doctest MESSAGE) and marks the running case skipped. ctest runs
// one doctest case per process (cmake/DoctestCases.cmake); the runner's main
// (tests/doctest_main.cpp) exits kSkipped when every case it ran was skipped and none failed,
// and ctest maps that exit code to "Skipped" (SKIP_RETURN_CODE). A case registered with
// doctest's `* doctest::skip(true)` decorator counts as skipped too (it does not run at all).
#pragma once

#include <string_view>

namespace mnemo::test {

inline constexpr int kSkipped = 77;  // ctest's SKIP_RETURN_CODE for every per-case test

void skip(std::string_view reason);

// For the runner's main: whether this run selected test cases and skipped all of them.
bool every_case_skipped();

}  // namespace mnemo::test
