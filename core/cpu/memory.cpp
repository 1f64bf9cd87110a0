// CPU memory: the caching allocator behind every CPU tensor, copies with dtype conversion,
// fill, arange, and the thread-count controls.
//
// ---- The caching allocator ----
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
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/cpu/allocator_stats.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MNEMO_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define MNEMO_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define MNEMO_POISON(p, n) ((void)(p), (void)(n))
#define MNEMO_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace mnemo {

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void set_num_threads(int threads) {
  MNEMO_CHECK(threads >= 1, "set_num_threads: expected at least 1 thread, got {}", threads);
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

namespace cpu {

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
        MNEMO_CHECK(p != nullptr, "cpu allocator: out of memory allocating {} bytes", bytes);
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

template <typename Dst, typename Src>
void copy_typed(const Tensor& src, const Tensor& dst) {
  const Src* s = static_cast<const Src*>(src.data_ptr());
  Dst* d = static_cast<Dst*>(dst.data_ptr());
  for_each_row<2>(
      dst.shape(), {&src.strides(), &dst.strides()}, 1,
      [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
        const Src* sp = s + off[0];
        Dst* dp = d + off[1];
        if constexpr (std::is_same_v<Src, Dst>) {
          if (st[0] == 1 && st[1] == 1) {
            std::memcpy(dp, sp, size_t(n) * sizeof(Src));
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i) {
          dp[i * st[1]] = convert<Dst>(sp[i * st[0]]);
        }
      });
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

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  visit_dtype(dst.dtype(), "copy", [&](auto dst_tag) {
    using Dst = typename decltype(dst_tag)::type;
    visit_dtype(src.dtype(), "copy", [&](auto src_tag) {
      using Src = typename decltype(src_tag)::type;
      copy_typed<Dst, Src>(src, dst);
    });
  });
}

void CpuBackend::fill(const Tensor& dst, double value) {
  visit_dtype(dst.dtype(), "fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = convert<T>(value);
    T* d = static_cast<T*>(dst.data_ptr());
    for_each_row<1>(
        dst.shape(), {&dst.strides()}, 1,
        [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& st) {
          T* p = d + off[0];
          for (int64_t i = 0; i < n; ++i) p[i * st[0]] = v;
        });
  });
}

void CpuBackend::arange(const Tensor& out, double start, double step) {
  visit_dtype(out.dtype(), "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(out.data_ptr());
    // One fused multiply-add (one rounding), so every backend computes the same values.
    for (int64_t i = 0; i < out.numel(); ++i) p[i] = convert<T>(std::fma(double(i), step, start));
  });
}

CpuBackend& backend() {
  static CpuBackend instance;
  return instance;
}

}  // namespace cpu
}  // namespace mnemo
