// Storage: a reference-counted block of bytes on one device. Tensors are views into a
// storage (shape, strides, offset); many tensors may share one storage.
//
// Memory comes from the Allocator of the storage's device. Each backend implements the
// Allocator interface (CPU: 64-byte aligned; CUDA: the caching allocator in cuda/).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "core/device.h"

namespace mnemo {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;  // throws mnemo::Error when out of memory
  virtual void deallocate(void* ptr, size_t bytes) = 0;
};

class StorageImpl {
 public:
  // Owns bytes from allocator, returned to it on destruction.
  StorageImpl(size_t nbytes, Device device, Allocator* allocator);
  // Wraps memory owned elsewhere (e.g. an mmap'ed file); release runs on destruction.
  StorageImpl(void* data, size_t nbytes, Device device, std::function<void()> release);
  ~StorageImpl();
  StorageImpl(const StorageImpl&) = delete;
  StorageImpl& operator=(const StorageImpl&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  std::function<void()> release_;
};

using Storage = std::shared_ptr<StorageImpl>;

// Allocates nbytes on device through that device's backend allocator.
Storage make_storage(size_t nbytes, Device device);

}  // namespace mnemo
