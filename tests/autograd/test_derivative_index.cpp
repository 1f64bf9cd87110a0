// The derivative index (autograd/ops.h) against the code, so that it cannot go stale:
//   - a rule cannot be recorded under a name the index lacks (autograd::record takes a
//     RuleName: a compile error), and TEST_GRADCHECK cannot name an op it lacks (likewise);
//   - every op of the index has exactly one `gradcheck: <op>` case (f64 central differences,
//     tests/support/gradcheck_cases.h), and that case fails unless its gradchecks went through
//     the op's rule (a rule that is no longer recorded shows there);
//   - every file the index names holds its op.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "autograd/ops.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using autograd::Derivative;
using autograd::derivatives;

namespace {

// The repository root (tests/CMakeLists.txt defines it).
const std::filesystem::path kRoot = MNEMO_SOURCE_DIR;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("derivative index: every op is listed once") {
  std::set<std::string_view> ops;
  for (const Derivative& d : derivatives) {
    CAPTURE(d.op);
    CHECK(ops.insert(d.op).second);
    CHECK(!d.math.empty());
  }
}

TEST_CASE("derivative index: every op has exactly one gradcheck case, every case an op") {
  std::map<std::string_view, int> cases;
  for (std::string_view op : test::gradcheck_ops()) ++cases[op];
  for (const Derivative& d : derivatives) {
    CHECK_MESSAGE(cases[d.op] == 1, "\"", d.op, "\" has ", cases[d.op],
                  " TEST_GRADCHECK cases; it needs one (tests/autograd/test_gradcheck_*.cpp)");
  }
  for (const auto& [op, count] : cases) {
    CHECK_MESSAGE(autograd::in_derivative_index(op), "gradcheck: ", op, " names no op");
  }
  CHECK(cases.size() == std::size(derivatives));
}

TEST_CASE("derivative index: every file it names holds its op") {
  REQUIRE_MESSAGE(std::filesystem::exists(kRoot / "autograd/ops.h"), "the sources are not at ",
                  kRoot.string());
  for (const Derivative& d : derivatives) {
    CAPTURE(d.op);
    CAPTURE(d.file);
    const std::string text = read_text(kRoot / d.file);
    REQUIRE_MESSAGE(!text.empty(), "cannot read ", (kRoot / d.file).string());
    if (d.kind == Derivative::rule) {
      // A rule records its name as a literal: record("mul", ...), unary_with_rule("exp", ...).
      CHECK(text.find('"' + std::string(d.op) + '"') != std::string::npos);
    } else {
      // A composite is a function defined there, written with other differentiable ops.
      CHECK(text.find(' ' + std::string(d.op) + "(const ") != std::string::npos);
    }
  }
}
