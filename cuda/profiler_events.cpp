// The CUDA side of the op profiler (core/profiler.h): times GPU ops with CUDA events and
// names every op (CPU ones too) with an NVTX range, so Nsight Systems / Nsight Compute show
// "matmul", "softmax" ... around the kernels.
//
// Timing without a sync per op: start() records an event on the device's compute stream
// (cuda/context.h) before the op queues its work, stop() records one after; both are only
// enqueued. resolve() (called by the profiler in batches and at stop(), in start order) waits
// for the op's stop event, which has normally long passed, and reads
//   duration = elapsed(start, stop)
//   start    = start of the previous resolved op + elapsed(previous start, this start)
// The chain begins at a reference event recorded and waited for once per device when the
// device is first timed, paired with the host's steady clock at that moment: this places
// the GPU's timeline on the host's (to within the sync's latency) while every elapsed time
// read is short, so float milliseconds lose nothing. Events are pooled per device and reused.
//
// measure_peak(): the device-to-device copy bandwidth (read + write bytes per second, best of
// a few 256 MiB cudaMemcpyAsync), measured once per device when a summary is printed; it is
// the reference for the summary's "% peak" of memory-bound ops. The TFLOP/s peak is left to
// MNEMO_PROFILE_PEAK_TFLOPS (the measured cuBLAS rate is in bench/bench_cuda.cpp).
//
// Registration: a static initialiser registers the timer for DeviceType::cuda (executables
// link mnemo_cuda whole-archive); it touches no CUDA API until a GPU op is profiled.
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/profiler.h"
#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/context.h"

namespace mnemo::cuda {

namespace {

double host_now_us() {
  using namespace std::chrono;
  return duration<double, std::micro>(steady_clock::now().time_since_epoch()).count();
}

class CudaEventTimer final : public profiler::DeviceTimer {
 public:
  int64_t start(Device device) override {
    std::lock_guard lock(mutex_);
    DeviceGuard guard(device.index);
    DeviceState& d = state(device.index);
    Marker m{device.index, take_event(d), take_event(d)};
    MNEMO_CUDA_CHECK(cudaEventRecord(m.start, stream(device.index)));
    const int64_t token = next_token_++;
    markers_[token] = m;
    return token;
  }

  void stop(int64_t token) override {
    std::lock_guard lock(mutex_);
    const Marker& m = markers_.at(token);
    DeviceGuard guard(m.device);
    MNEMO_CUDA_CHECK(cudaEventRecord(m.stop, stream(m.device)));
  }

  Interval resolve(int64_t token) override {
    std::lock_guard lock(mutex_);
    auto it = markers_.find(token);
    MNEMO_ASSERT(it != markers_.end(), "profiler: unknown CUDA timer token {}", token);
    const Marker m = it->second;
    markers_.erase(it);
    DeviceGuard guard(m.device);
    DeviceState& d = state(m.device);
    MNEMO_CUDA_CHECK(cudaEventSynchronize(m.stop));
    float since_previous_ms = 0, duration_ms = 0;
    MNEMO_CUDA_CHECK(cudaEventElapsedTime(&since_previous_ms, d.previous, m.start));
    MNEMO_CUDA_CHECK(cudaEventElapsedTime(&duration_ms, m.start, m.stop));
    Interval interval{d.previous_us + 1000.0 * since_previous_ms, 1000.0 * duration_ms};
    // This op's start becomes the next link of the chain; the old link and the stop event go
    // back to the pool.
    d.pool.push_back(d.previous);
    d.pool.push_back(m.stop);
    d.previous = m.start;
    d.previous_us = interval.start_us;
    return interval;
  }

  void push_range(std::string_view name) override { nvtxRangePushA(std::string(name).c_str()); }
  void pop_range() override { nvtxRangePop(); }

