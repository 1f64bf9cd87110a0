// A CUDA build on a machine with no visible GPU (CI, laptops): the backend is registered,
// the runtime reports why there is no device, and every use of cuda:N is a mnemo::Error
// that says so — never a crash, never a silent CPU fallback. Run by `test_cuda --without-gpu`
// (tests/cuda/main.cpp), skipped when a GPU is visible.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "autograd/ops.h"
#include "core/backend.h"
#include "cuda/allocator.h"
#include "cuda/runtime.h"

namespace mnemo {

TEST_SUITE("without gpu") {
  TEST_CASE("cuda without gpu: the runtime reports no device and why") {
    CHECK(cuda::device_count() == 0);
    const std::string reason = cuda::no_device_reason();
    CHECK(reason.starts_with("cudaGetDeviceCount: "));
    CHECK(reason.size() > std::string("cudaGetDeviceCount: ").size());
    CHECK(cuda::describe_devices() == "no GPU visible: " + reason);
  }

  TEST_CASE("cuda without gpu: the backend is registered but every device is unavailable") {
    CHECK(has_backend(DeviceType::cuda));
    CHECK(backend_for(Device::cuda(0)).name() == "cuda");
    const std::string unavailable =
        "cuda:0 is not available (0 CUDA devices visible; " + cuda::no_device_reason() + ")";
    CHECK_THROWS_WITH_AS(Tensor::empty({3}, DType::f32, Device::cuda(0)),
                         doctest::Contains(unavailable.c_str()), Error);
    CHECK_THROWS_WITH_AS(to(from_vector(std::vector<double>{1, 2}, {2}), Device::cuda(0)),
                         doctest::Contains("cuda allocator: cuda:0 is not available"), Error);
    CHECK_THROWS_WITH_AS(synchronize(Device::cuda(1)),
                         doctest::Contains("synchronize: cuda:1 is not available"), Error);
  }

  TEST_CASE("cuda without gpu: even a tensor with no elements names the missing device") {
    // As in PyTorch, placing a tensor on a device checks the device, whatever its size.
    CHECK_THROWS_WITH_AS(Tensor::empty({0, 4}, DType::f32, Device::cuda(0)),
                         doctest::Contains("cuda:0 is not available"), Error);
  }

  TEST_CASE("cuda without gpu: the caching allocator's size classes") {
    // Below 1 MiB: multiples of 512 bytes.
    CHECK(cuda::size_class(1) == 512);
    CHECK(cuda::size_class(512) == 512);
    CHECK(cuda::size_class(513) == 1024);
    CHECK(cuda::size_class(size_t(1) << 20) == size_t(1) << 20);
    // Above: 8 classes per power of two, so a block wastes at most 1/8 of its request.
    CHECK(cuda::size_class((size_t(1) << 20) + 1) == (size_t(9) << 17));
    for (size_t bytes = 1; bytes < (size_t(1) << 34); bytes = bytes * 3 + 7) {
      const size_t cls = cuda::size_class(bytes);
      CAPTURE(bytes);
      CHECK(cls >= bytes);
      CHECK(double(cls - bytes) <= std::max(512.0, double(bytes) / 8));
      CHECK(cuda::size_class(cls) == cls);  // a class is its own class
    }
  }
}

}  // namespace mnemo
