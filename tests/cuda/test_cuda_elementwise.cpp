// The CUDA elementwise ops against the CPU backend: unary (every op, every dtype it allows),
// binary (every op x dtype, broadcast and strided operands, in place), where, fill, arange
// and copy_on_device (every dtype pair, strided and broadcast sources, strided destinations).
// Inputs are fresh random values each run (the seed is captured for replay).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "compare.h"
#include "core/backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

constexpr double kInf = std::numeric_limits<double>::infinity();
// compare.h's kAll and bool.
const std::vector<DType> kAllAndBool = {DType::f32, DType::f64, DType::bf16,   DType::f16,
                                        DType::i32, DType::i64, DType::boolean};
const std::vector<Shape> kShapes = {{1}, {7}, {33, 65}, {3, 5, 257}};

struct UnaryCase {
  UnaryOp op;
  UnaryParams params;
  double lo, hi;  // input range
};

// Random values of dtype in [lo, hi); bool tensors are about half true.
Tensor input(const Shape& shape, DType dtype, uint64_t seed, double lo, double hi) {
  if (dtype == DType::boolean) return gt(random_cpu(shape, DType::f32, seed), 0.0);
  return random_cpu(shape, dtype, seed, lo, hi);
}

// got (GPU) equals want (CPU) exactly: same shape, dtype and values (NaN where NaN).
void check_equal(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  CHECK(got.dtype() == want.dtype());
  CHECK(rel_error(got, want) == 0);
}

}  // namespace

TEST_CASE("cuda: unary ops match the CPU on every floating dtype, contiguous and strided") {
  const std::vector<UnaryCase> cases = {
      {UnaryOp::neg, {}, -4, 4},
      {UnaryOp::exp, {}, -8, 8},
      {UnaryOp::log, {}, 0.01, 10},
      {UnaryOp::sqrt, {}, 0, 10},
      {UnaryOp::rsqrt, {}, 0.01, 10},
      {UnaryOp::abs, {}, -4, 4},
      {UnaryOp::tanh, {}, -6, 6},
      {UnaryOp::sigmoid, {}, -20, 20},
      {UnaryOp::relu, {}, -4, 4},
      {UnaryOp::gelu, {}, -6, 6},
      {UnaryOp::gelu_tanh, {}, -6, 6},
      {UnaryOp::silu, {}, -20, 20},
      {UnaryOp::softplus, {}, -30, 30},
      {UnaryOp::erf, {}, -4, 4},
      {UnaryOp::sign, {}, -4, 4},
      {UnaryOp::logical_not, {}, -1, 1},
      {UnaryOp::affine, {2.5, -1}, -4, 4},
      {UnaryOp::pow_scalar, {2, 0}, -4, 4},
      {UnaryOp::pow_scalar, {0.5, 0}, 0, 9},
      {UnaryOp::pow_scalar, {3, 0}, -3, 3},
      {UnaryOp::pow_scalar, {-1.5, 0}, 0.1, 4},
      {UnaryOp::clamp, {-0.5, 0.75}, -2, 2},
      {UnaryOp::clamp, {-kInf, 0.25}, -2, 2},
      {UnaryOp::clamp, {-0.25, kInf}, -2, 2},
  };
  for (const UnaryCase& c : cases) {
    for (DType dtype : kFloating) {
      for (const Shape& shape : kShapes) {
        const uint64_t seed = fresh_seed();
        CAPTURE(seed);
        CAPTURE(std::string(op_name(c.op)));
        CAPTURE(c.params.alpha);
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape_str(shape));
        Tensor x = random_cpu(shape, dtype, seed, c.lo, c.hi);
        Tensor want = core::unary(c.op, x, c.params);
        CHECK_CLOSE_TO_CPU(core::unary(c.op, to_gpu(x), c.params), want);
        CHECK_CLOSE_TO_CPU(core::unary(c.op, strided_copy(to_gpu(x)), c.params), want);
      }
    }
  }
}

