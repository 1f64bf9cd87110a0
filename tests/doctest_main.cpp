// The test runner's main for the per-layer binaries: doctest's own, so every binary takes
// --test-case, --list-test-cases, --success and the rest; and a run whose every case was
// skipped (tests/support/skip.h) exits kSkipped (77), which ctest reports as "Skipped".
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "support/skip.h"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int status = context.run();
  if (status == 0 && mnemo::test::every_case_skipped()) return mnemo::test::kSkipped;
  return status;
}
