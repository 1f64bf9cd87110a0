// Softmax and log-softmax on the CPU, forward and backward.
//
// ---- Stable softmax ----
// softmax(x)_c = exp(x_c) / sum_j exp(x_j) overflows for large x, so every row first
// subtracts its maximum m (the result is unchanged, since the factor exp(-m) cancels):
//     y_c = exp(x_c - m) / s,   s = sum_j exp(x_j - m)  (s >= 1: the max term is exp(0))
//     log_softmax: y_c = x_c - (m + log s) = x_c - lse,  lse = logsumexp(x)
// Backward, with y the forward output and dy its gradient (J is the softmax Jacobian):
//     softmax:      dx = J^T dy = y * (dy - sum(dy * y))
//     log_softmax:  dx = dy - softmax(x) * sum(dy) = dy - exp(y) * sum(dy)
//
// ---- Layout and speed ----
// The op layer passes contiguous tensors, so the softmax dim splits a tensor into
// (outer, D, inner). When the dim is the last one (inner == 1) each row is contiguous and is
// processed with Eigen array expressions, which vectorise max, exp (Eigen's SIMD pexp) and
// sum. Otherwise the lines along D are strided, and we take slabs of neighbouring lines
// ("lanes") and walk D for all of them at once, so the vector lanes run along the contiguous
// inner dim: one pass for the max, one for exp and its sum, one to normalise. Rows and slabs
// are spread over threads; each is reduced by one thread in a fixed order, and how tensors
// are cut depends on their shape only, so results do not depend on the thread count.
// bf16/f16 tensors are computed on f32 copies (core/cpu/softmax_rows.h).
//
// Measured (bench/bench_core.cpp softmax; 2-core AMD EPYC Zen 4 VM, f32, one thread, (2048,
// 512) logits): softmax 20 GB/s, along dim 0 15 GB/s, softmax_backward 62 GB/s.

// GCC 12 reports a false "may be used uninitialized" inside Eigen's AVX-512 packet math
// (_mm256_undefined_ps is uninitialised by design); the pragma must precede the intrinsics
// headers, since the warning points into them.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>

#include "core/cpu/parallel.h"
#include "core/cpu/softmax_rows.h"

