// arg_reduce on the CPU: the index of the largest (argmax) or smallest (argmin) element
// along one dim; the first index wins ties and a NaN wins over every number (as in PyTorch).
//
// The work goes line by line (core/cpu/lines.h): in line mode, when the dim is contiguous, a
// line is scanned in kLanes independent lanes that are combined at the end (vectorised,
// without reassociating anything: each lane keeps its first extreme); in tile mode, when the
// dim is strided, a tile of adjacent lines is advanced together, vectorised across the tile.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/lines.h"

namespace mnemo::cpu {

namespace {

constexpr int64_t kLanes = 32;  // independent lanes of a contiguous line's scan

// Whether v at a later index replaces best: the first NaN wins for good; otherwise strictly
// larger (argmax) or smaller (argmin), so the first index wins ties. Written without branches
// so that the loops below vectorise.
template <bool kMax, typename C>
bool improves(C v, C best) {
  const bool better = kMax ? v > best : v < best;
  return (!is_nan(best)) & (is_nan(v) | better);
}

// Lane results (value, index) combined: NaN beats numbers, then the better value, then the
// lower index.
template <bool kMax, typename C>
bool beats(C v, int64_t i, C best, int64_t best_i) {
  if (is_nan(v) != is_nan(best)) return is_nan(v);
  if (!is_nan(v) && v != best) return kMax ? v > best : v < best;
  return i < best_i;
}

// The arg-extreme of a contiguous line p[0 .. n). Lane j scans elements j, j + kLanes, ...
// keeping its first extreme; the lanes are then combined.
template <bool kMax, typename T>
int64_t arg_extreme_contiguous(const T* p, int64_t n) {
  using C = ComputeType<T>;
  C best[kLanes] = {};
  int64_t arg[kLanes] = {};
  const int64_t lanes = std::min(n, kLanes);
  for (int64_t j = 0; j < lanes; ++j) best[j] = C(p[j]), arg[j] = j;
  int64_t i = lanes;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) {
      const C v = C(p[i + j]);
      const bool take = improves<kMax>(v, best[j]);
      best[j] = take ? v : best[j];
      arg[j] = take ? i + j : arg[j];
    }
  }
  for (int64_t j = 0; i < n; ++i, ++j) {
    if (improves<kMax>(C(p[i]), best[j])) best[j] = C(p[i]), arg[j] = i;
  }
  int64_t winner = 0;
  for (int64_t j = 1; j < lanes; ++j) {
    if (beats<kMax>(best[j], arg[j], best[winner], arg[winner])) winner = j;
  }
  return arg[winner];
}

// Tile mode: element c of row (c < n, stride apart) at position t along the dim updates
// (best[c], arg[c]).
template <bool kMax, typename T, typename C>
void arg_update(C* __restrict best, int64_t* __restrict arg, const T* row, int64_t t, int64_t n,
                int64_t stride) {
  auto update = [&](int64_t c, C v) {
    const bool take = improves<kMax>(v, best[c]);
    best[c] = take ? v : best[c];
    arg[c] = take ? t : arg[c];
  };
  if (stride == 1) {
    for (int64_t c = 0; c < n; ++c) update(c, C(row[c]));
  } else {
    for (int64_t c = 0; c < n; ++c) update(c, C(row[c * stride]));
  }
}

template <bool kMax, typename T>
void arg_reduce_typed(const Tensor& x, int64_t dim, const Tensor& out) {
  using C = ComputeType<T>;
  const T* xs = static_cast<const T*>(x.data_ptr());
  int64_t* os = static_cast<int64_t*>(out.data_ptr());
  const auto g = line_geometry<2>(x.shape(), dim, {&x.strides(), &out.strides()});
  const int64_t length = g.length, sd = g.dim_strides[0];
  if (!prefers_tiles(g)) {
    for_each_line(g, length, [&](const std::array<int64_t, 2>& off) {
      const T* p = xs + off[0];
      if (sd == 1) {
        os[off[1]] = arg_extreme_contiguous<kMax>(p, length);
        return;
      }
      C best = C(p[0]);
      int64_t arg = 0;
      for (int64_t t = 1; t < length; ++t) {
        if (improves<kMax>(C(p[t * sd]), best)) best = C(p[t * sd]), arg = t;
      }
      os[off[1]] = arg;
    });
    return;
  }
  const int64_t si = g.inner_strides[0], so = g.inner_strides[1];
  for_each_tile(g, kTile, length, [&](const std::array<int64_t, 2>& off, int64_t n) {
    std::vector<C> best_buffer(static_cast<size_t>(n));
    std::vector<int64_t> arg_buffer(best_buffer.size(), 0);
    C* __restrict best = best_buffer.data();
    int64_t* __restrict arg = arg_buffer.data();
    const T* p = xs + off[0];
    for (int64_t c = 0; c < n; ++c) best[c] = C(p[c * si]);
    for (int64_t t = 1; t < length; ++t) arg_update<kMax>(best, arg, p + t * sd, t, n, si);
    for (int64_t c = 0; c < n; ++c) os[off[1] + c * so] = arg[c];
  });
}

}  // namespace

static_assert(size_t(ArgReduceOp::count) == 2, "argmax or else argmin: a third needs a branch");
void CpuBackend::arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) {
  visit_dtype(x.dtype(), op_name(op), [&](auto tag) {
    visit_bool(op == ArgReduceOp::argmax, [&](auto max_tag) {
      arg_reduce_typed<decltype(max_tag)::value, typename decltype(tag)::type>(x, dim, out);
    });
  });
}

}  // namespace mnemo::cpu
