// Derivative rules for elementwise ops. Each rule's math is above it; rules are written with
// the differentiable ops themselves, so they run on every backend. The engine reduces
// broadcast gradients back to each input's shape.
#include <cmath>
#include <numbers>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

namespace {

using autograd::Needs;

Tensor zero_like_scalar(const Tensor& t) {
  return scalar_tensor(0, options_of(t));
}

// dy where mask, else 0.
Tensor masked(const Tensor& mask, const Tensor& dy) {
  return where(mask, dy, zero_like_scalar(dy));
}

// A unary op whose rule needs the input x and/or the output y: dx = dy * local(x, y).
template <typename Local>
Tensor unary_with_rule(autograd::RuleName name, const Tensor& x, Tensor out, Local local) {
  if (autograd::should_record({&x})) {
    autograd::record(name, out, {x},
                     [x = detach(x), y = detach(out), local](const Tensor& dy, const Needs&) {
                       return TensorList{mul(dy, local(x, y))};
                     });
  }
  return out;
}

}  // namespace

// y = a + b  =>  da = dy,  db = dy
Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = core::add(a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record("add", out, {a, b}, [](const Tensor& dy, const Needs&) {
      return TensorList{dy, dy};
    });
  }
  return out;
}

// y = a - b  =>  da = dy,  db = -dy
Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = core::sub(a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record("sub", out, {a, b}, [](const Tensor& dy, const Needs& needs) {
      return TensorList{dy, needs[1] ? neg(dy) : Tensor()};
    });
  }
  return out;
}

// y = a * b  =>  da = dy * b,  db = dy * a
Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = core::mul(a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record(
        "mul", out, {a, b}, [a = detach(a), b = detach(b)](const Tensor& dy, const Needs& needs) {
          return TensorList{needs[0] ? mul(dy, b) : Tensor(), needs[1] ? mul(dy, a) : Tensor()};
        });
  }
  return out;
}

// y = a / b  =>  da = dy / b,  db = -dy * a / b^2 = -dy * y / b
Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = core::div(a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record(
        "div", out, {a, b}, [b = detach(b), y = detach(out)](const Tensor& dy, const Needs& needs) {
          Tensor da = div(dy, b);
          return TensorList{needs[0] ? da : Tensor(), needs[1] ? neg(mul(da, y)) : Tensor()};
        });
  }
  return out;
}

// y = a^b  =>  da = dy * b * a^(b-1),  db = dy * y * log(a)
Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = core::pow(a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record(
        "pow", out, {a, b},
        [a = detach(a), b = detach(b), y = detach(out)](const Tensor& dy, const Needs& needs) {
          return TensorList{needs[0] ? mul(dy, mul(b, pow(a, sub(b, ones_like(b))))) : Tensor(),
                            needs[1] ? mul(dy, mul(y, log(a))) : Tensor()};
        });
  }
  return out;
}

// y = x^p  =>  dx = dy * p * x^(p-1)
Tensor pow(const Tensor& x, double exponent) {
  return unary_with_rule(
      "pow", x, core::pow(x, exponent),
      [exponent](const Tensor& x, const Tensor&) { return mul(pow(x, exponent - 1), exponent); });
}

// y = max(a, b)  =>  dy goes to the larger; ties split it evenly
Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = core::maximum(a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record(
        "maximum", out, {a, b}, [a = detach(a), b = detach(b)](const Tensor& dy, const Needs&) {
          Tensor half = mul(masked(eq(a, b), dy), 0.5);
          return TensorList{add(masked(gt(a, b), dy), half), add(masked(lt(a, b), dy), half)};
        });
  }
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = core::minimum(a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record(
        "minimum", out, {a, b}, [a = detach(a), b = detach(b)](const Tensor& dy, const Needs&) {
          Tensor half = mul(masked(eq(a, b), dy), 0.5);
          return TensorList{add(masked(lt(a, b), dy), half), add(masked(gt(a, b), dy), half)};
        });
  }
  return out;
}

