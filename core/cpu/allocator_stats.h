// The CPU caching allocator's counters and controls (core/cpu/allocator.cpp implements them).
//
// Every CPU tensor's bytes come from CpuBackend::allocator: a caching allocator that keeps
// freed blocks in per-size-class free lists and hands them out again, so a training step that
// allocates the same activations every step stops paying for fresh pages (a fresh 3 MiB block
// costs hundreds of microseconds of page faults; a cached one costs a mutex and a list pop).
// Include this header only where the numbers are needed (tests, benchmarks, the trainer).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mnemo::cpu {

struct AllocatorStats {
  size_t allocated_bytes = 0;       // bytes in blocks handed out and not yet freed (class sizes)
  size_t cached_bytes = 0;          // bytes in freed blocks kept for reuse
  size_t peak_allocated_bytes = 0;  // highest allocated_bytes since start or reset_peak_stats
  size_t cache_limit_bytes = 0;     // cached_bytes never exceeds this
  int64_t allocations = 0;          // allocate() calls that returned a block
  int64_t cache_hits = 0;           // ... of which were served from the cache
  int64_t system_allocations = 0;   // blocks obtained from the C library
  int64_t system_frees = 0;         // blocks returned to the C library
  size_t reserved_bytes() const { return allocated_bytes + cached_bytes; }
};

AllocatorStats allocator_stats();
// Returns every cached block to the system (allocated blocks are untouched).
void empty_cache();
// Bounds the cache (default 1 GiB); frees cached blocks at once if it now holds more.
void set_cache_limit(size_t bytes);
void reset_peak_stats();
// The size of the block that serves a request of `bytes` bytes: 64-byte multiples up to
// 1 MiB, then four classes per power of two (at most 25% over the request).
size_t allocation_size_class(size_t bytes);

}  // namespace mnemo::cpu
