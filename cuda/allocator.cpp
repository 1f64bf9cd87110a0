// The caching device allocator of cuda/allocator.h.
#include "cuda/allocator.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

constexpr size_t kSmallAlignment = 512;
constexpr size_t kLargeThreshold = size_t(1) << 20;  // 1 MiB
constexpr int kStepsPerPowerOfTwo = 8;

std::string gib(int64_t bytes) { return fmt::format("{:.2f} GiB", double(bytes) / double(1 << 30)); }

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}

  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t cls = size_class(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    auto bin = free_.find(cls);
    if (bin != free_.end() && !bin->second.empty()) {
      ptr = bin->second.back();
      bin->second.pop_back();
      ++stats_.cache_hits;
    } else {
      ptr = device_malloc(bytes, cls);
    }
    stats_.allocated_bytes += int64_t(cls);
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
    return ptr;
  }

  // Runs from a Storage destructor: never throws, never calls the driver.
  void deallocate(void* ptr, size_t bytes) noexcept override {
    if (ptr == nullptr) return;
    const size_t cls = size_class(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    free_[cls].push_back(ptr);
    stats_.allocated_bytes -= int64_t(cls);
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void reset_peaks() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
    stats_.peak_reserved_bytes = stats_.reserved_bytes;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached();
  }

 private:
  // With mutex_ held.
  void* device_malloc(size_t bytes, size_t cls) {
    DeviceGuard guard(device_);
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, cls);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // out of memory is not sticky: clear it, free the cache, try again
      release_cached();
      status = cudaMalloc(&ptr, cls);
    }
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      MNEMO_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
      fail_system(
          "cuda allocator: out of memory allocating {} bytes ({}) on cuda:{}: tensors hold {}, "
          "{} reserved, the driver reports {} free of {}",
          bytes, gib(int64_t(bytes)), device_, gib(stats_.allocated_bytes),
          gib(stats_.reserved_bytes), gib(int64_t(free_bytes)), gib(int64_t(total_bytes)));
    }
    MNEMO_CUDA_CHECK(status);
    ++stats_.device_mallocs;
    stats_.reserved_bytes += int64_t(cls);
    stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
    return ptr;
  }

  // With mutex_ held. cudaFree waits for the device, so queued kernels finish first.
  void release_cached() {
    DeviceGuard guard(device_);
    for (auto& [cls, blocks] : free_) {
      for (void* ptr : blocks) {
        MNEMO_CUDA_CHECK(cudaFree(ptr));
        ++stats_.device_frees;
        stats_.reserved_bytes -= int64_t(cls);
      }
      blocks.clear();
    }
  }

  int device_;
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  MemoryStats stats_;
};

CachingAllocator& allocator_of(int device) {
  constexpr int kMaxDevices = 64;
  static std::array<std::unique_ptr<CachingAllocator>, kMaxDevices> allocators;
  static std::mutex mutex;
  MNEMO_CHECK(device >= 0 && device < std::min(kMaxDevices, device_count()),
              "cuda allocator: cuda:{} is not available ({} CUDA devices visible)", device,
              device_count());
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = allocators[size_t(device)];
  if (!slot) slot = std::make_unique<CachingAllocator>(device);
  return *slot;
}

}  // namespace

size_t size_class(size_t bytes) {
  if (bytes <= kLargeThreshold) {
    return std::max(kSmallAlignment, (bytes + kSmallAlignment - 1) / kSmallAlignment *
                                         kSmallAlignment);
  }
  const size_t power = std::bit_floor(bytes);  // 2^k <= bytes < 2^(k+1)
  const size_t step = power / kStepsPerPowerOfTwo;
  return (bytes + step - 1) / step * step;
}

Allocator& caching_allocator(int device) { return allocator_of(device); }

MemoryStats memory_stats(int device) { return allocator_of(device).stats(); }

void reset_peak_memory_stats(int device) { allocator_of(device).reset_peaks(); }

void empty_cache(int device) { allocator_of(device).empty_cache(); }

std::string describe_memory(int device) {
  const MemoryStats s = memory_stats(device);
  return fmt::format("cuda:{} memory: {} in tensors (peak {}), {} reserved (peak {}), {} cudaMalloc "
                     "call{}, {} served from the cache",
                     device, gib(s.allocated_bytes), gib(s.peak_allocated_bytes),
                     gib(s.reserved_bytes), gib(s.peak_reserved_bytes), s.device_mallocs,
                     s.device_mallocs == 1 ? "" : "s", s.cache_hits);
}

}  // namespace mnemo::cuda
