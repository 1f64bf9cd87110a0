// CPU memory ops: copies with dtype conversion (any strides on both sides), fill and arange;
// the CPU backend's instance; and the thread-count controls. The caching allocator that every
// CPU tensor's bytes come from is in core/cpu/allocator.cpp.
#include <Eigen/Core>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace mnemo {

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void set_num_threads(int threads) {
  MNEMO_CHECK(threads >= 1, "set_num_threads: expected at least 1 thread, got {}", threads);
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

namespace cpu {

namespace {

template <typename Dst, typename Src>
void copy_typed(const Tensor& src, const Tensor& dst) {
  const Src* s = static_cast<const Src*>(src.data_ptr());
  Dst* d = static_cast<Dst*>(dst.data_ptr());
  for_each_row<2>(
      dst.shape(), {&src.strides(), &dst.strides()}, 1,
      [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
        const Src* sp = s + off[0];
        Dst* dp = d + off[1];
        if constexpr (std::is_same_v<Src, Dst>) {
          if (st[0] == 1 && st[1] == 1) {
            std::memcpy(dp, sp, size_t(n) * sizeof(Src));
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i) {
          dp[i * st[1]] = convert<Dst>(sp[i * st[0]]);
        }
      });
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  visit_dtype(dst.dtype(), "copy", [&](auto dst_tag) {
    using Dst = typename decltype(dst_tag)::type;
    visit_dtype(src.dtype(), "copy", [&](auto src_tag) {
      using Src = typename decltype(src_tag)::type;
      copy_typed<Dst, Src>(src, dst);
    });
  });
}

void CpuBackend::fill(const Tensor& dst, double value) {
  visit_dtype(dst.dtype(), "fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = convert<T>(value);
    T* d = static_cast<T*>(dst.data_ptr());
    for_each_row<1>(
        dst.shape(), {&dst.strides()}, 1,
        [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& st) {
          T* p = d + off[0];
          for (int64_t i = 0; i < n; ++i) p[i * st[0]] = v;
        });
  });
}

void CpuBackend::arange(const Tensor& out, double start, double step) {
  visit_dtype(out.dtype(), "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(out.data_ptr());
    // One fused multiply-add (one rounding), so every backend computes the same values.
    for (int64_t i = 0; i < out.numel(); ++i) p[i] = convert<T>(std::fma(double(i), step, start));
  });
}

CpuBackend& backend() {
  static CpuBackend instance;
  return instance;
}

}  // namespace cpu
}  // namespace mnemo
