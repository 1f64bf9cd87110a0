// The per-device stream and the launch checks of cuda/context.h.
#include "cuda/context.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string_view>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag created;
  cudaStream_t stream = nullptr;
  int multiprocessors = 0;
};

DeviceState& state(int device) {
  static std::array<DeviceState, kMaxDevices> states;
  MNEMO_ASSERT(device >= 0 && device < kMaxDevices, "cuda: device index {} out of range", device);
  DeviceState& s = states[size_t(device)];
  std::call_once(s.created, [&] {
    DeviceGuard guard(device);
    MNEMO_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    MNEMO_CUDA_CHECK(
        cudaDeviceGetAttribute(&s.multiprocessors, cudaDevAttrMultiProcessorCount, device));
  });
  return s;
}

}  // namespace

DeviceGuard::DeviceGuard(int index) {
  MNEMO_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != index) MNEMO_CUDA_CHECK(cudaSetDevice(index));
}

DeviceGuard::~DeviceGuard() {
  int current = previous_;
  if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
}

cudaStream_t stream(int device) { return state(device).stream; }

int multiprocessor_count(int device) { return state(device).multiprocessors; }

void check_launch(const char* kernel, const char* file, int line) {
  check(cudaGetLastError(), kernel, file, line);
#ifndef NDEBUG
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice", file, line);
  check(cudaStreamSynchronize(stream(device)), kernel, file, line);
#endif
}

namespace {

std::atomic<KernelChoice>& choice() {
  static std::atomic<KernelChoice> value = [] {
    const char* env = std::getenv("MNEMO_CUDA_KERNELS");
    const std::string_view name = env != nullptr ? env : "fast";
    if (name == "reference") return KernelChoice::reference;
    if (name == "fast_mma") return KernelChoice::fast_mma;
    return KernelChoice::fast;
  }();
  return value;
}

}  // namespace

KernelChoice kernel_choice() { return choice().load(std::memory_order_relaxed); }

void set_kernel_choice(KernelChoice value) { choice().store(value, std::memory_order_relaxed); }

}  // namespace mnemo::cuda
