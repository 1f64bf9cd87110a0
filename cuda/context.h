// Per-device CUDA state every op shares: the current-device guard and the compute stream.
//
// One compute stream per device, created on first use with cudaStreamNonBlocking. Every
// kernel, every cuBLASLt call and every copy of the backend is issued on it, so work on one
// device runs in program order, and the caching allocator (cuda/allocator.h) may hand a freed
// block to the next op at once: anything that still reads the block was queued earlier on the
// same stream. Host code waits only where it must (a device-to-host copy, synchronize()).
//
// Internal to cuda/ (includes the runtime header).
#pragma once

#include <cuda_runtime_api.h>

#include "core/device.h"

namespace mnemo::cuda {

// Makes `index` the current device for the guard's lifetime (CUDA calls act on the current
// device), restoring the previous one afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// The compute stream of a GPU (created on first use; never destroyed).
cudaStream_t stream(int device);
inline cudaStream_t stream(Device device) { return stream(device.index); }

// The multiprocessor count of a GPU (cached), for sizing grids.
int multiprocessor_count(int device);

// After a kernel launch: throws mnemo::Error naming FILE:LINE and the kernel if the launch
// failed (bad configuration, no kernel image for this GPU). In debug builds (NDEBUG unset)
// it also waits for the stream, so an error inside the kernel surfaces at its launch site.
void check_launch(const char* kernel, const char* file, int line);

}  // namespace mnemo::cuda

#define MNEMO_CUDA_CHECK_LAUNCH(kernel) ::mnemo::cuda::check_launch(kernel, __FILE__, __LINE__)
