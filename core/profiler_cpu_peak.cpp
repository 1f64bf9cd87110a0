// The CPU's peak rates, the reference of the profiler's "% peak" column for CPU ops (core/
// profiler.h), measured the way the GPU's are (cuda/profiler_events.cpp): a short probe per
// rate, run once per process and thread count, on the threads the CPU kernels use.
//
//   bandwidth  a parallel copy of 128 MiB (32 Mi floats) into another 128 MiB buffer, split
//              into one contiguous chunk per thread (cpu::parallel_for, as the kernels split
//              work), each chunk a memcpy; bytes read + bytes written per second, as the
//              summary counts an op's bytes. Best of 4 timed copies after one untimed one. Touching
//              the buffers first (page faults) would be most of the probe's cost, so they ask
//              for transparent huge pages (madvise; 128 faults instead of 65536: ~0.02 s
//              instead of ~0.6 s here); the best copy rate was the same with either page size
//              on this machine (21-28 GB/s, one outlier at 43 with huge pages). 256 MiB is
//              beyond most last-level caches, so this is mostly DRAM bandwidth; on a CPU with
//              a very large cache part of it is cache bandwidth (on the AMD EPYC virtual
//              machine this was written on, which reports 508 MiB of L3, one thread copied
//              64 MiB buffers at ~45 GB/s and 128 MiB ones at ~16 GB/s).
//   compute    core::matmul of two 1024 x 1024 f32 matrices: 2 * 1024^3 FLOPs through the
//              same path (threads, packing, the AVX2 kernel or Eigen) every CPU matmul takes.
//              Best of 3 timed products after one untimed one.
//
// Both are "the best this build does on this machine with these threads", not a datasheet
// figure: an op at 100% runs as fast as mnemo's own best copy or GEMM. Cost: about 0.5 s on
// 2 cores of a loaded virtual machine (mostly page faults and the GEMM), less on an idle
// one; the probe's ops are never recorded (detail::Unrecorded).
#include <sys/mman.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>

#include "core/cpu/parallel.h"
#include "core/ops/factory.h"
#include "core/ops/linalg.h"
#include "core/profiler.h"

namespace mnemo::profiler {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The shortest of `runs` timed calls of f after one untimed call.
template <class F>
double best_seconds(int runs, F&& f) {
  f();
  double best = 0;
  for (int run = 0; run < runs; ++run) {
    const auto start = Clock::now();
    f();
    const double seconds = seconds_since(start);
    if (run == 0 || seconds < best) best = seconds;
  }
  return best;
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;

// `floats` uninitialised floats on 2 MiB boundaries, backed by huge pages where the kernel
// grants them (the request is only advice; ordinary pages work the same, more slowly).
Buffer huge_page_buffer(int64_t floats) {
  constexpr size_t kHugePage = size_t(2) << 20;
  const size_t bytes = (size_t(floats) * sizeof(float) + kHugePage - 1) / kHugePage * kHugePage;
  Buffer buffer(static_cast<float*>(std::aligned_alloc(kHugePage, bytes)));
  if (!buffer) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  ::madvise(buffer.get(), bytes, MADV_HUGEPAGE);
#endif
  return buffer;
}

double copy_bandwidth_gbps() {
  constexpr int64_t kFloats = int64_t(32) << 20;  // 128 MiB per buffer
  const Buffer src = huge_page_buffer(kFloats);
  const Buffer dst = huge_page_buffer(kFloats);
  // Each thread touches the pages it will copy first, so that (on a NUMA machine) they sit
  // in its memory.
  cpu::parallel_for(kFloats, 1, [&](int64_t begin, int64_t end) {
    std::memset(src.get() + begin, 0, size_t(end - begin) * sizeof(float));
    std::memset(dst.get() + begin, 0, size_t(end - begin) * sizeof(float));
  });
  const double seconds = best_seconds(4, [&] {
    cpu::parallel_for(kFloats, 1, [&](int64_t begin, int64_t end) {
      std::memcpy(dst.get() + begin, src.get() + begin, size_t(end - begin) * sizeof(float));
    });
  });
  return seconds > 0 ? 2.0 * double(kFloats) * sizeof(float) / seconds / 1e9 : 0;
}

double matmul_tflops() {
  constexpr int64_t kN = 1024;
  const Tensor a = full({kN, kN}, 0.5);
  const Tensor b = full({kN, kN}, 0.25);
  const double seconds = best_seconds(3, [&] { core::matmul(a, b); });
  return seconds > 0 ? 2.0 * double(kN * kN * kN) / seconds / 1e12 : 0;
}

}  // namespace

Peak measure_cpu_peak() {
  static std::mutex mutex;
  static std::map<int, Peak> by_threads;
  std::lock_guard lock(mutex);
  const int threads = num_threads();
  if (auto it = by_threads.find(threads); it != by_threads.end()) return it->second;
  detail::Unrecorded unrecorded;  // measuring inside a session must not add to it
  const Peak peak{copy_bandwidth_gbps(), matmul_tflops()};
  by_threads[threads] = peak;
  return peak;
}

}  // namespace mnemo::profiler
