// Elementwise kernels: unary, binary (broadcast through stride-0 views) and where.
//
// Each op is a small functor on the compute type C (f32 for bf16/f16). The row body is a
// plain loop over contiguous memory when every operand's inner stride is 1, which is the
// case the compiler vectorises; otherwise it steps by the strides.
#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace mnemo::cpu {

namespace {

template <typename C>
C gelu_exact(C x) {  // 0.5 x (1 + erf(x / sqrt 2)), with no cancellation in 1 + erf for x << 0
  return C(0.5) * x * std::erfc(-x * C(0.70710678118654752440));
}

template <typename C>
C gelu_tanh(C x) {
  // 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x^3): the sigmoid form has
  // no cancellation for x << 0, where 1 + tanh u is a difference of nearly equal numbers.
  const C k = C(0.79788456080286535588);  // sqrt(2/pi)
  return x / (C(1) + std::exp(C(-2) * k * (x + C(0.044715) * x * x * x)));
}

template <typename C>
C softplus(C x) {  // log(1 + e^x) without overflow
  return x > C(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

template <typename C>
C sigmoid(C x) {
  return x >= C(0) ? C(1) / (C(1) + std::exp(-x)) : std::exp(x) / (C(1) + std::exp(x));
}

static_assert(size_t(UnaryOp::count) == 19, "a new unary op needs a case here");
// Calls body(f) with f the scalar function of op on compute type C.
template <typename C, typename Body>
void with_unary(UnaryOp op, const UnaryParams& p, Body&& body) {
  const C alpha = C(p.alpha), beta = C(p.beta);
  switch (op) {
    case UnaryOp::neg: return body([](C x) { return -x; });
    case UnaryOp::exp: return body([](C x) { return std::exp(x); });
    case UnaryOp::log: return body([](C x) { return std::log(x); });
    case UnaryOp::sqrt: return body([](C x) { return std::sqrt(x); });
    case UnaryOp::rsqrt: return body([](C x) { return C(1) / std::sqrt(x); });
    case UnaryOp::abs: return body([](C x) { return std::abs(x); });
    case UnaryOp::tanh: return body([](C x) { return std::tanh(x); });
    case UnaryOp::sigmoid: return body([](C x) { return sigmoid(x); });
    case UnaryOp::relu: return body([](C x) { return x > C(0) ? x : C(0); });
    case UnaryOp::gelu: return body([](C x) { return gelu_exact(x); });
    case UnaryOp::gelu_tanh: return body([](C x) { return gelu_tanh(x); });
    case UnaryOp::silu: return body([](C x) { return x * sigmoid(x); });
    case UnaryOp::softplus: return body([](C x) { return softplus(x); });
    case UnaryOp::erf: return body([](C x) { return std::erf(x); });
    case UnaryOp::sign: return body([](C x) { return C((x > C(0)) - (x < C(0))); });
    case UnaryOp::logical_not: return body([](C x) { return C(x == C(0)); });
    case UnaryOp::affine: return body([=](C x) { return alpha * x + beta; });
    case UnaryOp::pow_scalar:
      if (p.alpha == 2) return body([](C x) { return x * x; });
      return body([=](C x) { return std::pow(x, alpha); });
    case UnaryOp::clamp:
      return body([=](C x) { return x < alpha ? alpha : (x > beta ? beta : x); });
    case UnaryOp::count: break;
  }
  fail_internal("unary: invalid op {}", int(op));
}

static_assert(size_t(BinaryOp::count) == 15, "a new binary op needs a case here");
template <typename C, typename Body>
void with_binary(BinaryOp op, Body&& body) {
  switch (op) {
    case BinaryOp::add: return body([](C a, C b) { return a + b; });
    case BinaryOp::sub: return body([](C a, C b) { return a - b; });
    case BinaryOp::mul: return body([](C a, C b) { return a * b; });
    case BinaryOp::div:
      if constexpr (std::is_integral_v<C>) {
        return body([](C a, C b) { return b == 0 ? C(0) : a / b; });  // no UB on x / 0
      } else {
        return body([](C a, C b) { return a / b; });
      }
    case BinaryOp::pow: return body([](C a, C b) { return C(std::pow(a, b)); });
    case BinaryOp::maximum: return body([](C a, C b) { return a > b || a != a ? a : b; });
    case BinaryOp::minimum: return body([](C a, C b) { return a < b || a != a ? a : b; });
    case BinaryOp::eq: return body([](C a, C b) { return a == b; });
    case BinaryOp::ne: return body([](C a, C b) { return a != b; });
    case BinaryOp::lt: return body([](C a, C b) { return a < b; });
    case BinaryOp::le: return body([](C a, C b) { return a <= b; });
    case BinaryOp::gt: return body([](C a, C b) { return a > b; });
    case BinaryOp::ge: return body([](C a, C b) { return a >= b; });
    case BinaryOp::logical_and: return body([](C a, C b) { return a != C(0) && b != C(0); });
    case BinaryOp::logical_or: return body([](C a, C b) { return a != C(0) || b != C(0); });
    case BinaryOp::count: break;
  }
  fail_internal("binary: invalid op {}", int(op));
}

// Calls fn(TypeTag<O>{}) with O the output's storage type, which is the input's T or bool
// (comparisons, logical ops): only those two are instantiated. (Visiting all seven output
// dtypes instantiated 49 loops per op and made this file take minutes to compile.)
template <typename T, typename Fn>
void with_output_type(DType out, std::string_view op, Fn&& fn) {
  if (out == dtype_of<T>()) return fn(TypeTag<T>{});
  if (out == DType::boolean) return fn(TypeTag<uint8_t>{});
  fail_internal("{}: output dtype {} is neither the input's nor bool", op, dtype_name(out));
}

// Transcendental ops cost more per element; this steers the parallel threshold.
int64_t unary_cost(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg:
    case UnaryOp::abs:
    case UnaryOp::relu:
    case UnaryOp::affine:
    case UnaryOp::clamp:
    case UnaryOp::sign:
    case UnaryOp::logical_not: return 1;
    default: return 8;
  }
}

// Transcendental ops on f32/f64 go through Eigen's SIMD implementations (exp, log, tanh: a few
// ulp, vectorised), which the plain loop above cannot use: the compiler only vectorises
// std::exp under -ffast-math, which mnemo does not use (NaN must survive). sigmoid and silu are
// written with exp, not Eigen's logistic(): that one is accurate in absolute terms only, 1.8e-4
// relative at x = -8.7 in f32 (the CUDA backend's comparison tests found it).
// eigen_line applies op to one line of n elements (strides in elements; vectorised when both
// are 1) and returns false for ops without an Eigen path.
template <typename T>
bool eigen_line(UnaryOp op, const T* x, int64_t x_stride, T* out, int64_t out_stride, int64_t n) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  auto apply = [&](auto expression_of) {
    if (x_stride == 1 && out_stride == 1) {
      Eigen::Map<Array>(out, n) = expression_of(Eigen::Map<const Array>(x, n));
    } else {
      using Stride = Eigen::InnerStride<>;
      Eigen::Map<Array, 0, Stride>(out, n, Stride(out_stride)) =
          expression_of(Eigen::Map<const Array, 0, Stride>(x, n, Stride(x_stride)));
    }
    return true;
  };
  switch (op) {
    case UnaryOp::exp: return apply([](const auto& a) { return a.exp(); });
    case UnaryOp::log: return apply([](const auto& a) { return a.log(); });
    case UnaryOp::tanh: return apply([](const auto& a) { return a.tanh(); });
    case UnaryOp::sigmoid: return apply([](const auto& a) { return T(1) / (T(1) + (-a).exp()); });
    case UnaryOp::silu: return apply([](const auto& a) { return a / (T(1) + (-a).exp()); });
    case UnaryOp::sqrt: return apply([](const auto& a) { return a.sqrt(); });
    case UnaryOp::rsqrt: return apply([](const auto& a) { return a.rsqrt(); });
    case UnaryOp::gelu_tanh:
      return apply([](const auto& a) {
        const T k = T(0.79788456080286535588), c = T(0.044715);
        return a / (T(1) + (T(-2) * k * (a + c * a * a * a)).exp());
      });
    default: return false;
  }
}

bool has_eigen_path(UnaryOp op) {
  switch (op) {
    case UnaryOp::exp:
    case UnaryOp::log:
    case UnaryOp::tanh:
    case UnaryOp::sigmoid:
    case UnaryOp::silu:
    case UnaryOp::sqrt:
    case UnaryOp::rsqrt:
    case UnaryOp::gelu_tanh: return true;
    default: return false;
  }
}

// x and out of the same f32/f64 dtype, any strides: contiguous tensors in fixed blocks spread
// over threads, strided ones row by row (a column slice of a wider matrix — the gate half of a
// fused gate/up product — still gets the vectorised path on each row). Eigen computes the
// unaligned head and the tail of a line with scalar code and the rest with SIMD code, which
// may differ in the last bit; fixed blocks and whole rows make that split, and so the
// result, independent of the thread count.
template <typename T>
void unary_eigen(UnaryOp op, const Tensor& x, const Tensor& out) {
  const T* xs = x.data<T>();
  T* os = out.data<T>();
  if (x.is_contiguous() && out.is_contiguous()) {
    constexpr int64_t kBlock = 2048;
    const int64_t n = x.numel(), blocks = (n + kBlock - 1) / kBlock;
    parallel_for(blocks, kBlock * 8, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t at = b * kBlock;
        eigen_line(op, xs + at, 1, os + at, 1, std::min(kBlock, n - at));
      }
    });
    return;
  }
  for_each_row<2>(
      out.shape(), {&x.strides(), &out.strides()}, 8,
      [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
        eigen_line(op, xs + off[0], st[0], os + off[1], st[1], n);
      });
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const UnaryParams& params, const Tensor& x, const Tensor& out) {
  if (x.dtype() == out.dtype() && has_eigen_path(op)) {
    if (x.dtype() == DType::f32) return unary_eigen<float>(op, x, out);
    if (x.dtype() == DType::f64) return unary_eigen<double>(op, x, out);
  }
  visit_dtype(x.dtype(), op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = ComputeType<T>;
    const T* xs = static_cast<const T*>(x.data_ptr());
    with_unary<C>(op, params, [&](auto f) {
      with_output_type<T>(out.dtype(), op_name(op), [&](auto out_tag) {
        using O = typename decltype(out_tag)::type;
        O* os = static_cast<O*>(out.data_ptr());
        for_each_row<2>(
            out.shape(), {&x.strides(), &out.strides()}, unary_cost(op),
            [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
              const T* xp = xs + off[0];
              O* op_ = os + off[1];
              if (st[0] == 1 && st[1] == 1) {
                for (int64_t i = 0; i < n; ++i) op_[i] = convert<O>(f(C(xp[i])));
              } else {
                for (int64_t i = 0; i < n; ++i) {
                  op_[i * st[1]] = convert<O>(f(C(xp[i * st[0]])));
                }
              }
            });
      });
    });
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  visit_dtype(a.dtype(), op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = ComputeType<T>;
    const T* as = static_cast<const T*>(a.data_ptr());
    const T* bs = static_cast<const T*>(b.data_ptr());
    with_binary<C>(op, [&](auto f) {
      with_output_type<T>(out.dtype(), op_name(op), [&](auto out_tag) {
        using O = typename decltype(out_tag)::type;
        O* os = static_cast<O*>(out.data_ptr());
        for_each_row<3>(
            out.shape(), {&a.strides(), &b.strides(), &out.strides()}, op == BinaryOp::pow ? 8 : 1,
            [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
              const T* ap = as + off[0];
              const T* bp = bs + off[1];
              O* op_ = os + off[2];
              if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                for (int64_t i = 0; i < n; ++i) op_[i] = convert<O>(C(f(C(ap[i]), C(bp[i]))));
              } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {  // row op scalar
                const C bv = C(bp[0]);
                for (int64_t i = 0; i < n; ++i) op_[i] = convert<O>(C(f(C(ap[i]), bv)));
              } else {
                for (int64_t i = 0; i < n; ++i) {
                  op_[i * st[2]] = convert<O>(C(f(C(ap[i * st[0]]), C(bp[i * st[1]]))));
                }
              }
            });
      });
    });
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  visit_dtype(out.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const uint8_t* cs = static_cast<const uint8_t*>(cond.data_ptr());
    const T* as = static_cast<const T*>(a.data_ptr());
    const T* bs = static_cast<const T*>(b.data_ptr());
    T* os = static_cast<T*>(out.data_ptr());
    for_each_row<4>(
        out.shape(), {&cond.strides(), &a.strides(), &b.strides(), &out.strides()}, 1,
        [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& st) {
          for (int64_t i = 0; i < n; ++i) {
            os[off[3] + i * st[3]] =
                cs[off[0] + i * st[0]] ? as[off[1] + i * st[1]] : bs[off[2] + i * st[2]];
          }
        });
  });
}

}  // namespace mnemo::cpu
