// The CUDA backend's memory layer on a real GPU: allocation, copies host <-> device and
// device <-> device for every dtype (strided and converting ones too), element access,
// allocation errors that name the device and the size, and the caching allocator serving a
// repeated step without calling the driver.
// Runs only when a GPU is visible (tests/cuda/main.cpp); the no-GPU behaviour of the same
// build is tested in test_cuda_without_gpu.cpp.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/backend.h"
#include "cuda/allocator.h"
#include "cuda/runtime.h"

namespace mnemo {
namespace {

const Device kGpu = Device::cuda(0);

// n values with a pattern that differs per element and is exact in every dtype (small
// integers; for bool, alternating 0/1), so a copy that drops, reorders or truncates elements
// shows up.
std::vector<double> pattern(int64_t n, DType dtype) {
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    values[size_t(i)] = dtype == DType::boolean ? double(i % 3 == 0) : double((i * 7) % 61) - 30;
  }
  return values;
}

}  // namespace

TEST_CASE("cuda: the backend is registered and a device is visible") {
  CHECK(has_backend(DeviceType::cuda));
  CHECK(backend_for(kGpu).name() == "cuda");
  CHECK(cuda::device_count() >= 1);
  CHECK(cuda::no_device_reason().empty());
  CHECK(cuda::describe_devices().find("sm_") != std::string::npos);
}

TEST_CASE("cuda: round trip host -> device -> host keeps every value, every dtype") {
  const std::vector<Shape> shapes = {{1}, {7}, {3, 5}, {2, 3, 4}, {1024, 257}};
  for (DType dtype :
       {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::boolean}) {
    for (const Shape& shape : shapes) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(shape));
      const std::vector<double> values = pattern(numel(shape), dtype);
      Tensor host = from_vector(values, shape, {dtype});
      Tensor device = to(host, kGpu);
      CHECK(device.device() == kGpu);
      CHECK(device.dtype() == dtype);
      CHECK(device.shape() == shape);
      CHECK(device.data_ptr() != host.data_ptr());
      Tensor back = to(device, Device::cpu());
      CHECK(back.device().is_cpu());
      CHECK(back.to_vector<double>() == values);
    }
  }
}

TEST_CASE("cuda: device -> device copies on one GPU") {
  const std::vector<double> values = pattern(1000, DType::f32);
  Tensor a = to(from_vector(values, {10, 100}), kGpu);
  Tensor b = clone(a);  // a device-to-device copy into fresh memory
  CHECK(b.device() == kGpu);
  CHECK(b.data_ptr() != a.data_ptr());
  // Overwrite a from the host; b must keep its own copy.
  copy_(a, from_vector(pattern(1000, DType::i32), {10, 100}));
  CHECK(b.to_vector<double>() == values);
  Tensor c = Tensor::empty({10, 100}, DType::f32, kGpu);
  copy_(c, b);
  synchronize(kGpu);
  CHECK(c.to_vector<double>() == values);
}

TEST_CASE("cuda: copies between two GPUs" * doctest::skip(cuda::device_count() < 2)) {
  const std::vector<double> values = pattern(4096, DType::f32);
  Tensor a = to(from_vector(values, {4096}), kGpu);
  Tensor b = to(a, Device::cuda(1));
  CHECK(b.device() == Device::cuda(1));
  CHECK(b.to_vector<double>() == values);
}

TEST_CASE("cuda: element access reads through the device") {
  Tensor t = to(from_vector(std::vector<double>{1.5, -2.25, 8}, {3}), kGpu);
  CHECK(t.at({1}) == -2.25);
  CHECK(to(narrow(t, 0, 2, 1), Device::cpu()).item() == 8);
}