// y = cond ? a : b  =>  da = cond ? dy : 0,  db = cond ? 0 : dy
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = core::where(cond, a, b);
  if (autograd::should_record({&a, &b})) {
    autograd::record("where", out, {Tensor(), a, b},
                     [cond = detach(cond)](const Tensor& dy, const Needs& needs) {
                       Tensor zero = zero_like_scalar(dy);
                       return TensorList{Tensor(), needs[1] ? where(cond, dy, zero) : Tensor(),
                                         needs[2] ? where(cond, zero, dy) : Tensor()};
                     });
  }
  return out;
}

// y = x + s  =>  dx = dy
Tensor add(const Tensor& x, double s) {
  Tensor out = core::affine(x, 1, s);
  if (autograd::should_record({&x})) {
    autograd::record("add", out, {x},
                     [](const Tensor& dy, const Needs&) { return TensorList{dy}; });
  }
  return out;
}

// y = x * s  =>  dx = dy * s
Tensor mul(const Tensor& x, double s) {
  Tensor out = core::affine(x, s, 0);
  if (autograd::should_record({&x})) {
    autograd::record("mul", out, {x},
                     [s](const Tensor& dy, const Needs&) { return TensorList{mul(dy, s)}; });
  }
  return out;
}

// y = alpha x + beta  =>  dx = alpha dy
Tensor affine(const Tensor& x, double alpha, double beta) {
  Tensor out = core::affine(x, alpha, beta);
  if (autograd::should_record({&x})) {
    autograd::record("affine", out, {x}, [alpha](const Tensor& dy, const Needs&) {
      return TensorList{mul(dy, alpha)};
    });
  }
  return out;
}

// y = -x  =>  dx = -dy
Tensor neg(const Tensor& x) {
  Tensor out = core::neg(x);
  if (autograd::should_record({&x})) {
    autograd::record("neg", out, {x},
                     [](const Tensor& dy, const Needs&) { return TensorList{neg(dy)}; });
  }
  return out;
}

// y = e^x  =>  dx = dy * y
Tensor exp(const Tensor& x) {
  return unary_with_rule("exp", x, core::exp(x), [](const Tensor&, const Tensor& y) { return y; });
}

// y = log x  =>  dx = dy / x
Tensor log(const Tensor& x) {
  Tensor out = core::log(x);
  if (autograd::should_record({&x})) {
    autograd::record("log", out, {x}, [x = detach(x)](const Tensor& dy, const Needs&) {
      return TensorList{div(dy, x)};
    });
  }
  return out;
}

// y = sqrt x  =>  dx = dy / (2 y)
Tensor sqrt(const Tensor& x) {
  Tensor out = core::sqrt(x);
  if (autograd::should_record({&x})) {
    autograd::record("sqrt", out, {x}, [y = detach(out)](const Tensor& dy, const Needs&) {
      return TensorList{div(mul(dy, 0.5), y)};
    });
  }
  return out;
}

// y = x^(-1/2)  =>  dx = -dy * y^3 / 2
Tensor rsqrt(const Tensor& x) {
  return unary_with_rule("rsqrt", x, core::rsqrt(x),
                         [](const Tensor&, const Tensor& y) { return mul(pow(y, 3.0), -0.5); });
}

// y = |x|  =>  dx = dy * sign(x)   (0 at x = 0)
Tensor abs(const Tensor& x) {
  return unary_with_rule("abs", x, core::abs(x),
                         [](const Tensor& x, const Tensor&) { return sign(x); });
}

// y = clamp(x, lo, hi)  =>  dx = dy where lo <= x <= hi, else 0
Tensor clamp(const Tensor& x, double lo, double hi) {
  Tensor out = core::clamp(x, lo, hi);
  if (autograd::should_record({&x})) {
    autograd::record("clamp", out, {x}, [x = detach(x), lo, hi](const Tensor& dy, const Needs&) {
      return TensorList{masked(logical_and(ge(x, lo), le(x, hi)), dy)};
    });
  }
  return out;
}

// y = tanh x  =>  dx = dy * (1 - y^2)
Tensor tanh(const Tensor& x) {
  return unary_with_rule("tanh", x, core::tanh(x),
                         [](const Tensor&, const Tensor& y) { return affine(mul(y, y), -1, 1); });
}

