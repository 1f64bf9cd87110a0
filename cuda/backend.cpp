// CudaBackend: the CUDA device's entry in core's backend table — for now only its memory.
//
// What is here: device memory (one allocator per GPU, plain cudaMalloc/cudaFree), copies of
// contiguous same-dtype tensors between host and device and between devices, and
// synchronize. Every compute op (unary, matmul, softmax, ...) is inherited from Backend,
// whose default throws "OP: not implemented on cuda:N (backend cuda)": a CUDA build fails
// loudly on an op the GPU cannot run yet, never silently falls back to the CPU.
//
// Registration: a static initialiser below puts the backend into core's table, so
// backend_for(Device::cuda(i)) finds it. Static libraries drop object files nothing refers
// to, hence executables link mnemo_cuda whole-archive (MNEMO_BACKEND_LIBS in CMake).
// Constructing the backend touches no CUDA API: a process that never uses a GPU never
// initialises the driver.
//
// Streams: everything runs on the legacy default stream, so a copy, a kernel and a free on
// one device happen in program order. cudaMemcpy from pageable host memory returns once the
// host buffer may be reused; device-to-host copies return once the data has arrived.
#include <cuda_runtime_api.h>

#include <array>
#include <cstdio>
#include <memory>
#include <mutex>

#include "core/backend.h"
#include "cuda/check.h"
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

// Makes `index` the current device for the guard's lifetime (CUDA calls act on the current
// device), restoring the previous one afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    MNEMO_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != index) MNEMO_CUDA_CHECK(cudaSetDevice(index));
  }
  ~DeviceGuard() {
    int current = previous_;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// Plain cudaMalloc/cudaFree on one device. Every allocation synchronises the device (that is
// what cudaMalloc and cudaFree do); a caching allocator will replace this one.
class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int index) : index_(index) {}

  void* allocate(size_t bytes) override {
    DeviceGuard guard(index_);
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, bytes);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // out of memory is not sticky: clear it and report it
      size_t free_bytes = 0, total_bytes = 0;
      MNEMO_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
      fail("cuda allocator: out of memory allocating {} bytes on cuda:{} ({} bytes free of {})",
           bytes, index_, free_bytes, total_bytes);
    }
    MNEMO_CUDA_CHECK(status);
    return ptr;
  }

  // Runs from a Storage destructor, so it must not throw. cudaErrorCudartUnloading means the
  // process is exiting and the runtime has already released the memory.
  void deallocate(void* ptr, size_t) noexcept override {
    int previous = 0;
    cudaError_t status = cudaGetDevice(&previous);
    if (status == cudaSuccess && previous != index_) status = cudaSetDevice(index_);
    if (status == cudaSuccess) status = cudaFree(ptr);
    if (previous != index_) cudaSetDevice(previous);
    if (status != cudaSuccess && status != cudaErrorCudartUnloading) {
      std::fprintf(stderr, "mnemo: %s\n",
                   describe_error(status, "cudaFree(ptr)", __FILE__, __LINE__).c_str());
      cudaGetLastError();
    }
  }

 private:
  int index_;
};

class CudaBackend final : public Backend {
 public:
  std::string_view name() const override { return "cuda"; }

  Allocator* allocator(Device device) override {
    check_device("cuda allocator", device);
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = allocators_.at(size_t(device.index));
    if (!slot) slot = std::make_unique<CudaAllocator>(device.index);
    return slot.get();
  }

  void synchronize(Device device) override {
    check_device("synchronize", device);
    DeviceGuard guard(device.index);
    MNEMO_CUDA_CHECK(cudaDeviceSynchronize());
  }

  // Called by core's copy_ when either side is on a GPU.
  void copy(const Tensor& src, const Tensor& dst) override;

 private:
  static constexpr size_t kMaxDevices = 64;
  std::mutex mutex_;
  std::array<std::unique_ptr<CudaAllocator>, kMaxDevices> allocators_;
};

// src, dst: same shape (checked by copy_), at least one of them on a GPU.
void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  MNEMO_CHECK(src.dtype() == dst.dtype(),
              "copy: converting {} to {} while copying {} -> {} is not supported by the cuda "
              "backend; convert on the CPU first (shape {})",
              src.dtype(), dst.dtype(), src.device(), dst.device(), shape_str(src.shape()));
  MNEMO_CHECK(src.is_contiguous() && dst.is_contiguous(),
              "copy: the cuda backend copies contiguous tensors only; got {} {} (strides {}) "
              "-> {} {} (strides {}); call contiguous() on the CPU side first",
              src.device(), shape_str(src.shape()), shape_str(src.strides()), dst.device(),
              shape_str(dst.shape()), shape_str(dst.strides()));
  const size_t bytes = size_t(src.numel()) * src.element_size();
  if (bytes == 0) return;
  const Device from = src.device(), to = dst.device();
  if (from.is_cuda()) check_device("copy", from);
  if (to.is_cuda()) check_device("copy", to);

  if (from.is_cpu()) {  // host -> device
    DeviceGuard guard(to.index);
    MNEMO_CUDA_CHECK(cudaMemcpy(dst.data_ptr(), src.data_ptr(), bytes, cudaMemcpyHostToDevice));
  } else if (to.is_cpu()) {  // device -> host
    DeviceGuard guard(from.index);
    MNEMO_CUDA_CHECK(cudaMemcpy(dst.data_ptr(), src.data_ptr(), bytes, cudaMemcpyDeviceToHost));
  } else if (from.index == to.index) {
    DeviceGuard guard(from.index);
    MNEMO_CUDA_CHECK(cudaMemcpy(dst.data_ptr(), src.data_ptr(), bytes, cudaMemcpyDeviceToDevice));
  } else {  // between two GPUs: through NVLink/PCIe peer access, or staged by the driver
    MNEMO_CUDA_CHECK(cudaMemcpyPeer(dst.data_ptr(), to.index, src.data_ptr(), from.index, bytes));
  }
}

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
