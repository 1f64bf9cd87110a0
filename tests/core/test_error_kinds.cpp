// Error kinds (core/error.h): bad input is an ErrorKind::input Error, a broken invariant of
// mnemo's own code an InternalError, a failure of the machine a SystemError, and each keeps
// its kind when rethrown with more context. Tests assert the kind, not message substrings.
#include <doctest/doctest.h>

#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"

using namespace mnemo;

namespace {

// The kind of the Error that f throws; fails the test if it throws none or something else.
template <class F>
ErrorKind kind_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  } catch (...) {
    FAIL("threw something that is not a mnemo::Error");
  }
  FAIL("threw nothing");
  return ErrorKind::input;
}

// A backend with no ops: every op falls to Backend's default.
class NoOpsBackend final : public Backend {
 public:
  std::string_view name() const override { return "no-ops"; }
  Allocator* allocator(Device) override { return nullptr; }
};

}  // namespace

TEST_CASE("error kinds: bad input is an input error, exit status 2") {
  const Tensor a = zeros({4, 3}), b = zeros({5, 2});
  CHECK(kind_of([&] { core::matmul(a, b); }) == ErrorKind::input);
  CHECK(kind_of([&] { core::softmax(a, 7); }) == ErrorKind::input);  // no dim 7
  CHECK(kind_of([&] { dtype_from_name("f33"); }) == ErrorKind::input);
  CHECK_THROWS_AS(core::matmul(a, b), Error);
  CHECK(exit_status(ErrorKind::input) == 2);
}

TEST_CASE("error kinds: broken invariants of mnemo's own code are InternalErrors, exit 1") {
  // A kind value past the end of its enum can only come from a bug.
  CHECK_THROWS_AS(op_name(UnaryOp::count), InternalError);
  CHECK_THROWS_AS(op_name(BackendOp::count), InternalError);
  CHECK_THROWS_AS(dtype_size(DType(99)), InternalError);
  // A backend that lacks an op: a limit of mnemo's implementation, not the caller's fault.
  // The default methods name the call as the profiler does (the kind; log_softmax).
  NoOpsBackend none;
  const Tensor x = ones({2}), out = zeros({2});
  CHECK(kind_of([&] { none.unary(UnaryOp::exp, {}, x, out); }) == ErrorKind::internal);
  CHECK_THROWS_WITH_AS(none.unary(UnaryOp::exp, {}, x, out),
                       "exp: not implemented on cpu (backend no-ops)", InternalError);
  CHECK_THROWS_WITH_AS(none.softmax(x, 0, true, out),
                       "log_softmax: not implemented on cpu (backend no-ops)", InternalError);
  CHECK(exit_status(ErrorKind::internal) == 1);
}

TEST_CASE("error kinds: the macros and helpers raise the kind they name") {
  CHECK_THROWS_AS(MNEMO_ASSERT(1 + 1 == 3, "arithmetic: {}", 3), InternalError);
  CHECK(kind_of([] { MNEMO_CHECK(false, "x: bad {}", 1); }) == ErrorKind::input);
  CHECK_NOTHROW(MNEMO_ASSERT(true, "never"));
  CHECK_NOTHROW(MNEMO_CHECK(true, "never"));
  CHECK_THROWS_AS(fail_system("disk: {} bytes not written", 12), SystemError);
  CHECK_THROWS_WITH_AS(fail_internal("grid of {} blocks", 5), "grid of 5 blocks", InternalError);
  for (ErrorKind kind : {ErrorKind::input, ErrorKind::internal, ErrorKind::system}) {
    CAPTURE(std::string(error_kind_name(kind)));
    CHECK(kind_of([&] { throw_error(kind, "m"); }) == kind);
    // More context keeps the kind.
    try {
      throw_error(kind, "inner");
    } catch (const Error& e) {
      CHECK(kind_of([&] { rethrow_with(e, "outer: {}", e.what()); }) == kind);
      CHECK_THROWS_WITH(rethrow_with(e, "outer: {}", e.what()), "outer: inner");
    }
  }
  CHECK(exit_status(ErrorKind::system) == 1);
}
