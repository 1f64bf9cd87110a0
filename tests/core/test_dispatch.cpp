// Dispatch: ops run on the backend of their inputs' device; a backend that lacks an op fails
// with an error naming the op and the device; mixing devices is an error.
//
// A fake backend stands in for a device here (tests/support/host_device.h: it keeps its memory
// on the host and implements only allocation, copy and fill), so this runs in CPU-only builds
// too.
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "support/host_device.h"
#include "support/skip.h"

using namespace mnemo;

TEST_CASE("ops dispatch to the backend of their inputs and name what is missing") {
  test::FakeCudaDevice fake("partial");
  Tensor x = full({2, 3}, 1.5, {DType::f32, Device::cuda(0)});
  CHECK(x.device() == Device::cuda(0));
  // Round trip through the fake device.
  Tensor back = core::to(core::to(arange(6, {DType::f32}), Device::cuda(0)), Device::cpu());
  CHECK(back.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  CHECK(x.to_vector<float>() == std::vector<float>(6, 1.5f));

  CHECK_THROWS_WITH_AS(core::exp(x), "exp: not implemented on cuda:0 (backend partial)", Error);
  CHECK_THROWS_WITH_AS(core::add(x, x), "add: not implemented on cuda:0 (backend partial)", Error);
  CHECK_THROWS_WITH_AS(core::sum(x), doctest::Contains("sum: not implemented on cuda:0"), Error);
  CHECK_THROWS_WITH_AS(core::add(x, ones({2, 3})),
                       doctest::Contains("add: tensors on different devices"), Error);
}

TEST_CASE("a device without a backend is a clear error") {
  if (has_backend(DeviceType::cuda)) return test::skip("this build registers a CUDA backend");
  CHECK_THROWS_WITH_AS(zeros({2}, {DType::f32, Device::cuda(0)}),
                       doctest::Contains("no CUDA backend"), Error);
}