TEST_CASE("cuda: unary ops on special values (0, -0, +-inf, NaN, large)") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // NaN only where the CPU computes the op with a plain scalar formula.
  const std::vector<double> plain = {0, -0.0, 1, -1, 30, -30, 1e-30, kInf, -kInf, nan};
  const std::vector<double> finite = {0, -0.0, 1, -1, 30, -30, 1e-30, 0.5};
  const std::vector<UnaryCase> with_nan = {
      {UnaryOp::neg, {}, 0, 0},           {UnaryOp::abs, {}, 0, 0},
      {UnaryOp::relu, {}, 0, 0},          {UnaryOp::sign, {}, 0, 0},
      {UnaryOp::logical_not, {}, 0, 0},   {UnaryOp::erf, {}, 0, 0},
      {UnaryOp::clamp, {-kInf, 2}, 0, 0}, {UnaryOp::clamp, {-3, kInf}, 0, 0},
      {UnaryOp::softplus, {}, 0, 0},      {UnaryOp::affine, {-2, 0.5}, 0, 0}};
  const std::vector<UnaryCase> finite_only = {
      {UnaryOp::exp, {}, 0, 0},  {UnaryOp::log, {}, 0, 0},      {UnaryOp::sqrt, {}, 0, 0},
      {UnaryOp::tanh, {}, 0, 0}, {UnaryOp::sigmoid, {}, 0, 0},  {UnaryOp::silu, {}, 0, 0},
      {UnaryOp::gelu, {}, 0, 0}, {UnaryOp::gelu_tanh, {}, 0, 0}};
  for (DType dtype : kFloating) {
    CAPTURE(dtype_name(dtype));
    Tensor a = core::to(from_vector(plain, {int64_t(plain.size())}, {DType::f64}), dtype);
    Tensor b = core::to(from_vector(finite, {int64_t(finite.size())}, {DType::f64}), dtype);
    for (const UnaryCase& c : with_nan) {
      CAPTURE(std::string(op_name(c.op)));
      CHECK_CLOSE_TO_CPU(core::unary(c.op, to_gpu(a), c.params), core::unary(c.op, a, c.params));
    }
    for (const UnaryCase& c : finite_only) {
      CAPTURE(std::string(op_name(c.op)));
      CHECK_CLOSE_TO_CPU(core::unary(c.op, to_gpu(b), c.params), core::unary(c.op, b, c.params));
    }
  }
}

TEST_CASE("cuda: unary ops on integer and bool tensors equal the CPU's exactly") {
  const std::vector<UnaryCase> cases = {
      {UnaryOp::neg, {}, 0, 0},         {UnaryOp::abs, {}, 0, 0},
      {UnaryOp::relu, {}, 0, 0},        {UnaryOp::sign, {}, 0, 0},
      {UnaryOp::logical_not, {}, 0, 0}, {UnaryOp::affine, {3, -2}, 0, 0},
      {UnaryOp::clamp, {-5, 7}, 0, 0},  {UnaryOp::clamp, {-7.5, 2.5}, 0, 0}};
  for (DType dtype : {DType::i32, DType::i64, DType::boolean}) {
    for (const UnaryCase& c : cases) {
      if (dtype == DType::boolean && (c.op == UnaryOp::affine || c.op == UnaryOp::clamp)) continue;
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(std::string(op_name(c.op)));
      CAPTURE(dtype_name(dtype));
      Tensor x = input({33, 65}, dtype, seed, -100, 100);
      Tensor want = core::unary(c.op, x, c.params);
      check_equal(core::unary(c.op, to_gpu(x), c.params), want);
      check_equal(core::unary(c.op, strided_copy(to_gpu(x)), c.params), want);
    }
  }
}

