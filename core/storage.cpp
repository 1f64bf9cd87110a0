#include "core/storage.h"

#include "core/backend.h"

namespace mnemo {

StorageImpl::StorageImpl(size_t nbytes, Device device, Allocator* allocator)
    : nbytes_(nbytes), device_(device), allocator_(allocator) {
  data_ = nbytes > 0 ? allocator->allocate(nbytes) : nullptr;
}

StorageImpl::StorageImpl(void* data, size_t nbytes, Device device, std::function<void()> release)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)) {}

StorageImpl::~StorageImpl() {
  if (allocator_ != nullptr && data_ != nullptr) allocator_->deallocate(data_, nbytes_);
  if (release_) release_();
}

Storage make_storage(size_t nbytes, Device device) {
  return std::make_shared<StorageImpl>(nbytes, device, backend_for(device).allocator(device));
}

}  // namespace mnemo
