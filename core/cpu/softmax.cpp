// Softmax, log-softmax and fused cross-entropy on the CPU, forward and backward.
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
// ---- Fused cross-entropy ----
// For logits z (N, C) and integer targets t (N,), with label smoothing s the target
// distribution is q = (1 - s) one_hot(t) + s / C, and the loss of row n is
//     loss_n = -sum_c q_c log softmax(z)_c = (1 - s) (lse - z_t) + s (lse - mean_c z_c)
//     dz_c   = dloss_n * (softmax(z)_c - q_c) = dloss_n * (exp(z_c - lse) - q_c)
// so one pass computes lse and the loss without ever storing the probabilities, and the
// backward recomputes them from the saved lse. Rows whose target is ignore_index get loss 0
// and gradient 0 (their lse is still written).
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
// bf16/f16 tensors are computed on f32 copies (the CPU backend is their reference, not their
// fast path).
//
// Measured (bench/bench_core.cpp softmax; 2-core AMD EPYC Zen 4 VM, f32, one thread, (2048,
// 512) logits): softmax 20 GB/s, along dim 0 15 GB/s, softmax_backward 62 GB/s, fused
// cross_entropy 13 GB/s (it reads the logits only) and its backward 25 GB/s.

// GCC 12 reports a false "may be used uninitialized" inside Eigen's AVX-512 packet math
// (_mm256_undefined_ps is uninitialised by design); the pragma must precede the intrinsics
// headers, since the warning points into them.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"

namespace mnemo::cpu {

namespace {

template <typename C>
using Vec = Eigen::Array<C, Eigen::Dynamic, 1>;
template <typename C>
using VecMap = Eigen::Map<Vec<C>>;
template <typename C>
using ConstVecMap = Eigen::Map<const Vec<C>>;
constexpr int64_t kColumnBlock = 256;  // fewest lanes per slab when the dim is not last
constexpr int64_t kMaxSlabs = 8;       // most slabs across the inner dims
constexpr int64_t kExpCost = 4;        // parallel cost of one exp, in elementwise units

// p[i] = p[i] * scale[i], with results smaller in magnitude than the smallest normal number
// set to 0, so that exp(-inf) (a masked entry) comes out exactly 0: Eigen's vectorised exp
// clamps its argument and returns a tiny denormal instead. scale_stride 0 uses scale[0] for
// every element. A plain loop the compiler vectorises (multiply, compare, blend).
template <typename C>
void scale_and_flush(C* p, int64_t n, const C* scale, int64_t scale_stride) {
  const C lowest = std::numeric_limits<C>::min();
  for (int64_t i = 0; i < n; ++i) {
    const C v = p[i] * scale[i * scale_stride];
    p[i] = std::abs(v) < lowest ? C(0) : v;
  }
}

// ---- 16-bit inputs: computed on f32 copies -------------------------------------------------

// x itself for f32/f64, else a contiguous f32 copy.
Tensor compute_copy(const Tensor& x) {
  if (!x.defined() || (x.dtype() != DType::bf16 && x.dtype() != DType::f16)) return x;
  Tensor copy = Tensor::empty(x.shape(), DType::f32, x.device());
  backend().copy(x, copy);
  return copy;
}

// An output to compute into: out itself for f32/f64, else an f32 scratch copied back by
// finish_output.
Tensor compute_output(const Tensor& out) {
  if (out.dtype() != DType::bf16 && out.dtype() != DType::f16) return out;
  return Tensor::empty(out.shape(), DType::f32, out.device());
}
void finish_output(const Tensor& computed, const Tensor& out) {
  if (!computed.is_same(out)) backend().copy(computed, out);
}

// (outer, D, inner) of a contiguous tensor split at dim.
struct DimSplit {
  int64_t outer = 1, D = 1, inner = 1;
};
DimSplit split_at(const Shape& shape, int64_t dim) {
  DimSplit s;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d < dim) s.outer *= shape[d];
    if (d == dim) s.D = shape[d];
    if (d > dim) s.inner *= shape[d];
  }
  return s;
}

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

// ---- cross-entropy ----------------------------------------------------------------------------

