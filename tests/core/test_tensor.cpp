// Tensor basics: dtypes and 16-bit conversions, devices, shapes, views against copies,
// element access, copies across dtypes, in-place ops, and the errors misuse must raise.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "support/tensors.h"

using namespace mnemo;
using mnemo::test::values;

namespace {

// 0, 1, 2, ... as f32 in the given shape.
Tensor iota(const Shape& shape, DType dtype = DType::f32) {
  return core::reshape(arange(0, double(numel(shape)), 1, {dtype}), shape);
}

// The value of a row-major flattened contiguous tensor at a multi-index.
double naive_at(const std::vector<double>& flat, const Shape& shape,
                const std::vector<int64_t>& index) {
  int64_t offset = 0;
  for (size_t d = 0; d < shape.size(); ++d) offset = offset * shape[d] + index[d];
  return flat[size_t(offset)];
}

}  // namespace

// GCC 12 with -march=native on AVX-512 machines compiled this initialiser to {1, 1, 1, 1}
// (see CMakeLists.txt); any such miscompilation silently corrupts every result.
TEST_CASE("the compiler keeps constant initialisers") {
  std::vector<double> v{1, 1, 0, 0};
  CHECK(v == std::vector<double>{1, 1, 0, 0});
  CHECK(from_vector(std::vector<double>{3, 3, 3, 0}, {4}).to_vector<double>() ==
        std::vector<double>{3, 3, 3, 0});
}

TEST_CASE("dtype names, sizes and promotion") {
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::i64) == 8);
  CHECK(dtype_name(DType::boolean) == "bool");
  CHECK(dtype_from_name("bfloat16") == DType::bf16);
  CHECK_THROWS_AS(dtype_from_name("f8"), Error);
  CHECK(promote(DType::i32, DType::f32) == DType::f32);
  CHECK(promote(DType::bf16, DType::f16) == DType::f32);
  CHECK(promote(DType::f64, DType::bf16) == DType::f64);
  CHECK(promote(DType::boolean, DType::i64) == DType::i64);
}

