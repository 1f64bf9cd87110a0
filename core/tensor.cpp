#include "core/tensor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "core/backend.h"
#include "core/ops/view.h"

namespace mnemo {

TensorImpl::TensorImpl(Storage storage_, Shape shape_, Strides strides_, int64_t offset_,
                       DType dtype_)
    : storage(std::move(storage_)),
      shape(std::move(shape_)),
      strides(std::move(strides_)),
      offset(offset_),
      dtype(dtype_) {}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) {
    MNEMO_CHECK(s >= 0, "empty: negative size in shape {}", shape_str(shape));
  }
  Storage storage = make_storage(size_t(mnemo::numel(shape)) * dtype_size(dtype), device);
  return Tensor(std::make_shared<TensorImpl>(std::move(storage), shape, contiguous_strides(shape),
                                             0, dtype));
}

Tensor Tensor::view_of(const Storage& storage, const Shape& shape, const Strides& strides,
                       int64_t offset, DType dtype) {
  MNEMO_CHECK(shape.size() == strides.size(), "view_of: shape {} and strides {} differ in rank",
              shape_str(shape), shape_str(strides));
  MNEMO_CHECK(offset >= 0, "view_of: negative offset {}", offset);
  // The furthest element reachable must lie inside the storage.
  int64_t lo = offset, hi = offset;
  bool empty_view = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    MNEMO_CHECK(shape[i] >= 0, "view_of: negative size in shape {}", shape_str(shape));
    if (shape[i] == 0) empty_view = true;
    int64_t reach = (shape[i] - 1) * strides[i];
    (reach < 0 ? lo : hi) += reach;
  }
  int64_t capacity = int64_t(storage->nbytes() / dtype_size(dtype));
  MNEMO_CHECK(empty_view || (lo >= 0 && hi < capacity),
              "view_of: shape {} strides {} offset {} reach outside a storage of {} elements",
              shape_str(shape), shape_str(strides), offset, capacity);
  return Tensor(std::make_shared<TensorImpl>(storage, shape, strides, offset, dtype));
}

static const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  MNEMO_CHECK(impl != nullptr, "use of an undefined tensor");
  return *impl;
}

const Shape& Tensor::shape() const { return checked(impl_).shape; }
const Strides& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::offset() const { return checked(impl_).offset; }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device(); }
const Storage& Tensor::storage() const { return checked(impl_).storage; }
int64_t Tensor::numel() const { return mnemo::numel(shape()); }

int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[normalize_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  const Shape& s = shape();
  const Strides& st = strides();
  int64_t expected = 1;
  for (size_t i = s.size(); i-- > 0;) {
    if (s[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

bool Tensor::is_non_overlapping_and_dense() const {
  // Sort dims by stride; then they must tile the storage like some permutation of contiguous.
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size)
  for (int64_t i = 0; i < dim(); ++i) {
    if (shape()[i] != 1) dims.push_back({strides()[i], shape()[i]});
  }
  std::sort(dims.begin(), dims.end());
  int64_t expected = 1;
  for (auto [stride, size] : dims) {
    if (stride != expected) return false;
    expected *= size;
  }
  return true;
}

void* Tensor::data_ptr() const {
  const TensorImpl& impl = checked(impl_);
  return static_cast<char*>(impl.storage->data()) + impl.offset * int64_t(dtype_size(impl.dtype));
}

double Tensor::item() const {
  MNEMO_CHECK(numel() == 1, "item: tensor of shape {} has {} elements, expected 1",
              shape_str(shape()), numel());
  return at(std::vector<int64_t>(size_t(dim()), 0));
}

double Tensor::at(const std::vector<int64_t>& index) const {
  MNEMO_CHECK(int64_t(index.size()) == dim(), "at: {} indices for a tensor of rank {}",
              index.size(), dim());
  Tensor host = device().is_cpu() ? *this : core::to(*this, Device::cpu());
  int64_t offset = 0;
  for (int64_t i = 0; i < dim(); ++i) {
    int64_t idx = index[i] < 0 ? index[i] + shape()[i] : index[i];
    MNEMO_CHECK(idx >= 0 && idx < shape()[i], "at: index {} out of range for dim {} of size {}",
                index[i], i, shape()[i]);
    offset += idx * host.strides()[i];
  }
  return visit_dtype(dtype(), "at", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return double(static_cast<const T*>(host.data_ptr())[offset]);
  });
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = core::contiguous(core::to(core::to(*this, Device::cpu()), dtype_of<T>()));
  const T* p = static_cast<const T*>(host.data_ptr());
  return std::vector<T>(p, p + host.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

bool Tensor::requires_grad() const {
  return impl_ && impl_->autograd && impl_->autograd->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  MNEMO_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can be marked (this one comes "
                         "from {}); use detach() first",
              grad_fn_name());
  MNEMO_CHECK(!requires_grad || is_floating(dtype()),
              "set_requires_grad: only floating tensors can require grad, this one is {}",
              dtype());
  ensure_autograd_meta().requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const {
  return impl_ && impl_->autograd ? impl_->autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  MNEMO_CHECK(!grad.defined() || grad.shape() == shape(),
              "set_grad: gradient of shape {} for a tensor of shape {}", shape_str(grad.shape()),
              shape_str(shape()));
  ensure_autograd_meta().grad = grad;
}

bool Tensor::is_leaf() const {
  return !(impl_ && impl_->autograd && impl_->autograd->grad_fn);
}

AutogradMeta* Tensor::autograd_meta() const {
  return impl_ ? impl_->autograd.get() : nullptr;
}

AutogradMeta& Tensor::ensure_autograd_meta() const {
  MNEMO_CHECK(impl_ != nullptr, "autograd: use of an undefined tensor");
  if (!impl_->autograd) impl_->autograd = std::make_shared<AutogradMeta>();
  return *impl_->autograd;
}

std::string Tensor::grad_fn_name() const {
  AutogradMeta* meta = autograd_meta();
  return meta && meta->grad_fn ? std::string(meta->grad_fn_name) : std::string();
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::string out = fmt::format("Tensor(shape={}, dtype={}, device={}", shape_str(shape()),
                                dtype(), device());
  constexpr int64_t kMaxShown = 64;
  std::vector<double> values;
  Tensor flat = core::contiguous(core::to(core::to(*this, Device::cpu()), DType::f64));
  const double* p = static_cast<const double*>(flat.data_ptr());
  int64_t n = std::min(numel(), kMaxShown);
  values.assign(p, p + n);
  out += fmt::format(", values=[{:.6g}{}])", fmt::join(values, ", "), numel() > n ? ", ..." : "");
  return out;
}

}  // namespace mnemo
