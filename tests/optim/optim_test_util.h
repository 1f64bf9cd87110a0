// Helpers shared by the optimizer tests: deterministic parameters and gradients, and exact
// comparisons of tensors.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/ops/factory.h"
#include "core/tensor.h"

namespace mnemo::test {

// A leaf parameter holding values (converted to dtype), with requires_grad.
inline Tensor make_param(const std::vector<double>& values, const Shape& shape,
                         DType dtype = DType::f64) {
  Tensor p = from_vector(values, shape, TensorOptions{}.with_dtype(dtype));
  p.set_requires_grad();
  return p;
}

// Sets p's gradient to values (rounded to p's dtype) and returns the values it really holds,
// so a reference computed in double sees exactly the gradient the optimizer saw.
inline std::vector<double> set_grad(const Tensor& p, const std::vector<double>& values) {
  Tensor g = from_vector(values, p.shape(), TensorOptions{}.with_dtype(p.dtype()));
  p.set_grad(g);
  return g.to_vector<double>();
}

// A gradient that depends on the current parameter values and the step, so an error in one
// step changes all later gradients: g_i = 0.7 p_i - 0.3 cos(i + step) + 0.05 (i - 2).
inline std::vector<double> grad_rule(const std::vector<double>& p, int step) {
  std::vector<double> g(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    g[i] = 0.7 * p[i] - 0.3 * std::cos(double(i) + step) + 0.05 * (double(i) - 2);
  }
  return g;
}

inline void check_close(const std::vector<double>& got, const std::vector<double>& want,
                        double rtol, double atol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]));
  }
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         a.to_vector<double>() == b.to_vector<double>();
}

}  // namespace mnemo::test
