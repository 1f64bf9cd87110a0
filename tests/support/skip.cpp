#include "skip.h"

#include <doctest/doctest.h>

#include <string>

namespace mnemo::test {

namespace {

struct SkipCounts {
  bool running = false;    // a test run started (not a query such as --list-test-cases)
  int started = 0;         // cases that ran
  int skipped_at_run = 0;  // of those, cases that called skip()
  bool current_skipped = false;
};

SkipCounts counts;

// Counts the cases that ran and those that called skip() (a doctest listener: it sees every
// run, prints nothing).
struct SkipListener : doctest::IReporter {
  explicit SkipListener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override { counts.running = true; }
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {
    ++counts.started;
    counts.current_skipped = false;
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {
    if (counts.current_skipped) ++counts.skipped_at_run;
  }
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

DOCTEST_REGISTER_LISTENER("mnemo_skips", 0, SkipListener);

void skip(std::string_view reason) {
  MESSAGE("skipped: ", std::string(reason));
  counts.current_skipped = true;
}

bool every_case_skipped() {
  // No case ran: the selected one carries doctest's skip decorator (or nothing matched).
  return counts.running && counts.started == counts.skipped_at_run;
}

}  // namespace mnemo::test