// y = sigmoid x  =>  dx = dy * y * (1 - y)
Tensor sigmoid(const Tensor& x) {
  return unary_with_rule("sigmoid", x, core::sigmoid(x),
                         [](const Tensor&, const Tensor& y) { return mul(y, affine(y, -1, 1)); });
}

// y = max(x, 0)  =>  dx = dy where x > 0
Tensor relu(const Tensor& x) {
  Tensor out = core::relu(x);
  if (autograd::should_record({&x})) {
    autograd::record("relu", out, {x}, [x = detach(x)](const Tensor& dy, const Needs&) {
      return TensorList{masked(gt(x, 0.0), dy)};
    });
  }
  return out;
}

// exact:  y = x Phi(x)                    =>  dx = dy * (Phi(x) + x phi(x))
// tanh:   y = x/2 (1 + tanh u), u = k (x + c x^3)
//         =>  dx = dy * (1/2 (1 + tanh u) + x/2 (1 - tanh^2 u) k (1 + 3 c x^2))
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  Tensor out = core::gelu(x, tanh_approximation);
  if (!tanh_approximation) {
    return unary_with_rule("gelu", x, out, [](const Tensor& x, const Tensor&) {
      Tensor cdf = affine(erf(mul(x, std::numbers::sqrt2 / 2)), 0.5, 0.5);
      Tensor pdf = mul(exp(mul(mul(x, x), -0.5)), 1 / std::sqrt(2 * std::numbers::pi));
      return add(cdf, mul(x, pdf));
    });
  }
  return unary_with_rule("gelu", x, out, [](const Tensor& x, const Tensor&) {
    const double k = std::sqrt(2 / std::numbers::pi), c = 0.044715;
    Tensor x2 = mul(x, x);
    Tensor t = tanh(mul(mul(x, affine(x2, c, 1)), k));
    Tensor left = affine(t, 0.5, 0.5);
    Tensor right = mul(mul(x, affine(mul(t, t), -1, 1)), affine(x2, 3 * c * k * 0.5, k * 0.5));
    return add(left, right);
  });
}

// y = x s, s = sigmoid x  =>  dx = dy * s (1 + x (1 - s))
Tensor silu(const Tensor& x) {
  return unary_with_rule("silu", x, core::silu(x), [](const Tensor& x, const Tensor&) {
    Tensor s = sigmoid(x);
    return mul(s, affine(mul(x, affine(s, -1, 1)), 1, 1));
  });
}

// y = log(1 + e^x)  =>  dx = dy * sigmoid(x)
Tensor softplus(const Tensor& x) {
  return unary_with_rule("softplus", x, core::softplus(x),
                         [](const Tensor& x, const Tensor&) { return sigmoid(x); });
}

// y = erf x  =>  dx = dy * 2/sqrt(pi) e^(-x^2)
Tensor erf(const Tensor& x) {
  return unary_with_rule("erf", x, core::erf(x), [](const Tensor& x, const Tensor&) {
    return mul(exp(mul(mul(x, x), -1.0)), 2 / std::sqrt(std::numbers::pi));
  });
}

Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
Tensor operator-(const Tensor& x) {
  return neg(x);
}
Tensor operator+(const Tensor& x, double s) {
  return add(x, s);
}
Tensor operator-(const Tensor& x, double s) {
  return add(x, -s);
}
Tensor operator*(const Tensor& x, double s) {
  return mul(x, s);
}
// Divides (rather than multiplying by 1/s, which would round twice); integers divide as f64.
Tensor operator/(const Tensor& x, double s) {
  DType dtype = is_floating(x.dtype()) ? x.dtype() : DType::f64;
  return div(x, scalar_tensor(s, options_of(x).with_dtype(dtype)));
}
Tensor operator+(double s, const Tensor& x) {
  return add(x, s);
}
Tensor operator-(double s, const Tensor& x) {
  return add(neg(x), s);
}
Tensor operator*(double s, const Tensor& x) {
  return mul(x, s);
}
// y = s / x  =>  dx = -dy s / x^2
Tensor operator/(double s, const Tensor& x) {
  return mul(pow(x, -1.0), s);
}

}  // namespace mnemo
