// rms_norm and layer_norm on the CPU, forward and backward.
//
// x (N, C) is contiguous rows (the op layer flattens (..., C)); every row is normalised on its
// own, so rows are spread over threads. Row statistics (sums of x, x^2, dy*x, ...) accumulate
// in f64, which keeps f32 statistics exact to their rounding whatever C is; the per-element
// work runs in the compute type (f32 for bf16/f16).
//
// In the helpers, T is the stored type and F its compute type.
//
// Backward, for one row with g = dy * w (w = 1 without weight):
//   rms_norm:   y = x r w,  r = (mean(x^2) + eps)^-1/2
//               dx = r g - x r^3 mean(g x),        dw = sum_rows(dy x r)
//   layer_norm: y = xhat w + b,  xhat = (x - mean) r,  r = (var(x) + eps)^-1/2
//               dx = r (g - mean(g) - xhat mean(g xhat)),
//               dw = sum_rows(dy xhat),  db = sum_rows(dy)
//
// dw and db sum over all rows. To keep them independent of the thread count, rows are cut
// into a fixed number of blocks that depends only on N; each block sums its rows into its own
// partial row, and the partials are added in block order afterwards.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"

namespace mnemo::cpu {

namespace {

// Row blocks for the deterministic parameter-gradient sums.
struct RowBlocks {
  int64_t count;  // number of blocks (depends only on the row count)
  int64_t size;   // rows per block (the last may be shorter)
  explicit RowBlocks(int64_t rows) {
    constexpr int64_t kMaxBlocks = 256;
    size = std::max<int64_t>(1, (rows + kMaxBlocks - 1) / kMaxBlocks);
    count = (rows + size - 1) / size;
  }
};

// out[c] = sum over blocks b of partial[b * C + c], in block order, stored as T.
template <typename T>
void sum_partials(const std::vector<double>& partial, int64_t blocks, int64_t C, T* out) {
  parallel_for(C, blocks, [&](int64_t c0, int64_t c1) {
    std::vector<double> acc(partial.begin() + c0, partial.begin() + c1);
    for (int64_t b = 1; b < blocks; ++b) {
      const double* p = partial.data() + b * C;
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += p[c];
    }
    for (int64_t c = c0; c < c1; ++c) out[c] = convert<T>(acc[c - c0]);
  });
}

template <typename T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr;
}

// ---- rms_norm ----

// One row: y = x * r * w; returns r.
template <typename T, typename F = ComputeType<T>>
F rms_norm_row(const T* x, const T* w, T* y, int64_t n, double eps) {
  double ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t c = 0; c < n; ++c) ss += double(F(x[c])) * double(F(x[c]));
  const F r = F(1.0 / std::sqrt(ss / double(n) + eps));
  if (w) {
    for (int64_t c = 0; c < n; ++c) y[c] = T(F(x[c]) * r * F(w[c]));
  } else {
    for (int64_t c = 0; c < n; ++c) y[c] = T(F(x[c]) * r);
  }
  return r;
}

// One row of the backward: dx = r g - x r^3 mean(g x); adds dy x r into dw (if non-null).
template <typename T, typename F = ComputeType<T>>
void rms_norm_backward_row(const T* x, const T* w, const T* dy, F r, T* dx, double* dw, int64_t n) {
  double gx = 0;
#pragma omp simd reduction(+ : gx)
  for (int64_t c = 0; c < n; ++c) {
    const F g = w ? F(dy[c]) * F(w[c]) : F(dy[c]);
    gx += double(g) * double(F(x[c]));
  }
  const F k = F(double(r) * double(r) * double(r) * gx / double(n));
  for (int64_t c = 0; c < n; ++c) {
    const F g = w ? F(dy[c]) * F(w[c]) : F(dy[c]);
    dx[c] = T(r * g - F(x[c]) * k);
  }
  if (dw) {
    for (int64_t c = 0; c < n; ++c) dw[c] += double(F(dy[c]) * F(x[c]) * r);
  }
}

// ---- layer_norm ----

// One row: y = (x - mean) * r * w + b; returns {mean, r}.
template <typename T, typename F = ComputeType<T>>
std::pair<F, F> layer_norm_row(const T* x, const T* w, const T* b, T* y, int64_t n, double eps) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < n; ++c) s += double(F(x[c]));
  const double mean = s / double(n);
  double ss = 0;  // two passes: no cancellation when |mean| >> std
#pragma omp simd reduction(+ : ss)
  for (int64_t c = 0; c < n; ++c) ss += (double(F(x[c])) - mean) * (double(F(x[c])) - mean);
  const F m = F(mean), r = F(1.0 / std::sqrt(ss / double(n) + eps));
  for (int64_t c = 0; c < n; ++c) {
    F v = (F(x[c]) - m) * r;
    if (w) v *= F(w[c]);
    if (b) v += F(b[c]);
    y[c] = T(v);
  }
  return {m, r};
}

