// A device backend for CPU-only tests: a stand-in for CUDA whose memory is host memory.
//
//   test::FakeCudaDevice fake("partial");  // while alive, cuda:0 tensors live on the host
//   Tensor x = full({2, 3}, 1.5, {DType::f32, Device::cuda(0)});  // allocation and fill work
//   core::exp(x);  // "exp: not implemented on cuda:0 (backend partial)"
//
// HostBackedDevice implements allocation, copy and fill only (copy and fill go through the CPU
// backend, which can reach the host memory it hands out), so every other op fails as it does
// on a backend that lacks it. Used by tests/core/test_dispatch.cpp (dispatch and its errors)
// and usable by any test that needs a second device without a GPU.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "core/backend.h"
#include "core/storage.h"
#include "core/tensor.h"

namespace mnemo::test {

class HostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override { return std::malloc(bytes); }
  void deallocate(void* p, size_t) override { std::free(p); }
};

class HostBackedDevice final : public Backend {
 public:
  explicit HostBackedDevice(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  Allocator* allocator(Device) override { return &allocator_; }
  void copy(const Tensor& src, const Tensor& dst) override {
    backend_for(Device::cpu()).copy(as_host(src), as_host(dst));
  }
  void fill(const Tensor& dst, double value) override {
    backend_for(Device::cpu()).fill(as_host(dst), value);
  }

  // t itself if on the CPU, else a CPU view of the same host memory.
  static Tensor as_host(const Tensor& t) {
    if (t.device().is_cpu()) return t;
    auto storage = std::make_shared<StorageImpl>(t.storage()->data(), t.storage()->nbytes(),
                                                 Device::cpu(), nullptr);
    return Tensor::view_of(storage, t.shape(), t.strides(), t.offset(), t.dtype());
  }

 private:
  std::string name_;
  HostAllocator allocator_;
};

// Registers a HostBackedDevice for cuda while alive, then restores what was registered.
struct FakeCudaDevice {
  explicit FakeCudaDevice(std::string name) : backend(std::move(name)) {
    register_backend(DeviceType::cuda, &backend);
  }
  ~FakeCudaDevice() { register_backend(DeviceType::cuda, previous); }
  FakeCudaDevice(const FakeCudaDevice&) = delete;
  FakeCudaDevice& operator=(const FakeCudaDevice&) = delete;

  Backend* previous = has_backend(DeviceType::cuda) ? &backend_for(Device::cuda(0)) : nullptr;
  HostBackedDevice backend;
};

}  // namespace mnemo::test