TEST_CASE("bf16 and f16 round to nearest even and keep specials") {
  CHECK(float(bf16(1.0f)) == 1.0f);
  CHECK(float(bf16(3.140625f)) == 3.140625f);                // exactly representable
  CHECK(float(bf16(1.0f + 0x1p-8f)) == 1.0f);                // halfway: ties to even (down)
  CHECK(float(bf16(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);  // halfway: ties to even (up)
  CHECK(std::isnan(float(bf16(std::nanf("")))));
  CHECK(std::isinf(float(bf16(std::numeric_limits<float>::infinity()))));
  CHECK(float(f16(1.0f)) == 1.0f);
  CHECK(float(f16(65504.0f)) == 65504.0f);  // largest f16
  CHECK(std::isinf(float(f16(65520.0f))));  // rounds up to inf
  CHECK(float(f16(0x1p-24f)) == 0x1p-24f);  // smallest subnormal
  CHECK(float(f16(0x1p-26f)) == 0.0f);      // below half of it: zero
  CHECK(float(f16(-2.5f)) == -2.5f);
  CHECK(float(f16(1.0f + 0x1p-11f)) == 1.0f);  // tie to even
  CHECK(std::isnan(float(f16(std::nanf("")))));
  // Every f16 bit pattern that is a number survives a round trip through f32.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    f16 h;
    h.bits = uint16_t(bits);
    float f = h;
    if (std::isnan(f)) continue;
    REQUIRE(f16(f).bits == h.bits);
  }
}

TEST_CASE("devices parse and print") {
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda:3") == Device::cuda(3));
  CHECK(Device::cuda(1).str() == "cuda:1");
  CHECK_THROWS_AS(Device::parse("gpu"), Error);
  CHECK_THROWS_AS(Device::parse("cuda:x"), Error);
}

TEST_CASE("factories fill values in every dtype") {
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64}) {
    Tensor t = full({2, 3}, 7, {dtype});
    CHECK(t.dtype() == dtype);
    CHECK(values(t) == std::vector<double>(6, 7.0));
  }
  CHECK(values(arange(5)) == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(values(arange(1, 2, 0.25, {DType::f64})) == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK(values(arange(3, 0, -1)) == std::vector<double>{3, 2, 1});
  CHECK(values(full({3}, 2.5, {DType::boolean})) == std::vector<double>{1, 1, 1});
  CHECK_THROWS_AS(arange(0, 1, 0), Error);
  CHECK_THROWS_AS(from_vector(std::vector<double>{1, 2, 3}, {2, 2}), Error);
  CHECK_THROWS_AS(empty({2, -1}), Error);
}

TEST_CASE("views share storage and agree with copies") {
  Tensor x = iota({2, 3, 4});
  std::vector<double> flat = values(x);

  Tensor t = core::transpose(x, 0, 2);  // (4, 3, 2)
  CHECK(t.storage() == x.storage());
  CHECK(!t.is_contiguous());
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 2; ++k)
        CHECK(t.at({i, j, k}) == naive_at(flat, {2, 3, 4}, {k, j, i}));

  Tensor p = core::permute(x, {1, 2, 0});  // (3, 4, 2)
  CHECK(p.shape() == Shape{3, 4, 2});
  CHECK(p.at({2, 1, 1}) == naive_at(flat, {2, 3, 4}, {1, 2, 1}));

  Tensor n = core::narrow(x, 2, 1, 2);  // (2, 3, 2)
  CHECK(n.storage() == x.storage());
  CHECK(values(n) == values(core::clone(n)));
  CHECK(n.at({1, 2, 0}) == naive_at(flat, {2, 3, 4}, {1, 2, 1}));

  Tensor s = core::select(x, 1, -1);  // (2, 4), row 2
  CHECK(s.shape() == Shape{2, 4});
  CHECK(s.at({1, 3}) == naive_at(flat, {2, 3, 4}, {1, 2, 3}));

  Tensor sl = core::slice(x, 2, 0, 4, 3);  // elements 0 and 3 of the last dim
  CHECK(sl.shape() == Shape{2, 3, 2});
  CHECK(sl.at({0, 1, 1}) == naive_at(flat, {2, 3, 4}, {0, 1, 3}));

  Tensor e = core::expand(core::narrow(x, 1, 0, 1), {5, 2, 3, 4});
  CHECK(e.strides()[0] == 0);
  CHECK(e.strides()[2] == 0);
  CHECK(e.at({4, 1, 2, 3}) == naive_at(flat, {2, 3, 4}, {1, 0, 3}));

  Tensor u = core::unsqueeze(x, -1);
  CHECK(u.shape() == Shape{2, 3, 4, 1});
  CHECK(core::squeeze(u).shape() == Shape{2, 3, 4});
  CHECK(core::squeeze(u, 0).shape() == Shape{2, 3, 4, 1});  // size 2: unchanged

  // Writing through a view writes the base.
  fill_(core::select(x, 0, 1), -1);
  CHECK(x.at({1, 2, 3}) == -1);
  CHECK(x.at({0, 2, 3}) == 11);
}

