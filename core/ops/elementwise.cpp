// Elementwise ops: argument checks, broadcasting, dtype promotion, then one backend call.
#include "core/ops/elementwise.h"

#include <limits>

#include "core/ops/factory.h"
#include "core/ops/view.h"

namespace mnemo {

namespace {

// Operands of a binary op, broadcast to a common shape and cast to a common dtype.
struct Broadcast {
  Tensor a, b;
  Shape shape;
};

Broadcast broadcast_pair(const Tensor& a, const Tensor& b, DType dtype, std::string_view op) {
  MNEMO_CHECK(a.defined() && b.defined(), "{}: undefined operand", op);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  return {core::expand(core::to(a, dtype), shape), core::expand(core::to(b, dtype), shape),
          shape};
}

// Compares with a scalar held exactly: in a's dtype if floating, else in f64.
Tensor compare(BinaryOp op, const Tensor& a, double b) {
  DType dtype = is_floating(a.dtype()) ? a.dtype() : DType::f64;
  return core::binary(op, a, scalar_tensor(b, options_of(a).with_dtype(dtype)));
}

// self = self OP other, in place. Computes into self directly when self is contiguous
// (elementwise kernels tolerate out aliasing a), else through a temporary.
const Tensor& binary_inplace(BinaryOp op, const Tensor& self, const Tensor& other) {
  std::string_view name = op_name(op);
  common_device(name, {&self, &other});
  Shape shape = broadcast_shapes(self.shape(), other.shape(), name);
  MNEMO_CHECK(shape == self.shape(), "{}_: cannot broadcast {} into the in-place target {}", name,
              shape_str(other.shape()), shape_str(self.shape()));
  Tensor rhs = core::expand(core::to(other, self.dtype()), shape);
  if (self.is_contiguous()) {
    backend_for(self.device()).binary(op, self, rhs, self);
  } else {
    Tensor tmp = Tensor::empty(shape, self.dtype(), self.device());
    backend_for(self.device()).binary(op, self, rhs, tmp);
    copy_(self, tmp);
  }
  return self;
}

}  // namespace

namespace core {

Tensor unary(UnaryOp op, const Tensor& x, UnaryParams params) {
  MNEMO_CHECK(x.defined(), "{}: undefined input", op_name(op));
  MNEMO_CHECK(accepts_integers(op) || is_floating(x.dtype()),
              "{}: expected a floating tensor, got {} of shape {}", op_name(op), x.dtype(),
              shape_str(x.shape()));
  DType out_dtype = op == UnaryOp::logical_not ? DType::boolean : x.dtype();
  Tensor out = Tensor::empty(x.shape(), out_dtype, x.device());
  if (out.numel() > 0) backend_for(x.device()).unary(op, params, x, out);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  std::string_view name = op_name(op);
  common_device(name, {&a, &b});
  DType dtype = is_logical(op) ? DType::boolean : promote(a.dtype(), b.dtype());
  MNEMO_CHECK(op != BinaryOp::pow || is_floating(dtype),
              "pow: expected floating tensors, got {} and {}", a.dtype(), b.dtype());
  Broadcast bc = broadcast_pair(a, b, dtype, name);
  DType out_dtype = is_comparison(op) || is_logical(op) ? DType::boolean : dtype;
  Tensor out = Tensor::empty(bc.shape, out_dtype, a.device());
  if (out.numel() > 0) backend_for(a.device()).binary(op, bc.a, bc.b, out);
  return out;
}

Tensor neg(const Tensor& x) { return unary(UnaryOp::neg, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::rsqrt, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::abs, x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::sigmoid, x); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::relu, x); }
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return unary(tanh_approximation ? UnaryOp::gelu_tanh : UnaryOp::gelu, x);
}
Tensor silu(const Tensor& x) { return unary(UnaryOp::silu, x); }
Tensor softplus(const Tensor& x) { return unary(UnaryOp::softplus, x); }
Tensor erf(const Tensor& x) { return unary(UnaryOp::erf, x); }
Tensor affine(const Tensor& x, double alpha, double beta) {
  return unary(UnaryOp::affine, x, {alpha, beta});
}
Tensor pow(const Tensor& x, double exponent) {
  return unary(UnaryOp::pow_scalar, x, {exponent, 0});
}
Tensor clamp(const Tensor& x, double lo, double hi) {
  MNEMO_CHECK(!(lo > hi), "clamp: lower bound {} is above upper bound {}", lo, hi);
  return unary(UnaryOp::clamp, x, {lo, hi});
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryOp::pow, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::minimum, a, b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  common_device("where", {&cond, &a, &b});
  MNEMO_CHECK(cond.dtype() == DType::boolean, "where: condition must be bool, got {}",
              cond.dtype());
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(),
                                 "where");
  DType dtype = promote(a.dtype(), b.dtype());
  Tensor out = Tensor::empty(shape, dtype, a.device());
  if (out.numel() > 0) {
    backend_for(a.device())
        .where(expand(cond, shape), expand(to(a, dtype), shape), expand(to(b, dtype), shape), out);
  }
  return out;
}

}  // namespace core

Tensor eq(const Tensor& a, const Tensor& b) { return core::binary(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return core::binary(BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return core::binary(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return core::binary(BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return core::binary(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return core::binary(BinaryOp::ge, a, b); }
Tensor eq(const Tensor& a, double b) { return compare(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, double b) { return compare(BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, double b) { return compare(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, double b) { return compare(BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, double b) { return compare(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, double b) { return compare(BinaryOp::ge, a, b); }
Tensor logical_and(const Tensor& a, const Tensor& b) {
  return core::binary(BinaryOp::logical_and, a, b);
}
Tensor logical_or(const Tensor& a, const Tensor& b) {
  return core::binary(BinaryOp::logical_or, a, b);
}
Tensor logical_not(const Tensor& x) { return core::unary(UnaryOp::logical_not, x); }
Tensor sign(const Tensor& x) { return core::unary(UnaryOp::sign, x); }

const Tensor& add_(const Tensor& self, const Tensor& other) {
  return binary_inplace(BinaryOp::add, self, other);
}
const Tensor& sub_(const Tensor& self, const Tensor& other) {
  return binary_inplace(BinaryOp::sub, self, other);
}
const Tensor& mul_(const Tensor& self, const Tensor& other) {
  return binary_inplace(BinaryOp::mul, self, other);
}
const Tensor& div_(const Tensor& self, const Tensor& other) {
  return binary_inplace(BinaryOp::div, self, other);
}
const Tensor& mul_(const Tensor& self, double alpha) {
  return binary_inplace(BinaryOp::mul, self, scalar_tensor(alpha, options_of(self)));
}
const Tensor& add_(const Tensor& self, double beta) {
  return binary_inplace(BinaryOp::add, self, scalar_tensor(beta, options_of(self)));
}

}  // namespace mnemo
