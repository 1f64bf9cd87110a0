// Derivative rules for views and copies. A view's gradient is the inverse view of dy, or for
// ops that drop elements (narrow, select, slice) dy written into zeros of the input's shape.
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

namespace {

using autograd::Needs;

// zeros(input_shape) with dy written into the region view_of(zeros) selects.
template <typename ViewFn>
Tensor scatter_into_zeros(const Tensor& dy, const Shape& input_shape, ViewFn view_of) {
  Tensor dx = zeros(input_shape, options_of(dy));
  copy_(view_of(dx), dy);
  return dx;
}

// The same for a contiguous range [start, start + length) of dim: dy is written into the
// range and zeros around it, so every element is written once (zeros and then dy would write
// the range twice: most of the tensor when the range is most of it).
Tensor scatter_into_range(const Tensor& dy, const Shape& input_shape, int64_t dim, int64_t start,
                          int64_t length, const Tensor& dy_in_range) {
  Tensor dx = Tensor::empty(input_shape, dy.dtype(), dy.device());
  const int64_t d = normalize_dim(dim, int64_t(input_shape.size()), "narrow");
  const int64_t size = input_shape[size_t(d)];
  if (start < 0) start += size;  // narrow counts a negative start from the end
  const int64_t end = start + length;
  copy_(core::narrow(dx, d, start, length), dy_in_range);
  if (start > 0) fill_(core::narrow(dx, d, 0, start), 0);
  if (end < size) fill_(core::narrow(dx, d, end, size - end), 0);
  return dx;
}

}  // namespace

// y = x viewed as shape  =>  dx = dy viewed as x's shape
Tensor view(const Tensor& x, Shape shape) {
  Tensor out = core::view(x, std::move(shape));
  if (autograd::should_record({&x})) {
    autograd::record("view", out, {x}, [shape = x.shape()](const Tensor& dy, const Needs&) {
      return TensorList{reshape(dy, shape)};
    });
  }
  return out;
}

Tensor reshape(const Tensor& x, Shape shape) {
  Tensor out = core::reshape(x, std::move(shape));
  if (autograd::should_record({&x})) {
    autograd::record("reshape", out, {x}, [shape = x.shape()](const Tensor& dy, const Needs&) {
      return TensorList{reshape(dy, shape)};
    });
  }
  return out;
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  Tensor out = core::flatten(x, start_dim, end_dim);
  if (autograd::should_record({&x})) {
    autograd::record("flatten", out, {x}, [shape = x.shape()](const Tensor& dy, const Needs&) {
      return TensorList{reshape(dy, shape)};
    });
  }
  return out;
}

// y = x^T (dims a, b)  =>  dx = dy^T
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  Tensor out = core::transpose(x, dim0, dim1);
  if (autograd::should_record({&x})) {
    autograd::record("transpose", out, {x}, [dim0, dim1](const Tensor& dy, const Needs&) {
      return TensorList{transpose(dy, dim0, dim1)};
    });
  }
  return out;
}

// y = permute(x, p)  =>  dx = permute(dy, p^-1)
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor out = core::permute(x, dims);
  if (autograd::should_record({&x})) {
    std::vector<int64_t> inverse(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) {
      inverse[size_t(normalize_dim(dims[i], x.dim(), "permute"))] = int64_t(i);
    }
    autograd::record("permute", out, {x}, [inverse](const Tensor& dy, const Needs&) {
      return TensorList{permute(dy, inverse)};
    });
  }
  return out;
}