TEST_CASE("cuda: binary ops x dtypes match the CPU, broadcast and strided operands") {
  const std::vector<BinaryOp> ops = {
      BinaryOp::add, BinaryOp::sub,         BinaryOp::mul,       BinaryOp::div,
      BinaryOp::pow, BinaryOp::maximum,     BinaryOp::minimum,   BinaryOp::eq,
      BinaryOp::ne,  BinaryOp::lt,          BinaryOp::le,        BinaryOp::gt,
      BinaryOp::ge,  BinaryOp::logical_and, BinaryOp::logical_or};
  // (a's shape, b's shape): same, row and column broadcast, a scalar, 3-d both ways.
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{33, 65}, {33, 65}}, {{33, 65}, {1, 65}}, {{33, 65}, {33, 1}},
      {{1}, {7}},           {{257}, {1}},        {{4, 1, 7}, {1, 5, 7}}};
  for (BinaryOp op : ops) {
    for (DType dtype : kAllAndBool) {
      if (op == BinaryOp::pow && !is_floating(dtype)) continue;  // core: floating only
      for (const auto& [sa, sb] : shapes) {
        const uint64_t seed = fresh_seed();
        CAPTURE(seed);
        CAPTURE(std::string(op_name(op)));
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape_str(sa));
        CAPTURE(shape_str(sb));
        const bool positive = op == BinaryOp::pow;
        // Integers in [-6, 6) so that division by zero and equal pairs occur.
        const double lo = positive ? 0.1 : (is_floating(dtype) ? -3 : -6);
        const double hi = positive ? 3 : (is_floating(dtype) ? 3 : 6);
        Tensor a = input(sa, dtype, seed, lo, hi);
        Tensor b = input(sb, dtype, seed + 1, positive ? -2 : lo, positive ? 2 : hi);
        if (op == BinaryOp::eq || op == BinaryOp::ne) b = core::narrow(a, 0, 0, 1);  // ties
        Tensor want = core::binary(op, a, b);
        CHECK_CLOSE_TO_CPU(core::binary(op, to_gpu(a), to_gpu(b)), want);
        CHECK_CLOSE_TO_CPU(core::binary(op, strided_copy(to_gpu(a)), strided_copy(to_gpu(b))),
                           want);
      }
    }
  }
}

TEST_CASE("cuda: binary ops on special values and mixed dtypes") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> av = {0, -0.0, 1, -1, kInf, -kInf, nan, 2, nan, 0};
  const std::vector<double> bv = {0, 0, kInf, -kInf, kInf, 1, 1, nan, nan, -0.0};
  for (DType dtype : kFloating) {
    CAPTURE(dtype_name(dtype));
    Tensor a = core::to(from_vector(av, {10}, {DType::f64}), dtype);
    Tensor b = core::to(from_vector(bv, {10}, {DType::f64}), dtype);
    for (BinaryOp op :
         {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::maximum,
          BinaryOp::minimum, BinaryOp::eq, BinaryOp::lt, BinaryOp::ge, BinaryOp::ne}) {
      CAPTURE(std::string(op_name(op)));
      check_equal(core::binary(op, to_gpu(a), to_gpu(b)), core::binary(op, a, b));
    }
  }
  // Promotion converts on the device: i32 + f32 -> f32, bf16 * f16 -> f32, i64 < f64.
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Tensor i = random_cpu({33, 65}, DType::i32, seed, -50, 50);
  Tensor f = random_cpu({1, 65}, DType::f32, seed + 1);
  CHECK_CLOSE_TO_CPU(core::add(to_gpu(i), to_gpu(f)), core::add(i, f));
  Tensor h = random_cpu({33, 1}, DType::bf16, seed + 2);
  Tensor g = random_cpu({33, 65}, DType::f16, seed + 3);
  CHECK_CLOSE_TO_CPU(core::mul(to_gpu(h), strided_copy(to_gpu(g))), core::mul(h, g));
  Tensor l = random_cpu({7}, DType::i64, seed + 4, -5, 5);
  Tensor d = random_cpu({7}, DType::f64, seed + 5, -5, 5);
  check_equal(lt(to_gpu(l), to_gpu(d)), lt(l, d));
  check_equal(ge(to_gpu(l), 0.5), ge(l, 0.5));
}

TEST_CASE("cuda: in-place binary ops (out aliases a), broadcast other, strided self") {
  for (DType dtype : kAllAndBool) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    Tensor x = input({33, 65}, dtype, seed, -6, 6);
    Tensor y = input({1, 65}, dtype, seed + 1, -6, 6);
    Tensor xc = core::clone(x), xg = to_gpu(x);
    add_(xc, y);
    add_(xg, to_gpu(y));
    check_equal(xg, xc);
    mul_(xc, xc);
    mul_(xg, xg);  // both operands the output
    check_equal(xg, xc);
    if (dtype != DType::boolean) {
      div_(xc, y);
      div_(xg, to_gpu(y));
      CHECK_CLOSE_TO_CPU(xg, xc);
      sub_(xc, y);
      sub_(xg, to_gpu(y));
      CHECK_CLOSE_TO_CPU(xg, xc);
    }
    // A transposed (non-contiguous) self: computed into a temporary, copied back strided.
    Tensor tc = core::transpose(core::clone(x), 0, 1);
    Tensor tg = strided_copy(to_gpu(core::contiguous(tc)));
    Tensor z = input({65, 1}, dtype, seed + 2, -6, 6);
    add_(tc, z);
    add_(tg, to_gpu(z));
    check_equal(tg, tc);
  }
}

