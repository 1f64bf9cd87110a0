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
// sum. Otherwise we take slabs of up to kColumnBlock neighbouring columns and reduce across
// D for all of them at once, so the vector lanes run along the contiguous inner dim. Rows
// and slabs are spread over threads; each is reduced by one thread in a fixed order, so the
// result does not depend on the thread count. bf16/f16 tensors are computed on f32 copies
// (the CPU backend is their reference, not their fast path).
// GCC 12 reports a false "may be used uninitialized" inside Eigen's AVX-512 packet math
// (_mm256_undefined_ps is uninitialised by design); the pragma must precede the intrinsics
// headers, since the warning points into them.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <Eigen/Core>
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
// (w, D) column-major slab: column d is x[o, d, i0 : i0 + w], with column stride `inner`.
template <typename C>
using Slab = Eigen::Map<Eigen::Array<C, Eigen::Dynamic, Eigen::Dynamic>, 0, Eigen::OuterStride<>>;
template <typename C>
using ConstSlab =
    Eigen::Map<const Eigen::Array<C, Eigen::Dynamic, Eigen::Dynamic>, 0, Eigen::OuterStride<>>;

constexpr int64_t kColumnBlock = 64;  // columns per slab when the dim is not the last
constexpr int64_t kExpCost = 4;       // parallel cost of one exp, in elementwise units

// Sets values below the smallest normal number to 0, so that exp(-inf) (a masked entry) is
// exactly 0: Eigen's vectorised exp clamps its argument and returns a tiny denormal instead.
// A plain loop the compiler vectorises (a compare and a blend).
template <typename C>
void flush_tiny(C* p, int64_t n) {
  const C lowest = std::numeric_limits<C>::min();
  for (int64_t i = 0; i < n; ++i) p[i] = p[i] < lowest ? C(0) : p[i];
}

// The same over the w-long columns of a (w, D) slab with column stride `stride`.
template <typename C>
void flush_tiny(C* p, int64_t w, int64_t D, int64_t stride) {
  for (int64_t d = 0; d < D; ++d) flush_tiny(p + d * stride, w);
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

// Calls row(offset) for each contiguous row (inner == 1), or slab(offset, w) for each
// (w, D) slab with column stride inner, over threads. offset is in elements.
template <typename RowFn, typename SlabFn>
void for_each_line(const DimSplit& s, int64_t cost_per_element, RowFn row, SlabFn slab) {
  if (s.inner == 1) {
    parallel_for(s.outer, s.D * cost_per_element, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row(r * s.D);
    });
    return;
  }
  const int64_t blocks = (s.inner + kColumnBlock - 1) / kColumnBlock;
  parallel_for(s.outer * blocks, kColumnBlock * s.D * cost_per_element,
               [&](int64_t begin, int64_t end) {
                 for (int64_t u = begin; u < end; ++u) {
                   const int64_t o = u / blocks, i0 = (u % blocks) * kColumnBlock;
                   slab(o * s.D * s.inner + i0, std::min(kColumnBlock, s.inner - i0));
                 }
               });
}

// ---- softmax / log_softmax ------------------------------------------------------------------

template <typename C>
void softmax_forward(const C* x, C* y, const DimSplit& s, bool log) {
  auto row = [&](int64_t off) {
    ConstVecMap<C> xr(x + off, s.D);
    VecMap<C> yr(y + off, s.D);
    const C m = xr.maxCoeff();
    yr = (xr - m).exp();
    const C sum = yr.sum();
    if (log) {
      yr = (xr - m) - std::log(sum);  // not x - (m + log s): m + log s would round at m's scale
    } else {
      yr *= C(1) / sum;
      flush_tiny(y + off, s.D);
    }
  };
  auto slab = [&](int64_t off, int64_t w) {
    ConstSlab<C> xs(x + off, w, s.D, Eigen::OuterStride<>(s.inner));
    Slab<C> ys(y + off, w, s.D, Eigen::OuterStride<>(s.inner));
    const Vec<C> m = xs.rowwise().maxCoeff();  // (w,) one max per column of x
    ys = (xs.colwise() - m).exp();
    const Vec<C> sum = ys.rowwise().sum();
    if (log) {
      ys = (xs.colwise() - m).colwise() - sum.log();
    } else {
      ys.colwise() *= sum.inverse();
      flush_tiny(y + off, w, s.D, s.inner);
    }
  };
  for_each_line(s, kExpCost, row, slab);
}

template <typename C>
void softmax_backward_impl(const C* y, const C* dy, C* dx, const DimSplit& s, bool log) {
  auto row = [&](int64_t off) {
    ConstVecMap<C> yr(y + off, s.D), dyr(dy + off, s.D);
    VecMap<C> dxr(dx + off, s.D);
    if (log) {  // dx = dy - exp(y) * sum(dy), exp(y) = softmax(x)
      dxr = yr.exp();
      flush_tiny(dx + off, s.D);
      dxr = dyr - dxr * dyr.sum();
    } else {  // dx = y * (dy - sum(dy * y))
      dxr = yr * (dyr - (dyr * yr).sum());
    }
  };
  auto slab = [&](int64_t off, int64_t w) {
    const Eigen::OuterStride<> stride(s.inner);
    ConstSlab<C> ys(y + off, w, s.D, stride), dys(dy + off, w, s.D, stride);
    Slab<C> dxs(dx + off, w, s.D, stride);
    if (log) {
      const Vec<C> sum = dys.rowwise().sum();
      dxs = ys.exp();
      flush_tiny(dx + off, w, s.D, s.inner);
      dxs = dys - dxs.colwise() * sum;
    } else {
      const Vec<C> dot = (dys * ys).rowwise().sum();
      dxs = ys * (dys.colwise() - dot);
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
      flush_tiny(dz + n * classes, classes);
      dzr = g * (dzr - smoothing / C(classes));
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
