// The CPU caching allocator (core/cpu/allocator.cpp, counters in core/cpu/allocator_stats.h):
// size classes, reuse of freed blocks, stats that add up, the cache limit, empty_cache,
// alignment, and threads hammering allocate/free. Works under AddressSanitizer (cached
// blocks are poisoned there, and every block is written only while it is handed out).
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/cpu/allocator_stats.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"

using namespace mnemo;

namespace {

Allocator& cpu_allocator() {
  return *backend_for(Device::cpu()).allocator(Device::cpu());
}

// Starts each test from an empty cache with the default 1 GiB limit (whatever
// MNEMO_CPU_CACHE_LIMIT_MB says) and restores the previous limit afterwards.
struct CacheGuard {
  size_t saved_limit = cpu::allocator_stats().cache_limit_bytes;
  CacheGuard() {
    cpu::set_cache_limit(size_t(1) << 30);
    cpu::empty_cache();
  }
  ~CacheGuard() {
    cpu::set_cache_limit(saved_limit);
    cpu::empty_cache();
  }
};

}  // namespace

TEST_CASE("allocator: size classes are 64-byte multiples, then four per power of two") {
  CHECK(cpu::allocation_size_class(0) == 64);
  CHECK(cpu::allocation_size_class(1) == 64);
  CHECK(cpu::allocation_size_class(64) == 64);
  CHECK(cpu::allocation_size_class(65) == 128);
  CHECK(cpu::allocation_size_class(1 << 20) == 1 << 20);
  CHECK(cpu::allocation_size_class((1 << 20) + 1) == (1 << 20) + (1 << 18));
  CHECK(cpu::allocation_size_class(3 << 20) == 3 << 20);        // 1.5 * 2 MiB
  CHECK(cpu::allocation_size_class((3 << 20) + 1) == 7 << 19);  // 1.75 * 2 MiB
  // Every class holds its request, wastes at most 25%, and is a fixed point.
  for (size_t bytes = 1; bytes < (size_t(1) << 34); bytes = bytes * 3 / 2 + 7) {
    const size_t c = cpu::allocation_size_class(bytes);
    CHECK(c >= bytes);
    CHECK(c % 64 == 0);
    CHECK(double(c) <= std::max(64.0, 1.25 * double(bytes) + 64));
    CHECK(cpu::allocation_size_class(c) == c);
  }
}

TEST_CASE("allocator: a freed block is reused for the same class and stats add up") {
  CacheGuard guard;
  Allocator& a = cpu_allocator();
  const cpu::AllocatorStats s0 = cpu::allocator_stats();
  CHECK(s0.cached_bytes == 0);

  const size_t bytes = 3 << 20;  // a (2048, 384) f32 activation
  void* p = a.allocate(bytes);
  CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
  std::memset(p, 1, bytes);
  const cpu::AllocatorStats s1 = cpu::allocator_stats();
  CHECK(s1.allocated_bytes == s0.allocated_bytes + bytes);
  CHECK(s1.system_allocations == s0.system_allocations + 1);
  CHECK(s1.peak_allocated_bytes >= s1.allocated_bytes);

  a.deallocate(p, bytes);
  const cpu::AllocatorStats s2 = cpu::allocator_stats();
  CHECK(s2.allocated_bytes == s0.allocated_bytes);
  CHECK(s2.cached_bytes == bytes);
  CHECK(s2.reserved_bytes() == s0.allocated_bytes + bytes);

  // A request of a different size in the same class gets the same block, from the cache.
  void* q = a.allocate(bytes - 1000);
  CHECK(q == p);
  const cpu::AllocatorStats s3 = cpu::allocator_stats();
  CHECK(s3.system_allocations == s1.system_allocations);
  CHECK(s3.cache_hits == s2.cache_hits + 1);
  CHECK(s3.allocations == s2.allocations + 1);
  CHECK(s3.cached_bytes == 0);
  a.deallocate(q, bytes - 1000);

  // A different class does not take it.
  void* r = a.allocate(bytes * 2);
  CHECK(r != p);
  CHECK(cpu::allocator_stats().system_allocations == s1.system_allocations + 1);
  a.deallocate(r, bytes * 2);

  cpu::empty_cache();
  const cpu::AllocatorStats s4 = cpu::allocator_stats();
  CHECK(s4.cached_bytes == 0);
  CHECK(s4.system_frees == s3.system_frees + 2);
}

