// cumsum on the CPU: out[..., t, ...] = sum over s <= t (s >= t if reverse) of x along dim,
// accumulated in f64 (floating) or i64 (integers) and rounded once per output.
//
// The work goes line by line (core/cpu/lines.h): line mode when the dim is contiguous, tile
// mode (a tile of adjacent lines advanced together, vectorised across the tile) when it is
// strided.
#include <array>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/lines.h"

namespace mnemo::cpu {

namespace {

// One line: q[t] = p[0] + ... + p[t] (elements stride apart), accumulated in A.
template <typename A, typename T>
void scan_line(const T* p, T* q, int64_t n, int64_t p_stride, int64_t q_stride) {
  using C = ComputeType<T>;
  A acc = 0;
  for (int64_t t = 0; t < n; ++t) q[t * q_stride] = convert<T>(acc += A(C(p[t * p_stride])));
}

// One step along the dim for a tile of n lines: acc[c] += p[c], q[c] = acc[c].
template <typename T, typename A>
void scan_tile_step(A* __restrict acc, const T* p, T* q, int64_t n, int64_t p_stride,
                    int64_t q_stride) {
  using C = ComputeType<T>;
  if (p_stride == 1 && q_stride == 1) {
    for (int64_t c = 0; c < n; ++c) q[c] = convert<T>(acc[c] += A(C(p[c])));
  } else {
    for (int64_t c = 0; c < n; ++c) q[c * q_stride] = convert<T>(acc[c] += A(C(p[c * p_stride])));
  }
}

}  // namespace

// A line scan is a chain of dependent additions (one add latency per element); tiles of
// adjacent lines, when the dim is strided, advance many independent chains at once.
void CpuBackend::cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) {
  const auto g = line_geometry<2>(x.shape(), dim, {&x.strides(), &out.strides()});
  const int64_t length = g.length;
  // Step t of the scan visits position first + t * step along the dim.
  const int64_t first = reverse ? length - 1 : 0, step = reverse ? -1 : 1;
  visit_dtype(x.dtype(), "cumsum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = SumAcc<T>;
    const T* xs = static_cast<const T*>(x.data_ptr()) + first * g.dim_strides[0];
    T* os = static_cast<T*>(out.data_ptr()) + first * g.dim_strides[1];
    const int64_t sx = g.dim_strides[0] * step, so = g.dim_strides[1] * step;
    if (!prefers_tiles(g)) {
      for_each_line(g, length, [&](const std::array<int64_t, 2>& off) {
        scan_line<A>(xs + off[0], os + off[1], length, sx, so);
      });
      return;
    }
    const int64_t si = g.inner_strides[0], oi = g.inner_strides[1];
    for_each_tile(g, kTile, length, [&](const std::array<int64_t, 2>& off, int64_t n) {
      std::vector<A> acc(static_cast<size_t>(n), A(0));
      for (int64_t t = 0; t < length; ++t) {
        scan_tile_step(acc.data(), xs + off[0] + t * sx, os + off[1] + t * so, n, si, oi);
      }
    });
  });
}

}  // namespace mnemo::cpu
