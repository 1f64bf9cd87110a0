// Copies that involve a GPU: host <-> device through pinned staging buffers, device <-> device.
//
// Host <-> device: the DMA engines read and write only page-locked ("pinned") host memory. A
// copy from ordinary (pageable) memory makes the driver stage it through its own pinned
// buffer and wait. Here each GPU owns two pinned staging buffers of kChunk bytes used in
// turn: the host fills one (memcpy) while the other is on its way over PCIe, and an event per
// buffer says when it may be refilled. A copy to the host waits for the stream, so the data is
// there when copy returns; a copy to the device returns once the source may be reused.
//
// Conversions and strides: the transfer itself moves contiguous bytes of one dtype. A source
// or destination that is strided, broadcast or of another dtype is first made contiguous in
// the destination's dtype on the side that holds it (the CPU backend on the host, the
// copy_on_device kernel on the GPU).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>

#include "core/backend.h"
#include "core/error.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

namespace {

constexpr size_t kChunk = size_t(8) << 20;  // 8 MiB per staging buffer

class StagingBuffers {
 public:
  explicit StagingBuffers(int device) : device_(device) {}

  // host -> device: returns once `host` may be reused; the transfer finishes in stream order.
  void upload(const void* host, void* dev, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    ensure_created();
    cudaStream_t s = stream(device_);
    for (size_t done = 0; done < bytes; done += kChunk) {
      const size_t n = std::min(kChunk, bytes - done);
      Slot& slot = next_slot();
      MNEMO_CUDA_CHECK(cudaEventSynchronize(slot.ready));  // its previous transfer is done
      std::memcpy(slot.host, static_cast<const char*>(host) + done, n);
      MNEMO_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dev) + done, slot.host, n,
                                       cudaMemcpyHostToDevice, s));
      MNEMO_CUDA_CHECK(cudaEventRecord(slot.ready, s));
    }
  }

  // device -> host: returns once the data is in `host` (after all queued work on the stream).
  void download(const void* dev, void* host, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    ensure_created();
    cudaStream_t s = stream(device_);
    // Queue chunk c + 1 before copying chunk c out of its buffer, so PCIe and memcpy overlap.
    const size_t chunks = (bytes + kChunk - 1) / kChunk;
    auto queue = [&](size_t c) {
      Slot& slot = slots_[c % 2];
      const size_t n = std::min(kChunk, bytes - c * kChunk);
      MNEMO_CUDA_CHECK(cudaMemcpyAsync(slot.host, static_cast<const char*>(dev) + c * kChunk, n,
                                       cudaMemcpyDeviceToHost, s));
      MNEMO_CUDA_CHECK(cudaEventRecord(slot.ready, s));
    };
    queue(0);
    for (size_t c = 0; c < chunks; ++c) {
      if (c + 1 < chunks) queue(c + 1);
      Slot& slot = slots_[c % 2];
      MNEMO_CUDA_CHECK(cudaEventSynchronize(slot.ready));
      const size_t n = std::min(kChunk, bytes - c * kChunk);
      std::memcpy(static_cast<char*>(host) + c * kChunk, slot.host, n);
    }
  }

 private:
  struct Slot {
    void* host = nullptr;
    cudaEvent_t ready = nullptr;
  };

  void ensure_created() {
    if (slots_[0].host != nullptr) return;
    for (Slot& slot : slots_) {
      MNEMO_CUDA_CHECK(cudaMallocHost(&slot.host, kChunk));
      MNEMO_CUDA_CHECK(cudaEventCreateWithFlags(&slot.ready, cudaEventDisableTiming));
    }
  }

  Slot& next_slot() { return slots_[turn_++ % 2]; }

  int device_;
  std::mutex mutex_;
  std::array<Slot, 2> slots_;
  size_t turn_ = 0;
};

StagingBuffers& staging(int device) {
  constexpr int kMaxDevices = 64;
  static std::array<std::unique_ptr<StagingBuffers>, kMaxDevices> buffers;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = buffers.at(size_t(device));
  if (!slot) slot = std::make_unique<StagingBuffers>(device);
  return *slot;
}

bool is_plain(const Tensor& t, DType dtype) { return t.is_contiguous() && t.dtype() == dtype; }

size_t nbytes(const Tensor& t) { return size_t(t.numel()) * t.element_size(); }

// A contiguous tensor holding src's values in `dtype`, on src's device (src itself if it is).
Tensor plain(const Tensor& src, DType dtype) {
  if (is_plain(src, dtype)) return src;
  Tensor out = Tensor::empty(src.shape(), dtype, src.device());
  if (src.device().is_cpu()) {
    backend_for(Device::cpu()).copy(src, out);
  } else {
    DeviceGuard guard(src.device().index);
    copy_on_device(src, out);
  }
  return out;
}

void host_to_device(const Tensor& src, const Tensor& dst) {
  const int gpu = dst.device().index;
  DeviceGuard guard(gpu);
  const Tensor host = plain(src, dst.dtype());
  const Tensor target =
      dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), dst.device());
  staging(gpu).upload(host.data_ptr(), target.data_ptr(), nbytes(host));
  if (!target.is_same(dst)) copy_on_device(target, dst);
}

void device_to_host(const Tensor& src, const Tensor& dst) {
  const int gpu = src.device().index;
  DeviceGuard guard(gpu);
  const Tensor dev = plain(src, dst.dtype());
  const Tensor target = dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype());
  staging(gpu).download(dev.data_ptr(), target.data_ptr(), nbytes(dev));
  if (!target.is_same(dst)) backend_for(Device::cpu()).copy(target, dst);
}

void device_to_device(const Tensor& src, const Tensor& dst) {
  const int from = src.device().index, to = dst.device().index;
  if (from == to) {
    DeviceGuard guard(to);
    if (is_plain(src, dst.dtype()) && dst.is_contiguous()) {
      MNEMO_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), nbytes(src),
                                       cudaMemcpyDeviceToDevice, stream(to)));
    } else {
      copy_on_device(src, dst);
    }
    return;
  }
  // Between two GPUs: contiguous on the source, a peer copy once the source's stream has
  // produced it, then into place on the destination.
  const Tensor packed = plain(src, dst.dtype());
  {
    DeviceGuard guard(from);
    MNEMO_CUDA_CHECK(cudaStreamSynchronize(stream(from)));
  }
  DeviceGuard guard(to);
  const Tensor target =
      dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), dst.device());
  MNEMO_CUDA_CHECK(cudaMemcpyPeerAsync(target.data_ptr(), to, packed.data_ptr(), from,
                                       nbytes(packed), stream(to)));
  if (!target.is_same(dst)) copy_on_device(target, dst);
  // `packed` may be freed (and reused on `from`) when this returns: wait for the transfer.
  MNEMO_CUDA_CHECK(cudaStreamSynchronize(stream(to)));
}

}  // namespace

void copy(const Tensor& src, const Tensor& dst) {
  if (src.numel() == 0) return;
  if (src.device().is_cpu()) {
    host_to_device(src, dst);
  } else if (dst.device().is_cpu()) {
    device_to_host(src, dst);
  } else {
    device_to_device(src, dst);
  }
}

}  // namespace mnemo::cuda