TEST_CASE("allocator: tensors of a repeated training step stop hitting the system") {
  CacheGuard guard;
  auto step = [] {
    std::vector<Tensor> activations;
    for (int64_t width : {128, 384, 768, 512}) activations.push_back(zeros({2048, width}));
    double total = 0;
    for (const Tensor& t : activations) total += core::sum(t).item();
    return total;
  };
  CHECK(step() == 0);
  const int64_t before = cpu::allocator_stats().system_allocations;
  for (int i = 0; i < 3; ++i) CHECK(step() == 0);  // zeros() fills reused (dirty) blocks
  CHECK(cpu::allocator_stats().system_allocations == before);
}

TEST_CASE("allocator: the cache stays under its limit and peak tracks the high-water mark") {
  CacheGuard guard;
  Allocator& a = cpu_allocator();
  const size_t block = 1 << 20;
  cpu::set_cache_limit(3 * block);
  cpu::reset_peak_stats();
  const size_t base = cpu::allocator_stats().allocated_bytes;
  std::vector<void*> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(a.allocate(block));
  CHECK(cpu::allocator_stats().peak_allocated_bytes == base + 5 * block);
  for (void* p : blocks) {
    a.deallocate(p, block);
    CHECK(cpu::allocator_stats().cached_bytes <= 3 * block);
  }
  CHECK(cpu::allocator_stats().cached_bytes > 0);
  // A block larger than the limit is never cached.
  void* big = a.allocate(8 * block);
  a.deallocate(big, 8 * block);
  CHECK(cpu::allocator_stats().cached_bytes <= 3 * block);
  // Lowering the limit releases at once.
  cpu::set_cache_limit(0);
  CHECK(cpu::allocator_stats().cached_bytes == 0);
  CHECK(cpu::allocator_stats().peak_allocated_bytes == base + 8 * block);
  cpu::reset_peak_stats();
  CHECK(cpu::allocator_stats().peak_allocated_bytes == cpu::allocator_stats().allocated_bytes);
}

TEST_CASE("allocator: threads hammering allocate and free keep the books consistent") {
  CacheGuard guard;
  Allocator& a = cpu_allocator();
  const cpu::AllocatorStats before = cpu::allocator_stats();
  constexpr int kThreads = 4, kRounds = 2000;
  std::atomic<int> corrupted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::pair<unsigned char*, size_t>> live;
      uint64_t state = 12345u + uint64_t(t);
      for (int i = 0; i < kRounds; ++i) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        const size_t bytes = 1 + size_t(state >> 33) % (1 << (state % 2 ? 12 : 21));
        auto* p = static_cast<unsigned char*>(a.allocate(bytes));
        // Each block carries its owner's tag; a block handed to two owners at once is caught.
        std::memset(p, t + 1, bytes);
        live.emplace_back(p, bytes);
        if (live.size() > 8 || state % 3 == 0) {
          auto [q, n] = live.front();
          for (size_t j = 0; j < n; j += 257) corrupted += q[j] != t + 1;
          corrupted += q[n - 1] != t + 1;
          a.deallocate(q, n);
          live.erase(live.begin());
        }
      }
      for (auto [q, n] : live) a.deallocate(q, n);
    });
  }
  for (std::thread& th : threads) th.join();
  const cpu::AllocatorStats after = cpu::allocator_stats();
  CHECK(corrupted.load() == 0);
  CHECK(after.allocated_bytes == before.allocated_bytes);
  CHECK(after.allocations == before.allocations + kThreads * kRounds);
  CHECK(after.cache_hits > 0);
  CHECK(after.allocations - before.allocations ==
        (after.cache_hits - before.cache_hits) +
            (after.system_allocations - before.system_allocations));
  // Every block obtained from the system is handed out, cached or freed: once the cache is
  // emptied, the blocks still held are exactly those held before.
  cpu::empty_cache();
  const cpu::AllocatorStats emptied = cpu::allocator_stats();
  CHECK(emptied.system_allocations - emptied.system_frees ==
        before.system_allocations - before.system_frees);
}