  profiler::Peak measure_peak(Device device) override {
    {
      std::lock_guard lock(mutex_);
      if (auto it = peaks_.find(device.index); it != peaks_.end()) return it->second;
    }
    profiler::Peak peak;
    try {
      peak.gbps = copy_bandwidth_gbps(device);
    } catch (const std::exception&) {
      peak.gbps = 0;  // e.g. no memory left for the buffers: the table shows no "% peak"
    }
    std::lock_guard lock(mutex_);
    peaks_[device.index] = peak;
    return peak;
  }

 private:
  struct Marker {
    int device;
    cudaEvent_t start;
    cudaEvent_t stop;
  };
  struct DeviceState {
    bool ready = false;
    std::vector<cudaEvent_t> pool;
    cudaEvent_t previous = nullptr;  // start event of the last resolved op (or the reference)
    double previous_us = 0;          // its time on the host's steady clock
  };

  // The device's state, recording the reference event the first time (the current device
  // is already `device`). Called with mutex_ held.
  DeviceState& state(int device) {
    DeviceState& d = devices_[device];
    if (!d.ready) {
      MNEMO_CUDA_CHECK(cudaEventCreate(&d.previous));
      MNEMO_CUDA_CHECK(cudaEventRecord(d.previous, stream(device)));
      MNEMO_CUDA_CHECK(cudaEventSynchronize(d.previous));
      d.previous_us = host_now_us();
      d.ready = true;
      // Registered after the CUDA runtime is up, so that at exit the profiler's report runs
      // before the runtime is torn down (atexit handlers run in reverse order).
      static const bool registered = std::atexit(profiler::detail::stop_at_exit) == 0;
      (void)registered;
    }
    return d;
  }

  static cudaEvent_t take_event(DeviceState& d) {
    if (!d.pool.empty()) {
      cudaEvent_t e = d.pool.back();
      d.pool.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    MNEMO_CUDA_CHECK(cudaEventCreate(&e));  // timing enabled (the default flags)
    return e;
  }

  // Best of a few device-to-device copies of 256 MiB on the device's stream: bytes read plus
  // bytes written per second, in GB/s.
  static double copy_bandwidth_gbps(Device device) {
    constexpr int64_t kFloats = int64_t(64) << 20;  // 256 MiB
    const int64_t bytes = kFloats * 4;
    Tensor src = Tensor::empty({kFloats}, DType::f32, device);
    Tensor dst = Tensor::empty({kFloats}, DType::f32, device);
    DeviceGuard guard(device.index);
    cudaStream_t s = stream(device.index);
    cudaEvent_t begin = nullptr, end = nullptr;
    MNEMO_CUDA_CHECK(cudaEventCreate(&begin));
    MNEMO_CUDA_CHECK(cudaEventCreate(&end));
    float best_ms = 0;
    for (int rep = 0; rep < 6; ++rep) {  // the first is a warm-up
      MNEMO_CUDA_CHECK(cudaEventRecord(begin, s));
      MNEMO_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), size_t(bytes),
                                       cudaMemcpyDeviceToDevice, s));
      MNEMO_CUDA_CHECK(cudaEventRecord(end, s));
      MNEMO_CUDA_CHECK(cudaEventSynchronize(end));
      float ms = 0;
      MNEMO_CUDA_CHECK(cudaEventElapsedTime(&ms, begin, end));
      if (rep > 0 && (best_ms == 0 || ms < best_ms)) best_ms = ms;
    }
    MNEMO_CUDA_CHECK(cudaEventDestroy(begin));
    MNEMO_CUDA_CHECK(cudaEventDestroy(end));
    return best_ms > 0 ? 2.0 * double(bytes) / (best_ms * 1e-3) / 1e9 : 0;
  }

  std::mutex mutex_;
  std::map<int, DeviceState> devices_;
  std::map<int64_t, Marker> markers_;
  std::map<int, profiler::Peak> peaks_;
  int64_t next_token_ = 0;
};

const bool g_registered = [] {
  // Never destroyed: the exit-time report may use it after static destructors have run.
  profiler::register_device_timer(DeviceType::cuda, new CudaEventTimer());
  return true;
}();

}  // namespace

}  // namespace mnemo::cuda
