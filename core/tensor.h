// Tensor: a strided view into a Storage, plus a slot for autograd.
//
// A Tensor is a cheap handle (one shared_ptr); copies share the same TensorImpl. The impl
// records shape, strides and offset in elements, the dtype, and the storage that holds the
// bytes. Views (transpose, narrow, expand, ...) make a new impl over the same storage.
//
// The autograd slot (AutogradMeta) is declared here so that every layer can carry it, but
// core never interprets it: the autograd/ layer fills grad_fn and runs backward.
//
// Ops are free functions: core::add(a, b) computes without autograd (this layer);
// mnemo::add(a, b) in autograd/ops.h is the differentiable one that user code calls.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace mnemo {

namespace autograd {
struct Node;  // defined in autograd/node.h; core only holds pointers to it
}

struct AutogradMeta;

class TensorImpl {
 public:
  TensorImpl(Storage storage, Shape shape, Strides strides, int64_t offset, DType dtype);

  Storage storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // null until autograd needs it
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (e.g. "no gradient")
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A fresh contiguous tensor with uninitialised contents.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // A view of storage with explicit geometry (strides/offset in elements). Checked against the
  // storage size.
  static Tensor view_of(const Storage& storage, const Shape& shape, const Strides& strides,
                        int64_t offset, DType dtype);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  // Geometry.
  const Shape& shape() const;
  const Strides& strides() const;
  int64_t dim() const { return int64_t(shape().size()); }
  int64_t size(int64_t dim) const;  // negative dims count from the end
  int64_t stride(int64_t dim) const;
  int64_t offset() const;
  int64_t numel() const;
  bool is_contiguous() const;
  // True if storage is used without gaps or overlap in some order (e.g. a transposed matrix).
  bool is_non_overlapping_and_dense() const;

  DType dtype() const;
  Device device() const;
  const Storage& storage() const;
  size_t element_size() const { return dtype_size(dtype()); }

  // Raw pointer to the first element (storage + offset). data<T>() checks the dtype.
  void* data_ptr() const;
  template <typename T>
  T* data() const {
    MNEMO_CHECK(dtype() == dtype_of<T>(), "Tensor::data: tensor is {}, asked for {}", dtype(),
                dtype_of<T>());
    return static_cast<T*>(data_ptr());
  }

  // Element access for tests and small host-side work (copies from the device if needed).
  double item() const;                           // numel must be 1
  double at(const std::vector<int64_t>& index) const;  // one element, any dtype, as double
  template <typename T>
  std::vector<T> to_vector() const;  // all elements in row-major order, converted to T

  // Autograd slot. requires_grad may be set on leaves; grad() is undefined until backward.
  bool requires_grad() const;
  Tensor& set_requires_grad(bool requires_grad = true);
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  bool is_leaf() const;                   // no grad_fn
  AutogradMeta* autograd_meta() const;   // null if never touched by autograd
  AutogradMeta& ensure_autograd_meta() const;
  std::string grad_fn_name() const;  // "" for leaves

  std::string str() const;  // shape, dtype, device and (up to a limit) the values

 private:
  std::shared_ptr<TensorImpl> impl_;
};

using TensorList = std::vector<Tensor>;

// Transforms a gradient before it is used (returning an undefined tensor keeps it as is).
using GradHook = std::function<Tensor(const Tensor& grad)>;
// Runs after a leaf's .grad has received its complete gradient of one backward pass.
using PostAccumulateHook = std::function<void(const Tensor& param)>;

struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;  // keep .grad on a non-leaf
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;  // null for leaves
  std::string_view grad_fn_name;            // the op that made this tensor, e.g. "mul"
  std::vector<GradHook> hooks;
  std::vector<PostAccumulateHook> post_accumulate_hooks;
};

}  // namespace mnemo
