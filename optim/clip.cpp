// Gradient norms and clipping: see clip.h.
#include "optim/clip.h"

#include <algorithm>  // core/cpu/parallel.h uses std::min without including it
#include <cmath>

#include "core/cpu/parallel.h"
#include "core/error.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/view.h"

namespace mnemo::optim {

namespace {

// Elements per block of the deterministic sum: block sums are independent of the threads,
// and are then added in block order.
constexpr int64_t kBlock = 4096;

// sum(x^2) of a contiguous CPU tensor, in f64.
template <typename T>
double sum_of_squares_cpu(const T* x, int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(size_t(blocks), 0.0);
  cpu::parallel_for(blocks, kBlock, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
      double acc[4] = {0, 0, 0, 0};  // 4 lanes so the loop vectorises
      int64_t i = lo;
      for (; i + 4 <= hi; i += 4) {
        for (int k = 0; k < 4; ++k) {
          const double v = double(ComputeType<T>(x[i + k]));
          acc[k] += v * v;
        }
      }
      for (; i < hi; ++i) {
        const double v = double(ComputeType<T>(x[i]));
        acc[0] += v * v;
      }
      partial[size_t(b)] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

// The CPU's sum of squares of one gradient, in f64.
double sum_of_squares_on_cpu(const Tensor& grad) {
  if (grad.numel() == 0) return 0;
  const Tensor g = core::contiguous(grad);
  return visit_floating(g.dtype(), "global_grad_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return sum_of_squares_cpu(static_cast<const T*>(g.data_ptr()), g.numel());
  });
}

}  // namespace

double global_grad_norm(const std::vector<Tensor>& params) {
  double total = 0;
  // Gradients on a GPU: their sums of squares are added up there, in parameter order, and
  // read back once (one synchronisation per call, not one per parameter).
  Tensor device_total;
  for (size_t i = 0; i < params.size(); ++i) {
    MNEMO_CHECK(params[i].defined(), "global_grad_norm: parameter {} is undefined", i);
    const Tensor grad = params[i].grad();
    if (!grad.defined()) continue;
    MNEMO_CHECK(is_floating(grad.dtype()), "global_grad_norm: gradient {} is {}, not floating", i,
                grad.dtype());
    if (grad.device().is_cpu()) {
      total += sum_of_squares_on_cpu(grad);
    } else if (grad.numel() > 0) {
      const Tensor g = core::to(grad, DType::f64);
      const Tensor s = core::sum(core::mul(g, g));
      device_total = device_total.defined() ? core::add(device_total, s) : s;
    }
  }
  if (device_total.defined()) total += device_total.item();
  return std::sqrt(total);
}

double clip_factor(double norm, double max_norm) {
  MNEMO_CHECK(std::isfinite(max_norm) && max_norm > 0,
              "clip_grad_norm: max_norm must be finite and > 0, got {}", max_norm);
  return norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  const double norm = global_grad_norm(params);
  if (!std::isfinite(norm)) {
    clip_factor(norm, max_norm);  // still validate max_norm
    return norm;
  }
  const double factor = clip_factor(norm, max_norm);
  if (factor == 1.0) return norm;
  for (const Tensor& p : params) {
    const Tensor grad = p.grad();
    if (grad.defined()) mul_(grad, factor);
  }
  return norm;
}

}  // namespace mnemo::optim