// y = x[start:start+length] along dim  =>  dx = zeros with dy in that range
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  Tensor out = core::narrow(x, dim, start, length);
  if (autograd::should_record({&x})) {
    autograd::record("narrow", out, {x},
                     [shape = x.shape(), dim, start, length](const Tensor& dy, const Needs&) {
                       return TensorList{scatter_into_range(dy, shape, dim, start, length, dy)};
                     });
  }
  return out;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Tensor out = core::slice(x, dim, start, end, step);
  if (autograd::should_record({&x})) {
    autograd::record("slice", out, {x},
                     [shape = x.shape(), dim, start, end, step](const Tensor& dy, const Needs&) {
                       return TensorList{scatter_into_zeros(dy, shape, [&](const Tensor& dx) {
                         return core::slice(dx, dim, start, end, step);
                       })};
                     });
  }
  return out;
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  Tensor out = core::select(x, dim, index);
  if (autograd::should_record({&x})) {
    autograd::record(
        "select", out, {x}, [shape = x.shape(), dim, index](const Tensor& dy, const Needs&) {
          const int64_t d = normalize_dim(dim, int64_t(shape.size()), "select");
          const int64_t i = index < 0 ? index + shape[size_t(d)] : index;
          return TensorList{scatter_into_range(dy, shape, d, i, 1, core::unsqueeze(dy, d))};
        });
  }
  return out;
}

// y = x broadcast to shape  =>  dx = dy summed over the broadcast dims (the engine's sum_to)
Tensor expand(const Tensor& x, const Shape& shape) {
  Tensor out = core::expand(x, shape);
  if (autograd::should_record({&x})) {
    autograd::record("expand", out, {x},
                     [](const Tensor& dy, const Needs&) { return TensorList{dy}; });
  }
  return out;
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  Tensor out = core::squeeze(x, dim);
  if (autograd::should_record({&x})) {
    autograd::record("squeeze", out, {x}, [shape = x.shape()](const Tensor& dy, const Needs&) {
      return TensorList{reshape(dy, shape)};
    });
  }
  return out;
}

Tensor squeeze(const Tensor& x) {
  Tensor out = core::squeeze(x);
  if (autograd::should_record({&x})) {
    autograd::record("squeeze", out, {x}, [shape = x.shape()](const Tensor& dy, const Needs&) {
      return TensorList{reshape(dy, shape)};
    });
  }
  return out;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  Tensor out = core::unsqueeze(x, dim);
  if (autograd::should_record({&x})) {
    autograd::record("unsqueeze", out, {x}, [shape = x.shape()](const Tensor& dy, const Needs&) {
      return TensorList{reshape(dy, shape)};
    });
  }
  return out;
}

// Copies: the gradient passes through unchanged (the engine casts it back to x's dtype).
Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return clone(x);
}

Tensor clone(const Tensor& x) {
  Tensor out = core::clone(x);
  if (autograd::should_record({&x})) {
    autograd::record("clone", out, {x},
                     [](const Tensor& dy, const Needs&) { return TensorList{dy}; });
  }
  return out;
}

Tensor to(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = core::to(x, dtype);
  if (autograd::should_record({&x}) && is_floating(dtype)) {
    autograd::record("to", out, {x}, [](const Tensor& dy, const Needs&) { return TensorList{dy}; });
  }
  return out;
}

// y = x moved to device  =>  dx = dy moved back
Tensor to(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor out = core::to(x, device);
  if (autograd::should_record({&x})) {
    autograd::record("to", out, {x}, [device = x.device()](const Tensor& dy, const Needs&) {
      return TensorList{to(dy, device)};
    });
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  int64_t d = normalize_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    MNEMO_CHECK(s >= 0, "split: negative size {}", s);
    total += s;
  }
  MNEMO_CHECK(total == x.shape()[d], "split: sizes [{}] add up to {}, but dim {} has size {}",
              fmt::join(sizes, ", "), total, d, x.shape()[d]);
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(narrow(x, d, start, s));
    start += s;
  }
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  MNEMO_CHECK(size > 0, "split: piece size must be positive, got {}", size);
  int64_t length = x.size(dim);
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < length; start += size) {
    sizes.push_back(std::min(size, length - start));
  }
  return split(x, sizes, dim);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  MNEMO_CHECK(chunks > 0, "chunk: number of chunks must be positive, got {}", chunks);
  int64_t length = x.size(dim);
  return split(x, std::max<int64_t>(1, (length + chunks - 1) / chunks), dim);
}

}  // namespace mnemo
