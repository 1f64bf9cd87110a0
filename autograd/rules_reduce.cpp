// Derivative rules for reductions and scans.
//
// A reduction over dims maps x to y with those dims gone (or kept as size 1). Its gradient
// starts from dy reshaped to the keepdim shape, which then broadcasts against x: that is all
// `keep` below does. mean, var and norm are composites of differentiable ops and need no rule
// of their own; sum, max/min, logsumexp, cumsum and topk have explicit rules.
#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

namespace {

using autograd::Needs;

// dy (reduced shape) as the keepdim shape, so that it broadcasts against x.
Tensor keep(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims,
            bool keepdim) {
  return keepdim ? dy : reshape(dy, reduced_shape(x_shape, dims, true));
}

// Number of elements each output of a reduction over dims sums.
int64_t reduced_count(const Shape& shape, const std::vector<int64_t>& dims) {
  int64_t count = 1;
  for (int64_t d : dims) count *= shape[size_t(d)];
  return count;
}

// x / n as a true division (x * (1/n) would round twice).
Tensor divide(const Tensor& x, double n) {
  return div(x, scalar_tensor(n, options_of(x)));
}

void check_floating(const Tensor& x, std::string_view op) {
  MNEMO_CHECK(x.defined(), "{}: undefined input", op);
  MNEMO_CHECK(is_floating(x.dtype()), "{}: expected a floating tensor, got {} of shape {}", op,
              x.dtype(), shape_str(x.shape()));
}

// y = max (or min) over dims  =>  dx = dy * [x == y] / (number of positions equal to y)
Tensor extreme(autograd::RuleName name, Tensor out, const Tensor& x,
               const std::vector<int64_t>& dims, bool keepdim) {
  if (autograd::should_record({&x})) {
    std::vector<int64_t> norm = normalize_dims(dims, x.dim(), name.str());
    autograd::record(
        name, out, {x},
        [x = detach(x), y = detach(out), norm, keepdim](const Tensor& dy, const Needs&) {
          Tensor hit = to(eq(x, keep(y, x.shape(), norm, keepdim)), x.dtype());
          Tensor ties = core::sum(hit, norm, true);
          return TensorList{mul(div(keep(dy, x.shape(), norm, keepdim), ties), hit)};
        });
  }
  return out;
}

// Inclusive cumsum along dim, forwards or backwards (the adjoint of one is the other).
// y_t = sum_{s <= t} x_s  =>  dx_s = sum_{t >= s} dy_t  (a reverse cumsum)
Tensor cumsum_directed(const Tensor& x, int64_t dim, bool reverse) {
  Tensor out = core::cumsum(x, dim, reverse);
  if (autograd::should_record({&x})) {
    autograd::record("cumsum", out, {x}, [dim, reverse](const Tensor& dy, const Needs&) {
      return TensorList{cumsum_directed(dy, dim, !reverse)};
    });
  }
  return out;
}

}  // namespace

// y = sum over dims of x  =>  dx = dy broadcast back over the reduced dims
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = core::sum(x, dims, keepdim);
  if (autograd::should_record({&x})) {
    std::vector<int64_t> norm = normalize_dims(dims, x.dim(), "sum");
    autograd::record("sum", out, {x},
                     [shape = x.shape(), norm, keepdim](const Tensor& dy, const Needs&) {
                       return TensorList{expand(keep(dy, shape, norm, keepdim), shape)};
                     });
  }
  return out;
}

// mean = sum / count (composite: the gradient comes from sum and mul)
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_floating(x, "mean");
  const int64_t count = reduced_count(x.shape(), normalize_dims(dims, x.dim(), "mean"));
  return divide(sum(x, dims, keepdim), double(count));
}

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extreme("max", core::amax(x, dims, keepdim), x, dims, keepdim);
}

Tensor min(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extreme("min", core::amin(x, dims, keepdim), x, dims, keepdim);
}

// y = log sum exp x  =>  dx = dy * exp(x - y)   (softmax of x over dims, times dy)
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = core::logsumexp(x, dims, keepdim);
  if (autograd::should_record({&x})) {
    std::vector<int64_t> norm = normalize_dims(dims, x.dim(), "logsumexp");
    autograd::record(
        "logsumexp", out, {x},
        [x = detach(x), y = detach(out), norm, keepdim](const Tensor& dy, const Needs&) {
          Tensor p = exp(sub(x, keep(y, x.shape(), norm, keepdim)));
          return TensorList{mul(keep(dy, x.shape(), norm, keepdim), p)};
        });
  }
  return out;
}

// var = sum((x - mean)^2) / (count - correction)   (composite)
Tensor var(const Tensor& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  check_floating(x, "var");
  MNEMO_CHECK(correction >= 0, "var: correction must be >= 0, got {}", correction);
  const int64_t count = reduced_count(x.shape(), normalize_dims(dims, x.dim(), "var"));
  const int64_t dof = std::max<int64_t>(0, count - correction);  // 0 gives inf/nan, as in NumPy
  Tensor centered = sub(x, mean(x, dims, true));
  return divide(sum(mul(centered, centered), dims, keepdim), double(dof));
}

// ||x||_p = (sum |x|^p)^(1/p)   (composite; p = 2 as sqrt(sum(x*x)), p = inf as max |x|)
Tensor norm(const Tensor& x, double p, const std::vector<int64_t>& dims, bool keepdim) {
  check_floating(x, "norm");
  MNEMO_CHECK(p > 0, "norm: p must be positive, got {}", p);
  if (p == 2) return sqrt(sum(mul(x, x), dims, keepdim));
  if (p == 1) return sum(abs(x), dims, keepdim);
  if (std::isinf(p)) return max(abs(x), dims, keepdim);
  return pow(sum(pow(abs(x), p), dims, keepdim), 1.0 / p);
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  return cumsum_directed(x, dim, false);
}

// values = x at indices along dim  =>  dx = zeros(x) with dvalues added at indices
TopKResult topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  core::TopK result = core::topk(x, k, dim, largest);
  if (autograd::should_record({&x})) {
    const int64_t d = normalize_dim(dim, x.dim(), "topk");
    autograd::record(
        "topk", result.values, {x},
        [shape = x.shape(), d, indices = result.indices](const Tensor& dy, const Needs&) {
          return TensorList{scatter_add(zeros(shape, options_of(dy)), d, indices, dy)};
        });
  }
  return {result.values, result.indices};
}

// Gradient reduction of a broadcast: the adjoint of expand.
Tensor sum_to(const Tensor& x, const Shape& shape) {
  Tensor out = core::sum_to(x, shape);
  if (autograd::should_record({&x}) && !out.is_same(x)) {
    autograd::record("sum_to", out, {x}, [shape = x.shape()](const Tensor& dy, const Needs&) {
      return TensorList{expand(dy, shape)};
    });
  }
  return out;
}

}  // namespace mnemo
