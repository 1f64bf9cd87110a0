// The CPU caching allocator behind every CPU tensor (its counters and controls are declared
// in core/cpu/allocator_stats.h).
//
// A training step allocates the same activations and gradients every step. Fresh memory from
// the C library is expensive for large blocks (glibc mmaps them, and each first touch of a
// 4 KiB page faults: ~150 ms per step for the demo model), so freed blocks are kept in a free
// list per size class and handed out again:
//   - a request is rounded up to its class (allocation_size_class): 64-byte multiples up to
//     1 MiB (small tensors repeat exact sizes), then four classes per power of two, so a
//     block is at most 25% larger than asked for and a reused block always fits;
//   - a freed block goes to its class's list; if that would push the cache past its limit
//     (1 GiB by default; set_cache_limit, or MNEMO_CPU_CACHE_LIMIT_MB in the environment, where
//     0 turns caching off), the cache is emptied first, so it stays bounded;
//   - if the system is out of memory, the cache is emptied and the request retried.
// Blocks are 64-byte aligned (a cache line; enough for AVX-512 loads). Memory is never
// zeroed: tensors are uninitialised (factories fill explicitly). Setting the environment
// variable MNEMO_CPU_ALLOC_FILL=1 fills every block handed out with 0xFF bytes (NaN in every
// float dtype) to expose code that reads memory it never wrote. Under AddressSanitizer the
// cached blocks are poisoned, so a use after free is still reported.
// One mutex guards the lists and counters; it is held for a hash lookup and a vector pop.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/cpu/allocator_stats.h"
#include "core/cpu/cpu_backend.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MNEMO_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define MNEMO_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define MNEMO_POISON(p, n) ((void)(p), (void)(n))
#define MNEMO_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace mnemo::cpu {

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kExactClassLimit = size_t(1) << 20;  // 64-byte classes up to here

class CachingAllocator final : public Allocator {
 public:
  CachingAllocator() {
    const char* fill = std::getenv("MNEMO_CPU_ALLOC_FILL");
    fill_ = fill != nullptr && fill[0] != '\0' && fill[0] != '0';
    stats_.cache_limit_bytes = size_t(1) << 30;
    if (const char* limit = std::getenv("MNEMO_CPU_CACHE_LIMIT_MB")) {
      char* end = nullptr;
      const unsigned long long mb = std::strtoull(limit, &end, 10);
      if (end != limit && *end == '\0') stats_.cache_limit_bytes = size_t(mb) << 20;
    }
  }
  ~CachingAllocator() override { release_cache(); }

  void* allocate(size_t bytes) override {
    const size_t size = allocation_size_class(bytes);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        stats_.cached_bytes -= size;
        ++stats_.cache_hits;
        MNEMO_UNPOISON(p, size);
      } else {
        p = std::aligned_alloc(kAlignment, size);
        if (p == nullptr) {  // out of memory: give the cache back and try once more
          release_cache_locked();
          p = std::aligned_alloc(kAlignment, size);
        }
        if (p == nullptr) fail_system("cpu allocator: out of memory allocating {} bytes", bytes);
        ++stats_.system_allocations;
      }
      ++stats_.allocations;
      stats_.allocated_bytes += size;
      stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
    }
    if (fill_) std::memset(p, 0xFF, size);
    return p;
  }

  // bytes: the size that was passed to allocate (StorageImpl keeps it).
  void deallocate(void* ptr, size_t bytes) override {
    if (ptr == nullptr) return;
    const size_t size = allocation_size_class(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.allocated_bytes -= size;
    if (size > stats_.cache_limit_bytes) {
      std::free(ptr);
      ++stats_.system_frees;
      return;
    }
    if (stats_.cached_bytes + size > stats_.cache_limit_bytes) release_cache_locked();
    MNEMO_POISON(ptr, size);
    free_[size].push_back(ptr);
    stats_.cached_bytes += size;
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void release_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cache_locked();
  }
  void set_limit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.cache_limit_bytes = bytes;
    if (stats_.cached_bytes > bytes) release_cache_locked();
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }

 private:
  void release_cache_locked() {
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) {
        MNEMO_UNPOISON(p, size);
        std::free(p);
        ++stats_.system_frees;
      }
    }
    free_.clear();
    stats_.cached_bytes = 0;
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  AllocatorStats stats_;
  bool fill_ = false;
};

CachingAllocator& caching_allocator() {
  // Never destroyed: tensors in other static objects may be freed after it would be.
  static CachingAllocator* allocator = new CachingAllocator();
  return *allocator;
}

}  // namespace

size_t allocation_size_class(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded <= kExactClassLimit) return rounded;
  // Four classes per power of two: 2^e * {1, 1.25, 1.5, 1.75}.
  size_t power = kExactClassLimit;
  while (power * 2 <= rounded) power *= 2;
  const size_t step = power / 4;
  return (rounded + step - 1) / step * step;
}

AllocatorStats allocator_stats() {
  return caching_allocator().stats();
}
void empty_cache() {
  caching_allocator().release_cache();
}
void set_cache_limit(size_t bytes) {
  caching_allocator().set_limit(bytes);
}
void reset_peak_stats() {
  caching_allocator().reset_peak();
}

Allocator* CpuBackend::allocator(Device) {
  return &caching_allocator();
}

}  // namespace mnemo::cpu