TEST_CASE("cuda: where with broadcast and strided operands, every dtype") {
  for (DType dtype : kAllAndBool) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    Tensor cond = gt(random_cpu({33, 1}, DType::f32, seed), 0.0);
    Tensor full_cond = gt(random_cpu({33, 65}, DType::f32, seed + 3), 0.0);
    Tensor a = input({33, 65}, dtype, seed + 1, -9, 9);
    Tensor b = input({1}, dtype, seed + 2, -9, 9);
    check_equal(core::where(to_gpu(cond), strided_copy(to_gpu(a)), to_gpu(b)),
                core::where(cond, a, b));
    check_equal(core::where(strided_copy(to_gpu(full_cond)), to_gpu(b), to_gpu(a)),
                core::where(full_cond, b, a));
  }
}

TEST_CASE("cuda: fill (contiguous and strided views) and arange, every dtype") {
  for (DType dtype : kAllAndBool) {
    CAPTURE(dtype_name(dtype));
    for (double value : {0.0, 1.0, -2.75, 3.3}) {
      CAPTURE(value);
      check_equal(full({7, 33}, value, {dtype, cuda_test::kGpu}), full({7, 33}, value, {dtype}));
      // Fill every other column of a GPU tensor; the rest keeps its values.
      Tensor base = input({7, 33}, dtype, fresh_seed(), -5, 5);
      Tensor cpu = core::clone(base), gpu = to_gpu(base);
      fill_(core::slice(cpu, 1, 0, 33, 2), value);
      fill_(core::slice(gpu, 1, 0, 33, 2), value);
      check_equal(gpu, cpu);
    }
    if (dtype != DType::boolean) {
      check_equal(arange(-3, 7.5, 0.5, {dtype, cuda_test::kGpu}), arange(-3, 7.5, 0.5, {dtype}));
      check_equal(arange(0, 1001, 1, {dtype, cuda_test::kGpu}), arange(0, 1001, 1, {dtype}));
    } else {
      check_equal(arange(0, 2, 1, {dtype, cuda_test::kGpu}), arange(0, 2, 1, {dtype}));
    }
  }
  check_equal(arange(0.1, 5.3, 0.7, {DType::f64, cuda_test::kGpu}),
              arange(0.1, 5.3, 0.7, {DType::f64}));
}

TEST_CASE("cuda: copy_on_device converts between every dtype pair, strided and broadcast") {
  for (DType from : kAllAndBool) {
    for (DType to_dtype : kAllAndBool) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(from));
      CAPTURE(dtype_name(to_dtype));
      Tensor x = input({33, 65}, from, seed, -300, 300);
      Tensor want = core::to(x, to_dtype);
      check_equal(core::to(to_gpu(x), to_dtype), want);
      check_equal(core::to(strided_copy(to_gpu(x)), to_dtype), want);
      // A broadcast source into a strided destination, through copy_.
      Tensor row = input({1, 65}, from, seed + 1, -300, 300);
      Tensor cpu = zeros({65, 33}, {to_dtype});
      Tensor gpu = zeros({65, 33}, {to_dtype, cuda_test::kGpu});
      copy_(core::transpose(cpu, 0, 1), core::expand(row, {33, 65}));
      copy_(core::transpose(gpu, 0, 1), core::expand(to_gpu(row), {33, 65}));
      check_equal(gpu, cpu);
    }
  }
}

TEST_CASE("cuda: elementwise ops on empty tensors launch nothing and keep shapes") {
  Tensor e = zeros({0, 5}, {DType::f32, cuda_test::kGpu});
  CHECK(core::exp(e).shape() == Shape{0, 5});
  CHECK(core::add(e, e).shape() == Shape{0, 5});
  CHECK(core::where(gt(e, 0.0), e, e).shape() == Shape{0, 5});
  CHECK(core::to(e, DType::bf16).shape() == Shape{0, 5});
  fill_(e, 2.0);
  CHECK(arange(0, 0, 1, {DType::i64, cuda_test::kGpu}).numel() == 0);
  synchronize(cuda_test::kGpu);
}

}  // namespace mnemo
