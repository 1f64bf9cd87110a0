// The caching device allocator: cudaMalloc once, reuse forever.
//
// cudaMalloc and cudaFree are slow (tens of microseconds to milliseconds) and cudaFree
// synchronises the whole device, so a training step that allocated its activations from the
// driver would stall on every tensor. This allocator keeps freed blocks in bins by size class
// and hands them out again: after the first step of a training loop, every request is served
// from the cache and the driver is never called.
//
// Size classes: a request is rounded up to a multiple of 512 bytes below 1 MiB, and above it to
// one of 8 evenly spaced sizes per power of two (1 MiB, 1.125 MiB, 1.25 MiB, ...), so a block
// wastes at most 12.5% and tensors of nearly equal size share a bin. A bin is a stack: the
// most recently freed block (warm in L2) is reused first.
//
// Streams: all work on a GPU runs on its one compute stream (cuda/context.h), so a block freed
// by the host while a queued kernel still reads it may be handed to the next op at once; that
// op is queued after the kernel on the same stream. (A second stream, e.g. NCCL's, must record
// an event before its blocks are freed; none does yet.)
//
// Out of memory: the cache is returned to the driver and the request tried again; if it still
// fails, mnemo::Error names the request, what tensors hold, what is reserved and what the
// driver reports free.
//
// Internal to cuda/. Its counters are public through cuda/runtime.h (memory_stats).
#pragma once

#include <cstddef>

#include "core/storage.h"

namespace mnemo::cuda {

// The allocator of GPU `device` (one per device, created on first use, never destroyed).
Allocator& caching_allocator(int device);

// The size class a request of `bytes` is rounded up to (exposed for tests).
size_t size_class(size_t bytes);

}  // namespace mnemo::cuda