// Throws if a target is neither ignore_index nor a class id in [0, C). Runs before the
// parallel loops: an exception must not escape an OpenMP thread.
void check_targets(const Tensor& target, int64_t C, int64_t ignore_index, std::string_view op) {
  const int64_t* t = target.data<int64_t>();
  for (int64_t n = 0; n < target.numel(); ++n) {
    MNEMO_CHECK(t[n] == ignore_index || (t[n] >= 0 && t[n] < C),
                "{}: target {} at row {} is out of range for {} classes (ignore_index is {})", op,
                t[n], n, C, ignore_index);
  }
}

// z (N, C) logits, t (N,) targets -> loss (N,), lse (N,).
template <typename C>
void cross_entropy_forward(const C* z, const int64_t* t, int64_t N, int64_t classes,
                           int64_t ignore_index, C smoothing, C* loss, C* lse) {
  parallel_for(N, classes * kExpCost, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      ConstVecMap<C> zr(z + n * classes, classes);
      const C m = zr.maxCoeff();
      const C log_sum = std::log((zr - m).exp().sum());
      lse[n] = m + log_sum;
      if (t[n] == ignore_index) {
        loss[n] = C(0);
        continue;
      }
      // lse - z_t as (m - z_t) + log_sum: exact differences first, then one rounding.
      C l = (C(1) - smoothing) * ((m - zr[t[n]]) + log_sum);
      if (smoothing != C(0)) l += smoothing * ((m - zr.mean()) + log_sum);
      loss[n] = l;
    }
  });
}

// dz (N, C) = dloss * (exp(z - lse) - q), q = (1 - s) one_hot(t) + s / C; 0 for ignored rows.
template <typename C>
void cross_entropy_backward_impl(const C* z, const int64_t* t, const C* lse, const C* dloss,
                                 int64_t N, int64_t classes, int64_t ignore_index, C smoothing,
                                 C* dz) {
  parallel_for(N, classes * kExpCost, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      VecMap<C> dzr(dz + n * classes, classes);
      if (t[n] == ignore_index) {
        dzr.setZero();
        continue;
      }
      ConstVecMap<C> zr(z + n * classes, classes);
      const C g = dloss[n];
      dzr = (zr - lse[n]).exp();  // softmax(z)
      scale_and_flush(dz + n * classes, classes, &g, 0);
      dzr -= g * smoothing / C(classes);
      dzr[t[n]] -= g * (C(1) - smoothing);
    }
  });
}

// Calls fn(TypeTag<C>) with C the type the kernels compute in for dtype (f32 for 16-bit).
template <typename Fn>
void visit_compute(DType dtype, std::string_view op, Fn&& fn) {
  if (dtype == DType::f64) return fn(TypeTag<double>{});
  visit_floating(dtype, op, [&](auto) { fn(TypeTag<float>{}); });
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

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                               double label_smoothing, const Tensor& loss, const Tensor& lse) {
  const int64_t N = logits.size(0), classes = logits.size(1);
  check_targets(target, classes, ignore_index, "cross_entropy");
  Tensor zc = compute_copy(logits), lossc = compute_output(loss);
  visit_compute(logits.dtype(), "cross_entropy", [&](auto tag) {
    using C = typename decltype(tag)::type;
    cross_entropy_forward<C>(zc.data<C>(), target.data<int64_t>(), N, classes, ignore_index,
                             C(label_smoothing), lossc.data<C>(), lse.data<C>());
  });
  finish_output(lossc, loss);
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target,
                                        const Tensor& lse, const Tensor& dloss,
                                        int64_t ignore_index, double label_smoothing,
                                        const Tensor& dlogits) {
  const int64_t N = logits.size(0), classes = logits.size(1);
  check_targets(target, classes, ignore_index, "cross_entropy_backward");
  Tensor zc = compute_copy(logits), dlc = compute_copy(dloss), dzc = compute_output(dlogits);
  visit_compute(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using C = typename decltype(tag)::type;
    cross_entropy_backward_impl<C>(zc.data<C>(), target.data<int64_t>(), lse.data<C>(),
                                   dlc.data<C>(), N, classes, ignore_index, C(label_smoothing),
                                   dzc.data<C>());
  });
  finish_output(dzc, dlogits);
}

}  // namespace mnemo::cpu