TEST_CASE("cuda: strided and converting copies across devices") {
  const std::vector<double> values = pattern(12, DType::f32);
  Tensor host = from_vector(values, {3, 4});
  SUBCASE("a transposed host source") {
    Tensor dst = Tensor::empty({4, 3}, DType::f32, kGpu);
    copy_(dst, transpose(host, 0, 1));
    CHECK(dst.to_vector<double>() == transpose(host, 0, 1).to_vector<double>());
  }
  SUBCASE("into a transposed device view") {
    Tensor buffer = Tensor::empty({4, 3}, DType::f32, kGpu);
    copy_(transpose(buffer, 0, 1), host);
    CHECK(transpose(buffer, 0, 1).to_vector<double>() == values);
  }
  SUBCASE("a dtype conversion on the way up and down") {
    Tensor dst = Tensor::empty({3, 4}, DType::f16, kGpu);
    copy_(dst, host);
    CHECK(dst.to_vector<double>() == values);  // small integers are exact in f16
    Tensor back = Tensor::empty({3, 4}, DType::f64);
    copy_(back, dst);
    CHECK(back.to_vector<double>() == values);
  }
  SUBCASE("a broadcast device source into a host tensor") {
    Tensor row = to(from_vector(std::vector<double>{1, 2, 3, 4}, {1, 4}), kGpu);
    Tensor back = Tensor::empty({3, 4}, DType::i64);
    copy_(back, expand(row, {3, 4}));
    CHECK(back.to_vector<double>() == std::vector<double>{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4});
  }
  SUBCASE("larger than the staging buffers, both ways") {
    const int64_t n = (int64_t(20) << 20) / 4 + 123;  // 20 MiB of f32 and a ragged end
    Tensor big = arange(double(0), double(n), 1, {DType::f32});
    Tensor back = to(to(big, kGpu), Device::cpu());
    CHECK(back.to_vector<float>() == big.to_vector<float>());
  }
}

TEST_CASE("cuda: allocation errors name the device and the size") {
  SUBCASE("a device index that is not visible") {
    const Device missing = Device::cuda(cuda::device_count());
    CHECK_THROWS_WITH_AS(Tensor::empty({4}, DType::f32, missing),
                         doctest::Contains((missing.str() + " is not available").c_str()), Error);
  }
  SUBCASE("more memory than any GPU has") {
    const int64_t elements = int64_t(1) << 48;  // 1 PiB of f32
    const std::string expected = "out of memory allocating " + std::to_string(elements * 4);
    CHECK_THROWS_WITH_AS(Tensor::empty({elements}, DType::f32, kGpu),
                         doctest::Contains(expected.c_str()), Error);
    CHECK_THROWS_WITH_AS(Tensor::empty({elements}, DType::f32, kGpu),
                         doctest::Contains("on cuda:0: tensors hold"), Error);
    // The failed allocation left no sticky error: the device still works.
    Tensor t = to(from_vector(std::vector<double>{3}, {1}), kGpu);
    CHECK(t.item() == 3);
  }
}

TEST_CASE("cuda: the caching allocator serves a repeated step without the driver") {
  auto step = [] {
    std::vector<Tensor> live;
    for (int64_t n : {1, 100, 4096, 300000, 1 << 20, 3 << 20}) {
      live.push_back(Tensor::empty({n}, DType::f32, kGpu));
    }
  };
  step();  // warms the cache
  const cuda::MemoryStats before = cuda::memory_stats(0);
  for (int i = 0; i < 5; ++i) step();
  const cuda::MemoryStats after = cuda::memory_stats(0);
  CHECK(after.device_mallocs == before.device_mallocs);
  CHECK(after.cache_hits == before.cache_hits + 5 * 6);
  CHECK(after.allocated_bytes == before.allocated_bytes);
  CHECK(after.reserved_bytes >= after.peak_allocated_bytes - before.peak_allocated_bytes);
  {
    Tensor held = Tensor::empty({1 << 20}, DType::f32, kGpu);
    CHECK(cuda::memory_stats(0).allocated_bytes ==
          after.allocated_bytes + int64_t(cuda::size_class(4 << 20)));
  }
  cuda::empty_cache(0);
  const cuda::MemoryStats emptied = cuda::memory_stats(0);
  CHECK(emptied.reserved_bytes == emptied.allocated_bytes);
  CHECK(emptied.device_frees > after.device_frees);
  CHECK(cuda::describe_memory(0).find("cuda:0 memory:") == 0);
}

}  // namespace mnemo