// One row of the backward: dx = r (g - mean(g) - xhat mean(g xhat)); adds dy xhat into dw and
// dy into db (each if non-null).
template <typename T, typename F = ComputeType<T>>
void layer_norm_backward_row(const T* x, const T* w, const T* dy, F m, F r, T* dx, double* dw,
                             double* db, int64_t n) {
  double sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
  for (int64_t c = 0; c < n; ++c) {
    const F g = w ? F(dy[c]) * F(w[c]) : F(dy[c]);
    sg += double(g);
    sgx += double(g) * double((F(x[c]) - m) * r);
  }
  const F mean_g = F(sg / double(n)), mean_gx = F(sgx / double(n));
  for (int64_t c = 0; c < n; ++c) {
    const F g = w ? F(dy[c]) * F(w[c]) : F(dy[c]);
    const F xhat = (F(x[c]) - m) * r;
    dx[c] = T(r * (g - mean_g - xhat * mean_gx));
  }
  if (dw) {
    for (int64_t c = 0; c < n; ++c) dw[c] += double(F(dy[c]) * (F(x[c]) - m) * r);
  }
  if (db) {
    for (int64_t c = 0; c < n; ++c) db[c] += double(F(dy[c]));
  }
}

}  // namespace

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                          const Tensor& rstd) {
  const int64_t N = x.size(0), C = x.size(1);
  visit_floating(x.dtype(), "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = static_cast<const T*>(x.data_ptr());
    const T* w = data_or_null<T>(weight);
    T* ys = static_cast<T*>(y.data_ptr());
    auto* rs = static_cast<ComputeType<T>*>(rstd.data_ptr());
    parallel_for(N, 3 * C, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) rs[i] = rms_norm_row(xs + i * C, w, ys + i * C, C, eps);
    });
  });
}

void CpuBackend::rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                   const Tensor& dy, const Tensor& dx, const Tensor& dweight) {
  const int64_t N = x.size(0), C = x.size(1);
  const RowBlocks blocks(N);
  visit_floating(x.dtype(), "rms_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = static_cast<const T*>(x.data_ptr());
    const T* w = data_or_null<T>(weight);
    const T* dys = static_cast<const T*>(dy.data_ptr());
    const auto* rs = static_cast<const ComputeType<T>*>(rstd.data_ptr());
    T* dxs = static_cast<T*>(dx.data_ptr());
    const bool want_dw = dweight.defined();
    std::vector<double> partial(want_dw ? size_t(blocks.count * C) : 0, 0.0);
    parallel_for(blocks.count, blocks.size * 6 * C, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double* dw = want_dw ? partial.data() + b * C : nullptr;
        for (int64_t i = b * blocks.size; i < std::min(N, (b + 1) * blocks.size); ++i) {
          rms_norm_backward_row(xs + i * C, w, dys + i * C, rs[i], dxs + i * C, dw, C);
        }
      }
    });
    if (want_dw) sum_partials(partial, blocks.count, C, static_cast<T*>(dweight.data_ptr()));
  });
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                            const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const int64_t N = x.size(0), C = x.size(1);
  visit_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = static_cast<const T*>(x.data_ptr());
    const T* w = data_or_null<T>(weight);
    const T* b = data_or_null<T>(bias);
    T* ys = static_cast<T*>(y.data_ptr());
    auto* ms = static_cast<ComputeType<T>*>(mean.data_ptr());
    auto* rs = static_cast<ComputeType<T>*>(rstd.data_ptr());
    parallel_for(N, 4 * C, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        auto [m, r] = layer_norm_row(xs + i * C, w, b, ys + i * C, C, eps);
        ms[i] = m;
        rs[i] = r;
      }
    });
  });
}

void CpuBackend::layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                                     const Tensor& dweight, const Tensor& dbias) {
  const int64_t N = x.size(0), C = x.size(1);
  const RowBlocks blocks(N);
  visit_floating(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = static_cast<const T*>(x.data_ptr());
    const T* w = data_or_null<T>(weight);
    const T* dys = static_cast<const T*>(dy.data_ptr());
    const auto* ms = static_cast<const ComputeType<T>*>(mean.data_ptr());
    const auto* rs = static_cast<const ComputeType<T>*>(rstd.data_ptr());
    T* dxs = static_cast<T*>(dx.data_ptr());
    const bool want_dw = dweight.defined(), want_db = dbias.defined();
    std::vector<double> partial_w(want_dw ? size_t(blocks.count * C) : 0, 0.0);
    std::vector<double> partial_b(want_db ? size_t(blocks.count * C) : 0, 0.0);
    parallel_for(blocks.count, blocks.size * 8 * C, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double* dw = want_dw ? partial_w.data() + b * C : nullptr;
        double* db = want_db ? partial_b.data() + b * C : nullptr;
        for (int64_t i = b * blocks.size; i < std::min(N, (b + 1) * blocks.size); ++i) {
          layer_norm_backward_row(xs + i * C, w, dys + i * C, ms[i], rs[i], dxs + i * C, dw, db, C);
        }
      }
    });
    if (want_dw) sum_partials(partial_w, blocks.count, C, static_cast<T*>(dweight.data_ptr()));
    if (want_db) sum_partials(partial_b, blocks.count, C, static_cast<T*>(dbias.data_ptr()));
  });
}

}  // namespace mnemo::cpu
