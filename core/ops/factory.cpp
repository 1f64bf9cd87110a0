#include "core/ops/factory.h"

#include <cmath>

#include "core/backend.h"

namespace mnemo {

Tensor empty(const Shape& shape, TensorOptions options) {
  Tensor t = Tensor::empty(shape, options.dtype, options.device);
  if (options.requires_grad) t.set_requires_grad(true);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions options) {
  Tensor t = Tensor::empty(shape, options.dtype, options.device);
  backend_for(options.device).fill(t, value);
  if (options.requires_grad) t.set_requires_grad(true);
  return t;
}

Tensor zeros(const Shape& shape, TensorOptions options) { return full(shape, 0, options); }
Tensor ones(const Shape& shape, TensorOptions options) { return full(shape, 1, options); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), options_of(t)); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), options_of(t)); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), options_of(t)); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, options_of(t)); }
Tensor scalar_tensor(double value, TensorOptions options) { return full({}, value, options); }

Tensor arange(double start, double end, double step, TensorOptions options) {
  MNEMO_CHECK(step != 0 && std::isfinite(step) && std::isfinite(start) && std::isfinite(end),
              "arange: invalid range start={} end={} step={}", start, end, step);
  int64_t n = std::max<int64_t>(0, int64_t(std::ceil((end - start) / step)));
  Tensor t = Tensor::empty({n}, options.dtype, options.device);
  backend_for(options.device).arange(t, start, step);
  return t;
}

Tensor arange(int64_t end, TensorOptions options) { return arange(0, double(end), 1, options); }

namespace {

template <typename T>
Tensor from_host(const std::vector<T>& values, const Shape& shape, TensorOptions options) {
  MNEMO_CHECK(int64_t(values.size()) == numel(shape),
              "from_vector: {} values for shape {} ({} elements)", values.size(), shape_str(shape),
              numel(shape));
  // Wrap the host data as a tensor of T, then convert/copy into the requested dtype/device.
  Tensor host = Tensor::empty(shape, dtype_of<T>(), Device::cpu());
  std::copy(values.begin(), values.end(), static_cast<T*>(host.data_ptr()));
  Tensor out = Tensor::empty(shape, options.dtype, options.device);
  backend_for(options.device).copy(host, out);
  if (options.requires_grad) out.set_requires_grad(true);
  return out;
}

}  // namespace

Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions options) {
  return from_host(values, shape, options);
}
Tensor from_vector(const std::vector<float>& values, const Shape& shape, TensorOptions options) {
  return from_host(values, shape, options);
}
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape,
                   TensorOptions options) {
  return from_host(values, shape, options);
}
Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape,
                   TensorOptions options) {
  return from_host(values, shape, options);
}
Tensor tensor(std::initializer_list<double> values, TensorOptions options) {
  return from_host(std::vector<double>(values), {int64_t(values.size())}, options);
}

}  // namespace mnemo
