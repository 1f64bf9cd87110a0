// Error kinds (core/error.h): bad input is an ErrorKind::input Error, a broken invariant of
// mnemo's own code an InternalError, a failure of the machine a SystemError, and each keeps
// its kind when rethrown with more context. Tests assert the kind, not message substrings.
#include <doctest/doctest.h>

#include <cstdlib>
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

class HostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override { return std::malloc(bytes); }
  void deallocate(void* p, size_t) override { std::free(p); }
};

// A backend with memory and nothing else: every op falls to Backend's default.
class MemoryOnlyBackend final : public Backend {
 public:
  std::string_view name() const override { return "memory-only"; }
  Allocator* allocator(Device) override { return &allocator_; }
  void fill(const Tensor& dst, double value) override {
    // dst lives in host memory: fill it through a CPU view of the same bytes.
    auto storage = std::make_shared<StorageImpl>(dst.storage()->data(), dst.storage()->nbytes(),
                                                 Device::cpu(), nullptr);
    backend_for(Device::cpu())
        .fill(Tensor::view_of(storage, dst.shape(), dst.strides(), dst.offset(), dst.dtype()),
              value);
  }

 private:
  HostAllocator allocator_;
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
  MemoryOnlyBackend partial;
  Backend* previous = has_backend(DeviceType::cuda) ? &backend_for(Device::cuda(0)) : nullptr;
  register_backend(DeviceType::cuda, &partial);
  const Tensor x = full({2}, 1.0, {DType::f32, Device::cuda(0)});
  CHECK(kind_of([&] { core::exp(x); }) == ErrorKind::internal);
  CHECK_THROWS_WITH_AS(core::exp(x), "exp: not implemented on cuda:0 (backend memory-only)",
                       InternalError);
  register_backend(DeviceType::cuda, previous);
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