TEST_CASE("view and reshape") {
  Tensor x = iota({2, 3, 4});
  Tensor v = core::view(x, {6, -1});
  CHECK(v.shape() == Shape{6, 4});
  CHECK(v.storage() == x.storage());
  CHECK(values(v) == values(x));

  Tensor t = core::transpose(x, 1, 2);  // (2, 4, 3), strides (12, 1, 4)
  CHECK_THROWS_AS(core::view(t, {2, 12}), Error);
  Tensor r = core::reshape(t, {2, 12});  // not expressible as a view: copies
  CHECK(r.storage() != x.storage());
  CHECK(values(r) == values(core::contiguous(t)));
  CHECK(core::reshape(t, {8, 3}).storage() != x.storage());

  Tensor n = core::narrow(x, 2, 1, 2);  // (2, 3, 2), strides (12, 4, 1)
  Tensor nv = core::view(n, {6, 2});    // rows merge: 12 == 4 * 3
  CHECK(nv.storage() == x.storage());
  CHECK(values(nv) == values(core::clone(n)));
  CHECK_THROWS_AS(core::view(n, {12}), Error);
  CHECK(values(core::reshape(n, {12})) == values(core::clone(n)));
  CHECK(core::view(core::unsqueeze(n, 1), {2, 1, 3, 1, 2}).storage() == x.storage());

  CHECK(core::flatten(x, 1).shape() == Shape{2, 12});
  CHECK(core::flatten(x).shape() == Shape{24});
  CHECK_THROWS_AS(core::view(x, {5, -1}), Error);
  CHECK_THROWS_AS(core::view(x, {-1, -1}), Error);
  CHECK(core::view(zeros({0, 3}), {3, 0, 2}).shape() == Shape{3, 0, 2});
  CHECK_THROWS_AS(core::view(zeros({0, 3}), {3, 0, -1}), Error);  // -1 is ambiguous
}

