// Elementwise ops without autograd. Binary ops broadcast (NumPy rules) and promote dtypes
// (core/dtype.h promote); comparisons return bool. Scalars keep the tensor's dtype.
#pragma once

#include "core/backend.h"
#include "core/tensor.h"

namespace mnemo {

// Not differentiable: declared once, here, for every layer.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& x);
Tensor sign(const Tensor& x);

// In place: self = self OP other (other broadcast to self's shape, cast to self's dtype).
// For optimizers and gradient accumulation; never recorded by autograd.
const Tensor& add_(const Tensor& self, const Tensor& other);
const Tensor& sub_(const Tensor& self, const Tensor& other);
const Tensor& mul_(const Tensor& self, const Tensor& other);
const Tensor& div_(const Tensor& self, const Tensor& other);
const Tensor& mul_(const Tensor& self, double alpha);
const Tensor& add_(const Tensor& self, double beta);

namespace core {

Tensor unary(UnaryOp op, const Tensor& x, UnaryParams params = {});
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor erf(const Tensor& x);
Tensor affine(const Tensor& x, double alpha, double beta);  // alpha * x + beta
Tensor pow(const Tensor& x, double exponent);
Tensor clamp(const Tensor& x, double lo, double hi);  // -inf / +inf for no bound

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// cond ? a : b, all three broadcast together; cond must be bool.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

}  // namespace core
}  // namespace mnemo
