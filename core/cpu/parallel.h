// Thread control and the parallel loops every CPU kernel uses.
//
// parallel_for splits [0, n) into one contiguous chunk per OpenMP thread when the work is
// large enough (n * cost_per_item >= kParallelGrain); below that it runs inline, because
// waking threads costs more than a few microseconds of work.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mnemo {

int num_threads();                 // threads CPU kernels may use
void set_num_threads(int threads);  // also sets Eigen's thread count

namespace cpu {

inline constexpr int64_t kParallelGrain = 32768;

// fn(begin, end) over contiguous chunks of [0, n).
template <typename Fn>
void parallel_for(int64_t n, int64_t cost_per_item, Fn&& fn) {
  if (n <= 0) return;
#ifdef _OPENMP
  if (n * cost_per_item >= kParallelGrain && n > 1 && num_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(int(std::min<int64_t>(n, num_threads())))
    {
      int64_t threads = omp_get_num_threads();
      int64_t t = omp_get_thread_num();
      int64_t chunk = (n + threads - 1) / threads;
      int64_t begin = t * chunk;
      int64_t end = std::min(n, begin + chunk);
      if (begin < end) fn(begin, end);
    }
    return;
  }
#endif
  fn(int64_t(0), n);
}

}  // namespace cpu
}  // namespace mnemo