TEST_CASE("view errors name the op and the shapes") {
  Tensor x = iota({2, 3});
  CHECK_THROWS_WITH_AS(core::transpose(x, 0, 2), doctest::Contains("transpose"), Error);
  CHECK_THROWS_WITH_AS(core::narrow(x, 1, 2, 2), doctest::Contains("narrow"), Error);
  CHECK_THROWS_WITH_AS(core::select(x, 0, 2), doctest::Contains("select"), Error);
  CHECK_THROWS_WITH_AS(core::expand(x, {2, 4}), doctest::Contains("(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(core::permute(x, {0, 0}), doctest::Contains("permute"), Error);
  CHECK_THROWS_WITH_AS(core::reshape(x, {4, 2}), doctest::Contains("reshape"), Error);
  CHECK_THROWS_AS(core::slice(x, 0, 0, 2, 0), Error);
  CHECK_THROWS_AS(Tensor().shape(), Error);
  CHECK_THROWS_AS(x.at({0, 3}), Error);
  CHECK_THROWS_AS(x.item(), Error);
}

TEST_CASE("copies convert dtypes and write through strided views") {
  Tensor x = from_vector(std::vector<double>{-1.5, 0, 2.25, 3.7}, {2, 2}, {DType::f64});
  CHECK(values(core::to(x, DType::f32)) == std::vector<double>{-1.5, 0, 2.25, 3.700000047683716});
  CHECK(values(core::to(x, DType::i64)) == std::vector<double>{-1, 0, 2, 3});
  CHECK(values(core::to(x, DType::boolean)) == std::vector<double>{1, 0, 1, 1});
  CHECK(values(core::to(x, DType::bf16)) == std::vector<double>{-1.5, 0, 2.25, 3.703125});

  Tensor dst = zeros({2, 2});
  copy_(core::transpose(dst, 0, 1), x);  // dst^T = x
  CHECK(values(dst) == std::vector<double>{-1.5, 2.25, 0, 3.700000047683716});
  CHECK_THROWS_AS(copy_(dst, zeros({4})), Error);
}

TEST_CASE("in-place arithmetic") {
  Tensor x = ones({2, 3});
  add_(x, arange(3, {DType::f32}));  // broadcast a row
  CHECK(values(x) == std::vector<double>{1, 2, 3, 1, 2, 3});
  mul_(x, 2.0);
  sub_(x, ones({1}));
  CHECK(values(x) == std::vector<double>{1, 3, 5, 1, 3, 5});
  Tensor t = core::transpose(x, 0, 1);  // in place through a non-contiguous view
  div_(t, full({3, 1}, 2));
  CHECK(values(x) == std::vector<double>{0.5, 1.5, 2.5, 0.5, 1.5, 2.5});
  CHECK_THROWS_WITH_AS(add_(ones({3}), ones({2, 3})), doctest::Contains("add_"), Error);
}

TEST_CASE("elementwise forward values match closed forms") {
  std::vector<double> xs = {-3, -0.5, 0, 0.25, 2};
  Tensor x = from_vector(xs, {5}, {DType::f64});
  auto each = [&](const Tensor& y, auto f) {
    std::vector<double> got = values(y);
    for (size_t i = 0; i < xs.size(); ++i)
      CHECK(got[i] == doctest::Approx(f(xs[i])).epsilon(1e-12));
  };
  each(core::exp(x), [](double v) { return std::exp(v); });
  each(core::tanh(x), [](double v) { return std::tanh(v); });
  each(core::sigmoid(x), [](double v) { return 1 / (1 + std::exp(-v)); });
  each(core::relu(x), [](double v) { return v > 0 ? v : 0; });
  each(core::silu(x), [](double v) { return v / (1 + std::exp(-v)); });
  each(core::softplus(x), [](double v) { return std::log1p(std::exp(v)); });
  each(core::gelu(x), [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); });
  each(core::gelu(x, true), [](double v) {
    return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
  });
  each(core::clamp(x, -1, 1), [](double v) { return std::min(1.0, std::max(-1.0, v)); });
  each(core::pow(x, 3.0), [](double v) { return v * v * v; });
  each(core::affine(x, 2, -1), [](double v) { return 2 * v - 1; });
  each(sign(x), [](double v) { return double((v > 0) - (v < 0)); });

  // Broadcasting: (3, 1) - (1, 2).
  Tensor a = from_vector(std::vector<double>{1, 2, 3}, {3, 1});
  Tensor b = from_vector(std::vector<double>{10, 20}, {1, 2});
  CHECK(values(core::sub(a, b)) == std::vector<double>{-9, -19, -8, -18, -7, -17});
  CHECK(values(lt(a, 2.5)) == std::vector<double>{1, 1, 0});
  CHECK(values(core::where(gt(a, 1.5), a, b)) == std::vector<double>{10, 20, 2, 2, 3, 3});
  CHECK(values(core::maximum(a, full({}, 2))) == std::vector<double>{2, 2, 3});
  // Mixed dtypes promote.
  CHECK(core::add(ones({2}, {DType::i32}), ones({2}, {DType::f64})).dtype() == DType::f64);
  CHECK(values(core::div(full({2}, 7, {DType::i64}), full({2}, 2, {DType::i64}))) ==
        std::vector<double>{3, 3});
  // bf16 computes in f32 and rounds.
  Tensor h = core::mul(full({4}, 1.5, {DType::bf16}), full({4}, 3, {DType::bf16}));
  CHECK(h.dtype() == DType::bf16);
  CHECK(values(h) == std::vector<double>(4, 4.5));
}

TEST_CASE("elementwise errors name the op") {
  CHECK_THROWS_WITH_AS(core::add(ones({2, 3}), ones({4})), doctest::Contains("add"), Error);
  CHECK_THROWS_WITH_AS(core::add(ones({2, 3}), ones({4})), doctest::Contains("(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(core::exp(ones({2}, {DType::i64})), doctest::Contains("exp"), Error);
  CHECK_THROWS_WITH_AS(core::where(ones({2}), ones({2}), ones({2})), doctest::Contains("where"),
                       Error);
  CHECK_THROWS_WITH_AS(core::clamp(ones({2}), 1, 0), doctest::Contains("clamp"), Error);
  CHECK_THROWS_AS(core::add(ones({2}), Tensor()), Error);
}

TEST_CASE("a large elementwise op gives the same result on 1 and 2 threads") {
  Tensor x = core::affine(iota({257, 129}, DType::f64), 1e-3, -10);
  Tensor y = core::transpose(x, 0, 1);
  set_num_threads(1);
  std::vector<double> one = values(core::add(core::tanh(y), core::exp(core::mul(y, y))));
  set_num_threads(2);
  std::vector<double> two = values(core::add(core::tanh(y), core::exp(core::mul(y, y))));
  CHECK(one == two);
}
