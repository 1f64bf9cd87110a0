// Derivative rules for indexing and joining.
//
// Reading through an index and accumulating through it are adjoint to each other:
//   index_select (out[i] = x[index[i]])   <->  index_add  (out[index[i]] += src[i])
//   gather       (out[p] = x[index[p]])   <->  scatter_add (out[index[p]] += src[p])
// so each rule is the other op, and the pairs differentiate twice. Joining ops are adjoint to
// cutting: concat's gradient is narrow views of dy, and pad's gradient is pad with negated
// amounts (padding is cropped away, cropped parts get zeros).
#include "autograd/exact_grad.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

namespace {

using autograd::Needs;

// index_add with a rule (used by index_select's rule, so that it differentiates again).
// y = x with src added at rows index along dim  =>  dx = dy,  dsrc = index_select(dy, index)
Tensor differentiable_index_add(const Tensor& x, int64_t dim, const Tensor& index,
                                const Tensor& src) {
  Tensor out = core::index_add(x, dim, index, src);
  if (autograd::should_record({&x, &src})) {
    autograd::record("index_add", out, {x, src},
                     [dim, index = detach(index)](const Tensor& dy, const Needs& needs) {
                       return TensorList{needs[0] ? dy : Tensor(),
                                         needs[1] ? index_select(dy, dim, index) : Tensor()};
                     });
  }
  return out;
}

}  // namespace

// y = weight[ids]  =>  dweight = zeros (V, C) with each row of dy added at its id
// (core::embedding_backward, the explicit backward op; not itself differentiable).
Tensor embedding(const Tensor& weight, const Tensor& ids) {
  Tensor out = core::embedding(weight, ids);
  if (autograd::should_record({&weight})) {
    autograd::record("embedding", out, {weight},
                     [ids = detach(ids), rows = weight.shape()[0]](const Tensor& dy, const Needs&) {
                       // Rows added in f64 under ExactGradGuard (split-invariant).
                       const Tensor g = to(dy, autograd::exact_grad_dtype(dy.dtype()));
                       return TensorList{core::embedding_backward(g, ids, rows)};
                     });
  }
  return out;
}

// y = x[.., index, ..] along dim  =>  dx = zeros(x) with dy added at index (index_add)
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor out = core::index_select(x, dim, index);
  if (autograd::should_record({&x})) {
    autograd::record(
        "index_select", out, {x},
        [shape = x.shape(), dim, index = detach(index)](const Tensor& dy, const Needs&) {
          return TensorList{differentiable_index_add(zeros(shape, options_of(dy)), dim, index, dy)};
        });
  }
  return out;
}

// y[p] = x[p with dim -> index[p]]  =>  dx = zeros(x) with dy scattered at index (scatter_add)
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor out = core::gather(x, dim, index);
  if (autograd::should_record({&x})) {
    autograd::record(
        "gather", out, {x},
        [shape = x.shape(), dim, index = detach(index)](const Tensor& dy, const Needs&) {
          return TensorList{scatter_add(zeros(shape, options_of(dy)), dim, index, dy)};
        });
  }
  return out;
}

// y = x with src[p] added at x[p with dim -> index[p]]  =>  dx = dy,  dsrc = gather(dy, index)
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor out = core::scatter_add(x, dim, index, src);
  if (autograd::should_record({&x, &src})) {
    autograd::record(
        "scatter_add", out, {x, src},
        [dim, index = detach(index)](const Tensor& dy, const Needs& needs) {
          return TensorList{needs[0] ? dy : Tensor(), needs[1] ? gather(dy, dim, index) : Tensor()};
        });
  }
  return out;
}

// y = [x_0, x_1, ..] along dim  =>  dx_i = dy narrowed to x_i's range
Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor out = core::concat(xs, dim);
  if (autograd::should_record(xs)) {
    const int64_t d = normalize_dim(dim, out.dim(), "concat");
    std::vector<int64_t> sizes;
    for (const Tensor& x : xs) sizes.push_back(x.shape()[d]);
    autograd::record("concat", out, xs, [d, sizes](const Tensor& dy, const Needs& needs) {
      TensorList grads;
      int64_t start = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        grads.push_back(needs[i] ? narrow(dy, d, start, sizes[i]) : Tensor());
        start += sizes[i];
      }
      return grads;
    });
  }
  return out;
}

// stack = unsqueeze each at dim, then concat (composite)
Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  MNEMO_CHECK(!xs.empty(), "stack: expected at least one tensor");
  for (size_t i = 0; i < xs.size(); ++i) {
    MNEMO_CHECK(xs[i].defined(), "stack: undefined input {}", i);
    MNEMO_CHECK(xs[i].shape() == xs[0].shape(), "stack: tensor {} has shape {}, expected {}", i,
                shape_str(xs[i].shape()), shape_str(xs[0].shape()));
  }
  const int64_t d = normalize_dim(dim, xs[0].dim() + 1, "stack");
  TensorList expanded;
  for (const Tensor& x : xs) expanded.push_back(unsqueeze(x, d));
  return concat(expanded, d);
}

// y = pad(x, pads)  =>  dx = pad(dy, -pads): the padding is cropped off, cropped parts get 0
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  Tensor out = core::pad(x, pads, value);
  if (autograd::should_record({&x})) {
    std::vector<int64_t> inverse;
    for (int64_t p : pads) inverse.push_back(-p);
    autograd::record("pad", out, {x}, [inverse](const Tensor& dy, const Needs&) {
      return TensorList{pad(dy, inverse, 0)};
    });
  }
  return out;
}

}  // namespace mnemo
