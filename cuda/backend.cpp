// CudaBackend: the CUDA devices' entry in core's backend table.
//
// Each method makes the tensors' GPU the current device and calls the matching function of
// cuda/ops.h, which queues the work on that GPU's compute stream (cuda/context.h). Memory
// comes from the caching allocator (cuda/allocator.h). An op this backend cannot run throws
// mnemo::Error naming the op and the device: a CUDA build never silently falls back to the CPU.
//
// Registration: a static initialiser below puts the backend into core's table, so
// backend_for(Device::cuda(i)) finds it. Static libraries drop object files nothing refers
// to, hence executables link mnemo_cuda whole-archive (MNEMO_BACKEND_LIBS in CMake).
// Constructing the backend touches no CUDA API: a process that never uses a GPU never
// initialises the driver.
#include "core/backend.h"
#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/ops.h"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

// Throws unless device names a visible GPU.
void check_device(std::string_view op, Device device) {
  const int count = device_count();
  MNEMO_CHECK(device.index >= 0 && device.index < count,
              "{}: {} is not available ({} CUDA device{} visible{}{})", op, device, count,
              count == 1 ? "" : "s", count == 0 ? "; " : "", no_device_reason());
}

// Makes the GPU of an op's tensors the current device for the op's duration: the device of
// its first tensor (core has already checked that they share one).
template <BackendOp op>
class OnDevice {
 public:
  explicit OnDevice(const auto&... args) : guard_(first_tensor(args...).device().index) {}

 private:
  DeviceGuard guard_;
};

// copy is called by core's copy_ for two tensors on one GPU, or one on the CPU and one on a
// GPU; cuda::copy picks the device itself, once each GPU side is known to exist.
template <>
class OnDevice<BackendOp::copy> {
 public:
  OnDevice(const Tensor& src, const Tensor& dst) {
    if (src.device().is_cuda()) check_device("copy", src.device());
    if (dst.device().is_cuda()) check_device("copy", dst.device());
  }
};

class CudaBackend final : public Backend {
 public:
  std::string_view name() const override { return "cuda"; }

  Allocator* allocator(Device device) override {
    check_device("cuda allocator", device);
    return &caching_allocator(device.index);
  }

  void synchronize(Device device) override {
    check_device("synchronize", device);
    DeviceGuard guard(device.index);
    MNEMO_CUDA_CHECK(cudaStreamSynchronize(stream(device.index)));
  }

  // One forwarder per op of cuda/ops.h: enter the op's GPU, call the function.
  static_assert(size_t(BackendOp::count) == 31, "a new op needs a CudaBackend forwarder");
#define MNEMO_BACKEND_OP(NAME, CATEGORY, PARAMETERS, ARGUMENTS, ...) \
  void NAME PARAMETERS override {                                    \
    OnDevice<BackendOp::NAME> on ARGUMENTS;                          \
    cuda::NAME ARGUMENTS;                                            \
  }
#define MNEMO_COMPOSED_OP(...)  // Backend's composition
#include "core/backend_ops.def"
};

CudaBackend& instance() {
  static CudaBackend backend;
  return backend;
}

// Registers the backend before main runs (see the file comment for why this links).
[[maybe_unused]] const bool registered = [] {
  register_backend(DeviceType::cuda, &instance());
  return true;
}();

}  // namespace

}  // namespace mnemo::cuda