namespace mnemo::cpu {

namespace {

constexpr int64_t kColumnBlock = 256;  // fewest lanes per slab when the dim is not last
constexpr int64_t kMaxSlabs = 8;       // most slabs across the inner dims

// Calls row(offset) for each contiguous row (inner == 1), or slab(offset, w) for each slab
// of w neighbouring lanes whose D elements lie `inner` apart, over threads. offset is in
// elements.
template <typename RowFn, typename SlabFn>
void for_each_line(const DimSplit& s, int64_t cost_per_element, RowFn row, SlabFn slab) {
  if (s.inner == 1) {
    parallel_for(s.outer, s.D * cost_per_element, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row(r * s.D);
    });
    return;
  }
  // Wide slabs stream long contiguous runs, which the hardware prefetcher likes: inner is cut
  // into at most kMaxSlabs slabs of at least kColumnBlock lanes. The cut depends on the shape
  // alone, never on the thread count: where a slab starts decides which lanes Eigen computes
  // in SIMD packets and which in its scalar head and tail, and those round differently.
  const int64_t blocks = std::clamp<int64_t>(s.inner / kColumnBlock, 1, kMaxSlabs);
  const int64_t width = (s.inner + blocks - 1) / blocks;
  parallel_for(s.outer * blocks, std::min(width, s.inner) * s.D * cost_per_element,
               [&](int64_t begin, int64_t end) {
                 for (int64_t u = begin; u < end; ++u) {
                   const int64_t o = u / blocks, i0 = (u % blocks) * width;
                   slab(o * s.D * s.inner + i0, std::min(width, s.inner - i0));
                 }
               });
}

// ---- softmax / log_softmax ------------------------------------------------------------------
//
// A row is short enough to stay in cache, so its passes are separate Eigen expressions. A
// slab walks D steps of w lanes (one contiguous run of w elements per step) three times:
// the max, then exp and its sum, then the normalisation.

template <typename C>
void softmax_forward(const C* x, C* y, const DimSplit& s, bool log) {
  auto row = [&](int64_t off) {
    ConstVecMap<C> xr(x + off, s.D);
    VecMap<C> yr(y + off, s.D);
    const C m = xr.maxCoeff();
    if (log) {
      // (x - m) - log s, not x - (m + log s): m + log s would round at m's scale.
      yr = (xr - m) - std::log((xr - m).exp().sum());
    } else {
      yr = (xr - m).exp();
      const C inverse = C(1) / yr.sum();
      scale_and_flush(y + off, s.D, &inverse, 0);
    }
  };
  auto slab = [&](int64_t off, int64_t w) {
    auto x_at = [&](int64_t d) { return ConstVecMap<C>(x + off + d * s.inner, w); };
    auto y_at = [&](int64_t d) { return VecMap<C>(y + off + d * s.inner, w); };
    Vec<C> m = x_at(0);  // (w,) running max of each lane
    for (int64_t d = 1; d < s.D; ++d) m = m.max(x_at(d));
    Vec<C> sum = Vec<C>::Zero(w);
    for (int64_t d = 0; d < s.D; ++d) {
      if (log) {
        sum += (x_at(d) - m).exp();
      } else {
        y_at(d) = (x_at(d) - m).exp();
        sum += y_at(d);
      }
    }
    if (log) {
      const Vec<C> log_sum = sum.log();
      for (int64_t d = 0; d < s.D; ++d) y_at(d) = (x_at(d) - m) - log_sum;
    } else {
      const Vec<C> inverse = sum.inverse();
      for (int64_t d = 0; d < s.D; ++d)
        scale_and_flush(y + off + d * s.inner, w, inverse.data(), 1);
    }
  };
  for_each_line(s, kExpCost, row, slab);
}

template <typename C>
void softmax_backward_impl(const C* y, const C* dy, C* dx, const DimSplit& s, bool log) {
  const C one = C(1);
  auto row = [&](int64_t off) {
    ConstVecMap<C> yr(y + off, s.D), dyr(dy + off, s.D);
    VecMap<C> dxr(dx + off, s.D);
    if (log) {  // dx = dy - exp(y) * sum(dy), exp(y) = softmax(x)
      dxr = yr.exp();
      scale_and_flush(dx + off, s.D, &one, 0);
      dxr = dyr - dxr * dyr.sum();
    } else {  // dx = y * (dy - sum(dy * y))
      dxr = yr * (dyr - (dyr * yr).sum());
    }
  };
  auto slab = [&](int64_t off, int64_t w) {
    auto at = [&](const C* p, int64_t d) { return ConstVecMap<C>(p + off + d * s.inner, w); };
    auto dx_at = [&](int64_t d) { return VecMap<C>(dx + off + d * s.inner, w); };
    Vec<C> sum = Vec<C>::Zero(w);  // (w,) sum(dy) or sum(dy * y) of each lane
    for (int64_t d = 0; d < s.D; ++d) {
      if (log) {
        sum += at(dy, d);
      } else {
        sum += at(dy, d) * at(y, d);
      }
    }
    for (int64_t d = 0; d < s.D; ++d) {
      if (log) {
        dx_at(d) = at(y, d).exp();
        scale_and_flush(dx + off + d * s.inner, w, &one, 0);
        dx_at(d) = at(dy, d) - dx_at(d) * sum;
      } else {
        dx_at(d) = at(y, d) * (at(dy, d) - sum);
      }
    }
  };
  for_each_line(s, kExpCost, row, slab);
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) {
  const std::string_view op = log ? "log_softmax" : "softmax";
  Tensor xc = compute_copy(x), yc = compute_output(out);
  visit_compute(x.dtype(), op, [&](auto tag) {
    using C = typename decltype(tag)::type;
    softmax_forward<C>(xc.data<C>(), yc.data<C>(), split_at(x.shape(), dim), log);
  });
  finish_output(yc, out);
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim, bool log,
                                  const Tensor& dx) {
  const std::string_view op = log ? "log_softmax_backward" : "softmax_backward";
  Tensor yc = compute_copy(y), dyc = compute_copy(dy), dxc = compute_output(dx);
  visit_compute(y.dtype(), op, [&](auto tag) {
    using C = typename decltype(tag)::type;
    softmax_backward_impl<C>(yc.data<C>(), dyc.data<C>(), dxc.data<C>(), split_at(y.shape(), dim),
                             log);
  });
  finish_output(dxc, dx);
}

}  // namespace mnemo::cpu
