// The CUDA runtime as the rest of mnemo sees it: how many GPUs are visible, and if none, why.
//
// This header includes no CUDA header on purpose: train/ (the `mnemo version` report) and the
// test runners include it, and they are compiled by the host compiler without the toolkit's
// include path. Everything CUDA-specific stays in cuda/*.cpp.
//
// The device query runs once per process (on first use) and is cached: the set of visible
// devices cannot change while a process runs. On a machine without a GPU or without a driver,
// cudaGetDeviceCount fails; that is reported here as a count of 0 plus the runtime's message,
// never as an exception, so callers can print it and carry on (tests skip, `mnemo version`
// says "no GPU visible").
#pragma once

#include <cstdint>
#include <string>

namespace mnemo::cuda {

// Number of CUDA devices this process can use (0 when none is visible or no driver is loaded).
int device_count();

// Why no device is visible: "cudaGetDeviceCount: <cudaGetErrorString>" when the query failed,
// "cudaGetDeviceCount: 0 devices" when it succeeded with none; "" when a device is visible.
std::string no_device_reason();

// One line about the visible devices, e.g. "1 GPU: NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB);
// runtime 13.0, driver 13.0", or "no GPU visible: <cudaGetErrorString>".
std::string describe_devices();

// The caching device allocator's counters for one GPU (cuda/allocator.h). Bytes are counted
// in the allocator's size classes (a request is rounded up to its class).
struct MemoryStats {
  int64_t allocated_bytes = 0;       // in tensors now
  int64_t peak_allocated_bytes = 0;  // the most ever in tensors at once
  int64_t reserved_bytes = 0;        // obtained from cudaMalloc and not yet returned
  int64_t peak_reserved_bytes = 0;
  int64_t device_mallocs = 0;        // cudaMalloc calls so far
  int64_t device_frees = 0;          // cudaFree calls so far (empty_cache, out-of-memory retry)
  int64_t cache_hits = 0;            // requests served from the cache without cudaMalloc
};

// Counters of GPU `device` (all zero before its first allocation). Throws if no such GPU.
MemoryStats memory_stats(int device);
// Zeroes the peak counters (peaks restart from the current usage).
void reset_peak_memory_stats(int device);
// Returns every cached, unused block of GPU `device` to the driver (cudaFree).
void empty_cache(int device);
// "cuda:0 memory: 1.20 GiB in tensors (peak 2.31 GiB), 2.50 GiB reserved, 42 cudaMalloc calls".
std::string describe_memory(int device);

// TF32 tensor cores for f32 matmuls (about 10 mantissa bits per product): off by default, so
// f32 products round like the CPU's. MNEMO_ALLOW_TF32=1 in the environment turns it on at
// first use; set_allow_tf32 overrides both (cuda/blas.cpp).
void set_allow_tf32(bool allow);
bool allow_tf32();

// Ops with a fast hand-written kernel keep their plain reference kernel ("kernel1", obviously
// right) beside it. Which rung of that ladder runs:
//   fast       (the default) the fast kernel wherever it applies; for attention the wmma
//              flash kernels (cuda/flash_attention_*.cu);
//   reference  the reference kernel everywhere: tests compare the two, and a user who suspects
//              a fast kernel can check;
//   fast_mma   as fast, except that attention takes the mma.sync flash kernels
//              (cuda/flash_mma_*.cu) for bf16/f16 where they apply. Those kernels have not run
//              on a GPU yet, so they run only when asked for.
// MNEMO_CUDA_KERNELS=fast|reference|fast_mma in the environment sets it (read at first use;
// any other value, or none, is fast). cuda/attention.cu's choose_kernel shows how attention
// picks its kernel.
enum class KernelChoice { fast, reference, fast_mma };
KernelChoice kernel_choice();
void set_kernel_choice(KernelChoice choice);

// Sets the choice for a scope (tests), restoring the previous one.
class KernelChoiceGuard {
 public:
  explicit KernelChoiceGuard(KernelChoice choice) : previous_(kernel_choice()) {
    set_kernel_choice(choice);
  }
  ~KernelChoiceGuard() { set_kernel_choice(previous_); }
  KernelChoiceGuard(const KernelChoiceGuard&) = delete;
  KernelChoiceGuard& operator=(const KernelChoiceGuard&) = delete;

 private:
  KernelChoice previous_;
};

}  // namespace mnemo::cuda
