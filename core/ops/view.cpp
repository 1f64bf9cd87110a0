// View ops: new geometry over the same storage. The only op here that moves data is the
// copy that reshape (and contiguous/clone/to) fall back to.
#include "core/ops/view.h"

#include <algorithm>
#include <numeric>

#include "core/backend.h"

namespace mnemo {

Tensor detach(const Tensor& x) {
  return Tensor(std::make_shared<TensorImpl>(x.storage(), x.shape(), x.strides(), x.offset(),
                                             x.dtype()));
}

const Tensor& copy_(const Tensor& dst, const Tensor& src) {
  MNEMO_CHECK(dst.shape() == src.shape(), "copy_: destination shape {} and source shape {} differ",
              shape_str(dst.shape()), shape_str(src.shape()));
  if (dst.numel() == 0) return dst;
  // Across devices, the non-CPU side's backend moves the bytes.
  Device device = src.device().is_cpu() ? dst.device() : src.device();
  backend_for(device).copy(src, dst);
  return dst;
}

const Tensor& fill_(const Tensor& dst, double value) {
  if (dst.numel() > 0) backend_for(dst.device()).fill(dst, value);
  return dst;
}

void synchronize(Device device) { backend_for(device).synchronize(device); }

namespace core {

namespace {

// Replaces one -1 in shape by the size that makes numel match.
Shape infer_shape(Shape shape, int64_t count, std::string_view op, const Shape& from) {
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MNEMO_CHECK(infer_at < 0, "{}: more than one -1 in shape {}", op, shape_str(shape));
      infer_at = int64_t(i);
    } else {
      MNEMO_CHECK(shape[i] >= 0, "{}: invalid size {} in shape {}", op, shape[i],
                  shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    MNEMO_CHECK(known != 0 && count % known == 0, "{}: cannot reshape {} into {}", op,
                shape_str(from), shape_str(shape));
    shape[infer_at] = count / known;
  }
  MNEMO_CHECK(numel(shape) == count, "{}: cannot reshape {} ({} elements) into {}", op,
              shape_str(from), count, shape_str(shape));
  return shape;
}

// Strides that view x's data in the new shape without copying, if they exist. Old dims are
// taken in chunks that are contiguous within themselves (stride[d-1] == stride[d] * size[d]);
// each chunk must be matched by a run of new dims with the same element count, which then
// get strides stepping through the chunk. (The algorithm PyTorch's view uses.)
bool view_strides(const Tensor& x, const Shape& shape, Strides& out) {
  const Shape& old_shape = x.shape();
  const Strides& old_strides = x.strides();
  if (x.numel() == 0 || old_shape.empty()) {
    out = contiguous_strides(shape);
    return true;
  }
  out.assign(shape.size(), 1);
  int64_t view_d = int64_t(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    bool chunk_ends = d == 0 || (old_shape[d - 1] != 1 &&
                                 old_strides[d - 1] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
      out[view_d] = view_numel * chunk_base_stride;
      view_numel *= shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return false;
    if (d > 0) {
      chunk_base_stride = old_strides[d - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  return view_d == -1;
}

Tensor restride(const Tensor& x, const Shape& shape, const Strides& strides, int64_t offset) {
  return Tensor(std::make_shared<TensorImpl>(x.storage(), shape, strides, offset, x.dtype()));
}

}  // namespace

Tensor view(const Tensor& x, Shape shape) {
  shape = infer_shape(std::move(shape), x.numel(), "view", x.shape());
  Strides strides;
  MNEMO_CHECK(view_strides(x, shape, strides),
              "view: shape {} with strides {} cannot be viewed as {}; use reshape (which copies)",
              shape_str(x.shape()), shape_str(x.strides()), shape_str(shape));
  return restride(x, shape, strides, x.offset());
}

Tensor reshape(const Tensor& x, Shape shape) {
  shape = infer_shape(std::move(shape), x.numel(), "reshape", x.shape());
  Strides strides;
  if (view_strides(x, shape, strides)) return restride(x, shape, strides, x.offset());
  return view(clone(x), shape);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  if (x.dim() == 0) return reshape(x, {1});
  int64_t s = normalize_dim(start_dim, x.dim(), "flatten");
  int64_t e = normalize_dim(end_dim, x.dim(), "flatten");
  MNEMO_CHECK(s <= e, "flatten: start_dim {} is after end_dim {}", start_dim, end_dim);
  Shape shape(x.shape().begin(), x.shape().begin() + s);
  int64_t merged = 1;
  for (int64_t d = s; d <= e; ++d) merged *= x.shape()[d];
  shape.push_back(merged);
  shape.insert(shape.end(), x.shape().begin() + e + 1, x.shape().end());
  return reshape(x, shape);
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  int64_t a = normalize_dim(dim0, x.dim(), "transpose");
  int64_t b = normalize_dim(dim1, x.dim(), "transpose");
  if (x.dim() == 0) return x;
  Shape shape = x.shape();
  Strides strides = x.strides();
  std::swap(shape[a], shape[b]);
  std::swap(strides[a], strides[b]);
  return restride(x, shape, strides, x.offset());
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  MNEMO_CHECK(int64_t(dims.size()) == x.dim(), "permute: {} dims given for a tensor of rank {}",
              dims.size(), x.dim());
  Shape shape(dims.size());
  Strides strides(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = normalize_dim(dims[i], x.dim(), "permute");
    MNEMO_CHECK(!seen[d], "permute: dim {} repeated in [{}]", d, fmt::join(dims, ", "));
    seen[d] = true;
    shape[i] = x.shape()[d];
    strides[i] = x.strides()[d];
  }
  return restride(x, shape, strides, x.offset());
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  MNEMO_CHECK(x.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  int64_t d = normalize_dim(dim, x.dim(), "narrow");
  int64_t size = x.shape()[d];
  if (start < 0) start += size;
  MNEMO_CHECK(start >= 0 && length >= 0 && start + length <= size,
              "narrow: range [{}, {}) out of bounds for dim {} of size {} (shape {})", start,
              start + length, d, size, shape_str(x.shape()));
  Shape shape = x.shape();
  shape[d] = length;
  return restride(x, shape, x.strides(), x.offset() + start * x.strides()[d]);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  MNEMO_CHECK(x.dim() > 0, "slice: cannot slice a 0-d tensor");
  MNEMO_CHECK(step > 0, "slice: step must be positive, got {}", step);
  int64_t d = normalize_dim(dim, x.dim(), "slice");
  int64_t size = x.shape()[d];
  auto clampi = [&](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + size : i, 0, size); };
  start = clampi(start);
  end = std::max(clampi(end), start);
  Shape shape = x.shape();
  Strides strides = x.strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  return restride(x, shape, strides, x.offset() + start * x.strides()[d]);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  MNEMO_CHECK(x.dim() > 0, "select: cannot select from a 0-d tensor");
  int64_t d = normalize_dim(dim, x.dim(), "select");
  int64_t size = x.shape()[d];
  MNEMO_CHECK(index >= -size && index < size,
              "select: index {} out of range for dim {} of size {}", index, d, size);
  if (index < 0) index += size;
  Shape shape = x.shape();
  Strides strides = x.strides();
  int64_t offset = x.offset() + index * strides[d];
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return restride(x, shape, strides, offset);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  MNEMO_CHECK(shape.size() >= size_t(x.dim()), "expand: cannot expand shape {} to fewer dims {}",
              shape_str(x.shape()), shape_str(shape));
  size_t lead = shape.size() - size_t(x.dim());
  Shape out_shape(shape.size());
  Strides strides(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      MNEMO_CHECK(shape[i] >= 0, "expand: invalid size {} in {}", shape[i], shape_str(shape));
      out_shape[i] = shape[i];
      strides[i] = 0;
      continue;
    }
    int64_t have = x.shape()[i - lead];
    int64_t want = shape[i] == -1 ? have : shape[i];
    MNEMO_CHECK(want == have || have == 1, "expand: cannot expand shape {} to {}",
                shape_str(x.shape()), shape_str(shape));
    out_shape[i] = want;
    strides[i] = want == have ? x.strides()[i - lead] : 0;
  }
  return restride(x, out_shape, strides, x.offset());
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return x;
  int64_t d = normalize_dim(dim, x.dim(), "squeeze");
  if (x.shape()[d] != 1) return x;
  Shape shape = x.shape();
  Strides strides = x.strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return restride(x, shape, strides, x.offset());
}

Tensor squeeze(const Tensor& x) {
  Shape shape;
  Strides strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.shape()[d] == 1) continue;
    shape.push_back(x.shape()[d]);
    strides.push_back(x.strides()[d]);
  }
  return restride(x, shape, strides, x.offset());
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  int64_t d = normalize_dim(dim, x.dim() + 1, "unsqueeze");
  Shape shape = x.shape();
  Strides strides = x.strides();
  int64_t stride = d < x.dim() ? x.strides()[d] * x.shape()[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return restride(x, shape, strides, x.offset());
}

Tensor as_strided(const Tensor& x, const Shape& shape, const Strides& strides, int64_t offset) {
  return Tensor::view_of(x.storage(), shape, strides, offset, x.dtype());
}

Tensor contiguous(const Tensor& x) { return x.is_contiguous() ? x : clone(x); }

Tensor clone(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  copy_(out, x);
  return out;
}

Tensor to(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  copy_(out, x);
  return out;
}

Tensor to(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device);
  copy_(out, x);
  return out;
}

}  // namespace core
}  // namespace mnemo
