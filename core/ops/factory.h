// Tensor creation. These have no gradient, so they live directly in namespace mnemo and serve
// every layer. Options default to f32 on the CPU.
#pragma once

#include <initializer_list>
#include <vector>

#include "core/tensor.h"

namespace mnemo {

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool requires_grad = false;

  TensorOptions& with_dtype(DType d) { dtype = d; return *this; }
  TensorOptions& with_device(Device d) { device = d; return *this; }
  TensorOptions& with_requires_grad(bool r = true) { requires_grad = r; return *this; }
};
inline TensorOptions options_of(const Tensor& t) { return {t.dtype(), t.device(), false}; }

Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
// A 0-d tensor holding value.
Tensor scalar_tensor(double value, TensorOptions options = {});
// [start, start + step, ...) strictly below end (above, for a negative step).
Tensor arange(double start, double end, double step = 1, TensorOptions options = {DType::i64});
Tensor arange(int64_t end, TensorOptions options = {DType::i64});

// A tensor holding values (row-major) with the given shape; values are converted to
// options.dtype. values.size() must equal numel(shape).
Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                   TensorOptions options = {});
Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                   TensorOptions options = {});
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape,
                   TensorOptions options = {DType::i64});
Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape,
                   TensorOptions options = {DType::i32});
// Convenience for tests: a 1-d tensor.
Tensor tensor(std::initializer_list<double> values, TensorOptions options = {});

}  // namespace mnemo
